"""Command endpoints: read and validate the body (limits first, then JSON, then the
contract), append, answer only once the events are committed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from command_side.new_events import new_event, new_events
from event_store.append import AppendResult, GroupCommitter, Overloaded
from event_store.errors import UNAVAILABLE_ERRORS, StoreUnavailable
from schema import commands, openapi, responses
from schema.commands import ADAPTERS, SINGLE_COMMANDS, BatchCommand, Command
from schema.http import JSONResponse, admin_only, error_response, unavailable
from schema.openapi import ApiRoute

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


StartRebuild = Callable[[str], Awaitable[None]]


class UnknownProjection(KeyError):
    pass


class RebuildRefused(RuntimeError):
    pass


class ForgetRefused(RuntimeError):
    """Nothing was erased (a rebuild of the read models is running): retry later."""


def _answer(result: AppendResult) -> dict[str, object]:
    return {
        "event_id": str(result.event_id),
        "position": result.position,
        "stream_version": result.stream_version,
        "status": result.outcome,
    }


def _duplicate_ids(batch: BatchCommand) -> None:
    first_index: dict[object, int] = {}
    for index, command in enumerate(batch.events):
        if command.event_id is None:
            continue
        if command.event_id in first_index:
            raise BadRequest(
                422,
                "validation_error",
                [
                    {
                        "loc": ["body", "events", index, "event_id"],
                        "msg": f"event_id repeats that of events[{first_index[command.event_id]}]",
                        "type": "duplicate_event_id",
                    }
                ],
            )
        first_index[command.event_id] = index


Answer = tuple[int, dict[str, object]]
Handle = Callable[[bytes], Awaitable[Answer]]
_JSON = (b"content-type", b"application/json")


class CommandEndpoint:
    """One command route as a bare ASGI app: the ingest path, so it builds no Request or
    Response objects and adds no exception layer of its own. Refusals become their
    answers here; nothing was stored in any of them."""

    def __init__(self, handle: Handle) -> None:
        self.handle = handle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        extra: list[tuple[bytes, bytes]] = []
        try:
            status, answer = await self.handle(await read_body(scope["headers"], receive))
        except BadRequest as exc:
            status, answer = exc.status_code, {"error": exc.error, "detail": exc.detail}
        except (StoreUnavailable, Overloaded) as exc:
            status, answer = 503, {"error": "unavailable", "detail": str(exc)}
            extra.append((b"retry-after", b"1"))
        except ClientDisconnect:
            return
        body = orjson.dumps(answer)
        headers = [_JSON, (b"content-length", str(len(body)).encode()), *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _conflict_answer(results: list[AppendResult]) -> Answer:
    used = [str(r.event_id) for r in results if r.outcome == "conflict"]
    return 409, {
        "error": "conflict",
        "detail": f"event_id already used for a different event: {', '.join(used)}; "
        "nothing was stored",
    }


def single_command(kind: str, committer: GroupCommitter) -> CommandEndpoint:
    adapter = ADAPTERS[kind]

    async def handle(body: bytes) -> Answer:
        command: Command = parse(adapter, body)
        (result,) = await committer.append([new_event(command)])
        if result.outcome == "conflict":
            return _conflict_answer([result])
        return (202 if result.outcome == "accepted" else 200), _answer(result)

    return CommandEndpoint(handle)


def batch_command(committer: GroupCommitter) -> CommandEndpoint:
    adapter = ADAPTERS["batch"]

    async def handle(body: bytes) -> Answer:
        batch: BatchCommand = parse(adapter, body)
        _duplicate_ids(batch)
        results = await committer.append(new_events(batch.events))
        if any(r.outcome == "conflict" for r in results):
            return _conflict_answer(results)
        status = 202 if any(r.outcome == "accepted" for r in results) else 200
        return status, {"results": [_answer(r) for r in results]}

    return CommandEndpoint(handle)


def command_routes(committer: GroupCommitter) -> list[Route]:
    return [
        *(
            ApiRoute(
                f"/api/v1/events/{kind}",
                single_command(kind, committer),
                methods=["POST"],
                doc=doc,
            )
            for kind, doc in (
                (
                    "watch",
                    openapi.command(
                        "Record that a user watched (part of) a movie", commands.WatchCommand
                    ),
                ),
                ("search", openapi.command("Record a search", commands.SearchCommand)),
                (
                    "rating",
                    openapi.command(
                        "Record a rating (0.5..5.0, steps of 0.5)", commands.RatingCommand
                    ),
                ),
                ("favorite", openapi.command("Add or remove a favorite", commands.FavoriteCommand)),
            )
        ),
        ApiRoute(
            "/api/v1/events/batch",
            batch_command(committer),
            methods=["POST"],
            doc=openapi.Operation(
                "Record 1..1000 events, all or nothing",
                "commands",
                commands.BatchCommand,
                openapi.answers(
                    {202: responses.BatchAccepted, 200: responses.BatchAccepted},
                    *openapi.COMMAND_ERRORS,
                ),
            ),
        ),
        ApiRoute(
            "/api/v1/feedback",
            single_command("feedback", committer),
            methods=["POST"],
            doc=openapi.command("Record a reaction to a recommendation", commands.FeedbackCommand),
        ),
    ]


def admin_command_routes(start_rebuild: StartRebuild, admin_token: str | None) -> list[Route]:
    async def rebuild(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            await start_rebuild(name)
        except UnknownProjection:
            return error_response(404, "not_found", f"no projection named {name!r}")
        except RebuildRefused as exc:
            return error_response(409, "conflict", str(exc))
        except UNAVAILABLE_ERRORS as exc:
            return unavailable(f"event store unavailable: {exc}")
        return JSONResponse({"name": name, "state": "rebuilding"}, 202)

    return [
        ApiRoute(
            "/api/v1/admin/projections/{name}/rebuild",
            admin_only(rebuild, admin_token),
            methods=["POST"],
            doc=openapi.Operation(
                "Rebuild a read model by replay beside the live one, then swap it in",
                "admin",
                None,
                openapi.answers({202: responses.RebuildStarted}, 401, 403, 404, 409, 503),
                (
                    openapi.Param(
                        "name",
                        "path",
                        {
                            "type": "string",
                            "enum": ["user_features", "item_stats", "audit", "model_feedback"],
                        },
                        required=True,
                    ),
                ),
                admin=True,
            ),
        )
    ]


Forget = Callable[[str], Awaitable[int]]


def forget_routes(forget: Forget, admin_token: str | None) -> list[Route]:
    async def forget_user(request: Request) -> Response:
        user_id = request.path_params["user_id"]
        try:
            parse(ADAPTERS["user_id"], orjson.dumps(user_id))
        except BadRequest:
            return error_response(
                422,
                "validation_error",
                [
                    {
                        "loc": ["path", "user_id"],
                        "msg": "1-64 characters from [A-Za-z0-9_.:-]",
                        "type": "string_pattern_mismatch",
                    }
                ],
            )
        try:
            erased = await forget(user_id)
        except UNAVAILABLE_ERRORS as exc:
            return unavailable(f"event store unavailable: {exc}")
        except ForgetRefused as exc:
            return error_response(
                503,
                "rebuild_running",
                f"read models are being rebuilt ({exc}); nothing was erased, retry after it",
                headers={"Retry-After": "10"},
            )
        return JSONResponse({"user_id": user_id, "erased_events": erased, "status": "forgotten"})

    return [
        ApiRoute(
            "/api/v1/users/{user_id}",
            admin_only(forget_user, admin_token),
            methods=["DELETE"],
            doc=openapi.Operation(
                "Forget a user: events, read-model rows and cache entries, in one operation",
                "admin",
                None,
                openapi.answers({200: None}, 401, 403, 422, 503),
                (openapi.USER_ID,),
                admin=True,
            ),
        )
    ]
