"""What the machine itself did during a run: how long its disk stalled every task, and
how busy its cores were.

Linux's pressure stall information (/proc/pressure/io, "full": the share of time in
which every runnable task waited for I/O) tells a service's own slowness apart from a
disk that stops now and then (seen on these virtual machines: seconds-long stalls while
other work writes or deletes files). The cores' busy share tells whether a fixed-rate
run had the machine to spare: a latency measured on a full machine is its queue, not
the service's. A bench prints both beside its latencies.
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil

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


class HostBusy:
    """Started at construction; `share()`: the fraction of all the machine's core time
    since then that any process (the load generator's and the host's other work
    included) kept busy."""

    def __init__(self) -> None:
        self._began = _core_seconds()

    def share(self) -> float:
        now = _core_seconds()
        total = sum(now.values()) - sum(self._began.values())
        idle = sum(now[k] - self._began[k] for k in IDLE if k in now)
        return (total - idle) / total if total > 0 else 0.0


IDLE = ("idle", "iowait")


def _core_seconds() -> dict[str, float]:
    """All cores' seconds by state; a guest's time is counted in user time already."""
    times = psutil.cpu_times()._asdict()
    return {k: v for k, v in times.items() if k not in ("guest", "guest_nice")}
