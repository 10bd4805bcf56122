"""The HTTP server settings, shared by `cinemate serve` and the benchmarks' echo baseline."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp


class Server(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises SIGTERM after its graceful shutdown, which would end the
        # process before the caller stops the embedded databases; here the caller
        # returns normally instead.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def server(app: ASGIApp, host: str, port: int) -> Server:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http="httptools",
        lifespan="off",
        log_config=None,
        access_log=False,
        # No X-Forwarded-* rewriting: nothing here reads the client address, and the
        # middleware costs every request a layer.
        proxy_headers=False,
        timeout_graceful_shutdown=20,
    )
    return Server(config)
