"""Reading and validating a command's body: limits first, then JSON, then the contract."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive

from schema.commands import SINGLE_COMMANDS

MAX_BODY_BYTES = 1024 * 1024


class BadRequest(Exception):
    """A request refused before anything is stored, with the status and body to answer."""

    def __init__(self, status_code: int, error: str, detail: Any) -> None:
        super().__init__(error)
        self.status_code = status_code
        self.error = error
        self.detail = detail


async def read_body(
    headers: list[tuple[bytes, bytes]], receive: Receive, limit: int = MAX_BODY_BYTES
) -> bytes:
    """The body of a JSON request, straight from ASGI (the ingest path builds no Request):
    the declared size and the media type are checked before a byte is read, and chunked
    bodies are counted while they arrive."""
    declared = media = b""
    for name, value in headers:
        if name == b"content-length":
            declared = value
        elif name == b"content-type":
            media = value
    if declared:
        if not declared.isdigit():
            raise BadRequest(400, "bad_request", "Content-Length is not a number")
        if int(declared) > limit:
            raise BadRequest(413, "payload_too_large", f"body is larger than {limit} bytes")
    if media.split(b";")[0].strip().lower() != b"application/json":
        raise BadRequest(415, "unsupported_media_type", "Content-Type must be application/json")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, "payload_too_large", f"body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_json_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    return await read_body(request.scope["headers"], request.receive, limit)


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
