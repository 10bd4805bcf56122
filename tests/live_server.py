"""`cinemate serve` as a real process on the test's database and Redis, for the tests
that look at the service from outside (a browser, Schemathesis)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cinemate.settings import Settings
from tests.test_cli_serve import free_port, wait_ready


@contextmanager
def live_server(settings: Settings, data_dir: Path, **env: str) -> Iterator[str]:
    """Yields the base URL; the service's output goes to data_dir/serve.log."""
    with live_process(settings, data_dir, **env) as (url, _):
        yield url


@contextmanager
def live_process(
    settings: Settings, data_dir: Path, **env: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The base URL and the `cinemate serve` process (for its memory, say)."""
    port = free_port()
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
    with (data_dir / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cinemate.cli", "serve", "--port", str(port)],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_ready(port, process)
            yield f"http://127.0.0.1:{port}", process
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
