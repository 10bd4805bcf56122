"""`serve`'s projection worker: `cinemate worker` in a child process, kept running.

Python runs one core per process; the API and the projections each want one. The child
is the same `cinemate worker` an operator can run alone, with the same environment (so it
shares the embedded servers through the data dir). If it dies it is started again, after
a pause that grows while it keeps dying; if the parent dies, even by SIGKILL, the kernel
sends the child SIGTERM (PR_SET_DEATHSIG), so no worker outlives its service.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import signal
import sys
from collections.abc import Sequence

log = logging.getLogger("cinemate.supervisor")

PR_SET_DEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_DEATHSIG, signal.SIGTERM)


class WorkerProcess:
    def __init__(self, arguments: Sequence[str], *, stop_seconds: float = 30.0) -> None:
        self.command = [sys.executable, "-m", "cinemate.cli", "worker", *arguments]
        self.stop_seconds = stop_seconds
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_running(), name="projection-worker")

    async def _keep_running(self) -> None:
        failures = 0
        while not self._stopping:
            self.process = await asyncio.create_subprocess_exec(
                *self.command, preexec_fn=_die_with_parent
            )
            log.info("projection worker started", extra={"pid": self.process.pid})
            code = await self.process.wait()
            if self._stopping:
                return
            failures += 1
            self.restarts += 1
            pause = min(10.0, 0.5 * 2 ** min(failures, 5))
            log.error(
                "projection worker exited; restarting",
                extra={"exit_code": code, "restart_in_seconds": pause},
            )
            await asyncio.sleep(pause)

    async def stop(self) -> None:
        """SIGTERM: the worker finishes its batch and stops its clients; SIGKILL after
        `stop_seconds` if it has not."""
        self._stopping = True
        process = self.process
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self.stop_seconds)
            except TimeoutError:
                log.warning("projection worker did not stop in time; killing it")
                process.kill()
                await process.wait()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
