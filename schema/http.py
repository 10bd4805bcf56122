"""How answers are written on the wire: JSON bodies and the error envelope."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.responses import Response


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
