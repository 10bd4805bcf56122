"""`cinemate serve` as a real process on the test's database and Redis, for the tests
that look at the service from outside (a browser, Schemathesis)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cinemate.settings import Settings
from tests.test_cli_serve import call, free_port


@contextmanager
def live_server(settings: Settings, data_dir: Path, **env: str) -> Iterator[str]:
    """Yields the base URL; the service's output goes to data_dir/serve.log."""
    with live_process(settings, data_dir, **env) as (url, _):
        yield url


@contextmanager
def live_process(
    settings: Settings, data_dir: Path, **env: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The base URL and the `cinemate serve` process (for its memory, say). A port taken
    between choosing it and listening (other work on a shared machine) is chosen again."""
    environment = {
        **os.environ,
        "CINEMATE_DATA_DIR": str(data_dir),
        "DATABASE_URL": str(settings.database_url),
        "REDIS_URL": str(settings.redis_url),
        "LOG_LEVEL": "WARNING",
        **env,
    }
    environment.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "serve.log"
    for attempt in range(3):
        port = free_port()
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "cinemate.cli", "serve", "--port", str(port)],
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if _ready(port, process):
            break
        output = log_path.read_text(errors="replace")
        if attempt == 2 or "Address already in use" not in output:
            raise AssertionError(f"cinemate serve did not start:\n{output[-2000:]}")
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def _ready(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> bool:
    """True once the service answers ready; False if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            status, _ = call("GET", f"http://127.0.0.1:{port}/api/v1/health/ready")
            if status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"cinemate serve on port {port} not ready within {timeout} s")
