"""The HTTP server settings, shared by `cinemate serve` and the benchmarks' echo baseline.

uvicorn's httptools protocol has no timer on a connection until its first response, no
limit on a request line or on headers, and no cap on connections: a client opening
connections and sending headers a byte at a time (or nothing) holds each one, and its
memory, for as long as it likes. `GuardedHttp` adds what is missing:

- a request's headers must arrive within `header_timeout` of its first byte (or of the
  connection, for a connection that sends nothing), and the whole request within
  `request_timeout`; else 408 and the connection closes;
- an idle keep-alive connection closes after `keepalive_timeout` (uvicorn's own timer);
- a request line longer than `max_url_bytes` is refused with 414, headers past
  `max_header_bytes` or `max_headers` with 431, before they are kept in memory;
- at most `max_connections` connections: past it, the connection that has waited longest
  for its headers is closed (an attacker's slow ones go first), else the new one, so
  requests that arrive whole are still answered.

It also sends a response's status line and headers in the same write as its body
(`_Corked`): uvicorn writes them apart, and each write to a socket is a system call and
a pass through the TCP stack (a tenth of the API process's time under load, profiled).
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httptools
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


@dataclass(frozen=True)
class HttpLimits:
    header_timeout: float = 10.0
    request_timeout: float = 30.0
    keepalive_timeout: int = 5
    max_connections: int = 1000
    max_url_bytes: int = 16 * 1024
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100


# How long a refused connection's further input is read and dropped before it closes.
LINGER_SECONDS = 1.0


class _Refused(Exception):
    """Raised from a parser callback to stop reading a request that was answered."""


_REASONS = {408: b"Request Timeout", 414: b"URI Too Long", 431: b"Request Header Fields Too Large"}


class _Corked:
    """A request's transport that holds the response head (uvicorn's first write) until
    the next write, or the end of this turn of the event loop at the latest (a HEAD
    answer has no body write; a streamed body may come later), and sends them as one."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._head_seen = False

    def write(self, data: bytes) -> None:
        if not self._head_seen:
            self._head_seen = True
            self._held = data
            self._loop.call_soon(self.flush)
            return
        if self._held is not None:
            data, self._held = self._held + data, None
        self._transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedHttp(HttpToolsProtocol):
    limits = HttpLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # One timer per request, armed when it begins: when it fires with the headers
        # in, it moves on to the whole request's deadline (one timer, not two).
        self._timer: asyncio.TimerHandle | None = None
        self._request_since = 0.0
        self._awaiting_headers = False
        self._refused = False
        self._header_bytes = 0

    # The connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._begin_request()
        if len(self.connections) > self.limits.max_connections:
            self._shed()

    def _shed(self) -> None:
        """Over the cap: close a kept-alive idle connection, else the one that has waited
        longest for its headers, else this new one."""
        idle, waiting = [], []
        for c in self.connections:
            if isinstance(c, GuardedHttp) and c is not self and not c._refused:
                if c.timeout_keep_alive_task is not None:
                    idle.append(c)
                elif c._awaiting_headers:
                    waiting.append(c)
        victim = idle[0] if idle else min(waiting, key=lambda c: c._request_since, default=self)
        victim._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._awaiting_headers = False
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's, except that a request refused here is not answered twice or logged
        # as invalid.
        if self._refused:
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self._refused or isinstance(exc.__context__, _Refused):
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        if self._timer is None:  # not the connection's first request: its clock starts now
            self._begin_request()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_url_bytes:
            self._refuse(414)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if (
            self._header_bytes > self.limits.max_header_bytes
            or len(self.headers) >= self.limits.max_headers
        ):
            self._refuse(431)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        super().on_headers_complete()
        if self.cycle is not None:
            self.cycle.transport = _Corked(self.transport, self.loop)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        self._cancel_timer()
        super().on_message_complete()

    # Helpers

    def _begin_request(self) -> None:
        self._request_since = self.loop.time()
        self._awaiting_headers = True
        self._cancel_timer()
        self._timer = self.loop.call_later(self.limits.header_timeout, self._timed_out)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if not self._awaiting_headers:  # headers in time; the body has what is left
            left = self._request_since + self.limits.request_timeout - self.loop.time()
            if left > 0:
                self._timer = self.loop.call_later(left, self._timed_out)
                return
        if self.cycle is not None and self.cycle.response_started:
            self._close()  # answered or answering: no status line can be sent any more
        else:
            self._answer(408)

    def _refuse(self, status: int) -> None:
        self._answer(status)
        raise _Refused(status)

    def _answer(self, status: int) -> None:
        """Answer and close; but first stop writing and drop what the client still sends
        for a moment, so its kernel receives the answer before a reset would discard it."""
        if self.transport.is_closing():
            return
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            % (status, _REASONS[status])
        )
        if not self.transport.can_write_eof():
            self._close()
            return
        self.transport.write_eof()
        self._refused = True  # data_received drops the rest
        self._awaiting_headers = False
        self._cancel_timer()
        self._timer = self.loop.call_later(LINGER_SECONDS, self._close)

    def _close(self) -> None:
        self._refused = True
        self._awaiting_headers = False
        self._cancel_timer()
        if not self.transport.is_closing():
            self.transport.close()


def guarded(limits: HttpLimits) -> type[GuardedHttp]:
    """The protocol class with these limits (uvicorn instantiates it per connection)."""
    return type("GuardedHttp", (GuardedHttp,), {"limits": limits})


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


def server(
    app: ASGIApp, host: str, port: int, limits: HttpLimits | None = None, *, guard: bool = True
) -> Server:
    """`guard=False` is plain uvicorn httptools (the benchmarks' baseline)."""
    limits = limits or HttpLimits()
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded(limits) if guard else "httptools",
        timeout_keep_alive=limits.keepalive_timeout,
        lifespan="off",
        log_config=None,
        access_log=False,
        # No X-Forwarded-* rewriting: nothing here reads the client address, and the
        # middleware costs every request a layer.
        proxy_headers=False,
        timeout_graceful_shutdown=20,
    )
    return Server(config)
