"""Command endpoints: validate, append, answer only once the events are committed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from command_side.event_store import AppendResult
from command_side.group_commit import (
    UNAVAILABLE_ERRORS,
    GroupCommitter,
    Overloaded,
    StoreUnavailable,
)
from command_side.new_events import new_event
from command_side.request_body import BadRequest, parse, read_json_body
from projections.rebuild import RebuildInProgress
from schema.commands import ADAPTERS, BatchCommand, Command
from schema.http import Endpoint, JSONResponse, admin_only, error_response, unavailable

StartRebuild = Callable[[str], Awaitable[None]]


class UnknownProjection(KeyError):
    pass


class RebuildRefused(RuntimeError):
    pass


def _answer(result: AppendResult) -> dict[str, object]:
    return {
        "event_id": str(result.event_id),
        "position": result.position,
        "stream_version": result.stream_version,
        "status": result.outcome,
    }


def _conflict(results: list[AppendResult]) -> JSONResponse:
    used = [str(r.event_id) for r in results if r.outcome == "conflict"]
    return error_response(
        409,
        "conflict",
        f"event_id already used for a different event: {', '.join(used)}; nothing was stored",
    )


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


def _guarded(handler: Endpoint) -> Endpoint:
    """Turn refusals into their answers; nothing was stored in any of these cases."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except BadRequest as exc:
            return error_response(exc.status_code, exc.error, exc.detail)
        except (StoreUnavailable, Overloaded) as exc:
            return unavailable(str(exc))

    return endpoint


def single_command_endpoint(kind: str, committer: GroupCommitter) -> Endpoint:
    adapter = ADAPTERS[kind]

    async def endpoint(request: Request) -> Response:
        command: Command = parse(adapter, await read_json_body(request))
        (result,) = await committer.append([new_event(command)])
        if result.outcome == "conflict":
            return _conflict([result])
        return JSONResponse(_answer(result), 202 if result.outcome == "accepted" else 200)

    return _guarded(endpoint)


def batch_endpoint(committer: GroupCommitter) -> Endpoint:
    adapter = ADAPTERS["batch"]

    async def endpoint(request: Request) -> Response:
        batch: BatchCommand = parse(adapter, await read_json_body(request))
        _duplicate_ids(batch)
        results = await committer.append([new_event(command) for command in batch.events])
        if any(r.outcome == "conflict" for r in results):
            return _conflict(results)
        status = 202 if any(r.outcome == "accepted" for r in results) else 200
        return JSONResponse({"results": [_answer(r) for r in results]}, status)

    return _guarded(endpoint)


def command_routes(committer: GroupCommitter) -> list[Route]:
    return [
        *(
            Route(
                f"/api/v1/events/{kind}", single_command_endpoint(kind, committer), methods=["POST"]
            )
            for kind in ("watch", "search", "rating", "favorite")
        ),
        Route("/api/v1/events/batch", batch_endpoint(committer), methods=["POST"]),
        Route("/api/v1/feedback", single_command_endpoint("feedback", committer), methods=["POST"]),
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
        Route(
            "/api/v1/admin/projections/{name}/rebuild",
            admin_only(rebuild, admin_token),
            methods=["POST"],
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
        except RebuildInProgress as exc:
            return error_response(
                503,
                "rebuild_running",
                f"read models are being rebuilt ({exc}); nothing was erased, retry after it",
                headers={"Retry-After": "10"},
            )
        return JSONResponse({"user_id": user_id, "erased_events": erased, "status": "forgotten"})

    return [
        Route("/api/v1/users/{user_id}", admin_only(forget_user, admin_token), methods=["DELETE"])
    ]
