"""Reading and validating a command's body: limits first, then JSON, then the contract."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request

from schema.commands import SINGLE_COMMANDS

MAX_BODY_BYTES = 1024 * 1024


class BadRequest(Exception):
    """A request refused before anything is stored, with the status and body to answer."""

    def __init__(self, status_code: int, error: str, detail: Any) -> None:
        super().__init__(error)
        self.status_code = status_code
        self.error = error
        self.detail = detail


async def read_json_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest(400, "bad_request", "Content-Length is not a number")
        if int(declared) > limit:
            raise BadRequest(413, "payload_too_large", f"body is larger than {limit} bytes")
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise BadRequest(415, "unsupported_media_type", "Content-Type must be application/json")
    # Chunked bodies have no declared length: count while reading, stop at the limit.
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, "payload_too_large", f"body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _clean_loc(loc: tuple[int | str, ...]) -> list[int | str]:
    # A tagged union puts the tag in the path (events.3.watch.progress): drop it, so the
    # path names the item's field as the client wrote it.
    parts = list(loc)
    if len(parts) > 2 and parts[0] == "events" and isinstance(parts[1], int):
        if parts[2] in SINGLE_COMMANDS:
            del parts[2]
    return ["body", *parts]


def parse(adapter: TypeAdapter[Any], body: bytes) -> Any:
    try:
        return adapter.validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise BadRequest(400, "malformed_json", errors[0]["msg"]) from None
        detail = [{"loc": _clean_loc(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
        raise BadRequest(422, "validation_error", detail) from None
