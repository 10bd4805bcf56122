"""The one ASGI middleware: request ids, metrics per route, and a JSON answer instead of a
bare 500.

One layer, not three: every request pays for each layer's extra coroutine and wrapped
`send`, and this one does all three jobs in a single wrap.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cinemate.logs import request_id
from cinemate.metrics import Metrics
from schema.http import error_response

log = logging.getLogger("cinemate.http")

# Request ids: unique per process (a random prefix) and cheap (a counter after it).
_PREFIX = os.urandom(6).hex()
_numbers = itertools.count(1)


class RequestContext:
    """Honour X-Request-ID (or make one) and echo it back; count and time each request by
    route template (never by raw path, so labels stay bounded); log failures with the id."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics
        # Prometheus children looked up once per label set, not on every request.
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._timers: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = time.perf_counter()
        rid = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid = value.decode("latin-1")[:128]
                break
        rid = rid or f"{_PREFIX}{next(_numbers):010x}"
        token = request_id.set(rid)
        header = (b"x-request-id", rid.encode("latin-1"))
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except HTTPException as exc:  # the router's 404 and 405 (with its Allow header)
            code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
            response = error_response(exc.status_code, code, exc.detail, exc.headers)
            await response(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if not status:
                response = error_response(500, "internal_error", f"request {rid} failed; see logs")
                await response(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
            if self.metrics is not None:
                self._measure(scope, status or 500, time.perf_counter() - started_at)

    def _measure(self, scope: Scope, status: int, seconds: float) -> None:
        assert self.metrics is not None
        template = getattr(scope.get("route"), "path", "unmatched")
        method = scope["method"]
        counter = self._counters.get((template, method, status))
        if counter is None:
            counter = self.metrics.requests.labels(template, method, str(status))
            self._counters[(template, method, status)] = counter
        timer = self._timers.get((template, method))
        if timer is None:
            timer = self.metrics.latency.labels(template, method)
            self._timers[(template, method)] = timer
        counter.inc()
        timer.observe(seconds)


class ServiceApp:
    """The service as one ASGI app: the router inside the one middleware. (Starlette's
    application object would wrap every request in two more layers, for error pages and
    exception handlers, that the middleware already provides.)"""

    def __init__(self, routes: list[BaseRoute], metrics: Metrics | None = None) -> None:
        self.router = Router(routes)
        self.routes = self.router.routes
        self._app = RequestContext(self.router, metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # With an app in the scope, the router raises 404/405 as HTTPException for the
        # middleware to answer in the API's JSON envelope.
        scope["app"] = self
        await self._app(scope, receive, send)
