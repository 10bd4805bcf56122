"""bench/soak: memory of the service through a long run of mixed ingest and recommend load.

Placeholder until the soak itself lands; `tree_rss` is shared with bench/recommend.
"""

from __future__ import annotations

from pathlib import Path


def tree_rss(pid: int) -> dict[int, int]:
    """Resident bytes of `pid` and each of its descendants (Linux /proc), by pid."""
    out: dict[int, int] = {}
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                out[current] = int(line.split()[1]) * 1024
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            children = []
        pending.extend(int(c) for c in children)
    return out
