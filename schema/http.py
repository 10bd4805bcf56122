"""How answers are written on the wire: JSON bodies and the error envelope."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

Endpoint = Callable[[Request], Awaitable[Response]]


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if isinstance(content, BaseModel):
            return content.__pydantic_serializer__.to_json(content)
        return orjson.dumps(content)


def error_response(
    status_code: int,
    error: str,
    detail: str | Sequence[Mapping[str, Any]],
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The one error envelope of the API: `{"error": <code>, "detail": <text or items>}`."""
    return JSONResponse({"error": error, "detail": detail}, status_code, headers=headers)


def unavailable(detail: str) -> JSONResponse:
    return error_response(503, "unavailable", detail, headers={"Retry-After": "1"})


def admin_only(endpoint: Endpoint, token: str | None) -> Endpoint:
    """Bearer-token guard: 401 without credentials, 403 when wrong or when no token is set."""

    async def guarded(request: Request) -> Response:
        if token is None:
            return error_response(
                403, "forbidden", "admin endpoints are disabled: ADMIN_TOKEN is not set"
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            return error_response(
                401,
                "unauthorized",
                "Authorization: Bearer <ADMIN_TOKEN> required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(given.encode(), token.encode()):
            return error_response(403, "forbidden", "wrong admin token")
        return await endpoint(request)

    return guarded
