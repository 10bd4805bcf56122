"""What the machine itself did during a run: how long its disk stalled every task.

Linux's pressure stall information (/proc/pressure/io, "full": the share of time in
which every runnable task waited for I/O) tells a service's own slowness apart from a
disk that stops now and then (seen on these virtual machines: seconds-long stalls while
other work writes or deletes files). A bench prints it beside its latencies.
"""

from __future__ import annotations

import time
from pathlib import Path

PRESSURE = Path("/proc/pressure/io")


def _full_stall_us() -> float | None:
    try:
        for line in PRESSURE.read_text().splitlines():
            if line.startswith("full"):
                return float(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class IoStall:
    """Started at construction; `share()`: the fraction of the time since in which the
    disk stalled every task (None where the kernel does not tell)."""

    def __init__(self) -> None:
        self._began = time.monotonic()
        self._stalled = _full_stall_us()

    def share(self) -> float | None:
        now = _full_stall_us()
        if now is None or self._stalled is None:
            return None
        elapsed_us = (time.monotonic() - self._began) * 1e6
        return (now - self._stalled) / elapsed_us if elapsed_us > 0 else 0.0

    def describe(self) -> str:
        share = self.share()
        if share is None:
            return "disk stalls: not reported by this kernel"
        return f"disk stalled every task {share:.1%} of the time (Linux PSI io full)"
