"""ASGI middleware: request ids, and a JSON answer instead of a bare 500."""

from __future__ import annotations

import logging
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cinemate.logs import request_id
from schema.http import error_response

log = logging.getLogger("cinemate.http")


class RequestContext:
    """Honour X-Request-ID (or make one), echo it back, and log failures with it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid = value.decode("latin-1")[:128]
                break
        rid = rid or uuid.uuid4().hex
        token = request_id.set(rid)
        started = False
        header = (b"x-request-id", rid.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if not started:
                response = error_response(500, "internal_error", f"request {rid} failed; see logs")
                await response(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
