"""Read endpoints: health and the user's event stream."""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg
from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from query_side import health
from query_side.user_events import read_stream_page
from schema.commands import Identifier
from schema.http import JSONResponse, error_response, unavailable
from schema.responses import UserEvents

_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)
_STORE_DOWN = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}")
    return value


def _query_error(name: str, msg: str) -> Response:
    return error_response(
        422, "validation_error", [{"loc": ["query", name], "msg": msg, "type": "value_error"}]
    )


def query_routes(pool: asyncpg.Pool, probes: Mapping[str, health.Probe]) -> list[Route]:
    async def user_events(request: Request) -> Response:
        user_id = request.path_params["user_id"]
        try:
            _IDENTIFIER.validate_python(user_id)
        except ValidationError:
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
            after = _int_param(request, "after", 0, 0, 2**31 - 1)
        except ValueError as exc:
            return _query_error("after", str(exc))
        try:
            limit = _int_param(request, "limit", 100, 1, 1000)
        except ValueError as exc:
            return _query_error("limit", str(exc))
        try:
            page = await read_stream_page(pool, user_id, after, limit)
        except _STORE_DOWN as exc:
            return unavailable(f"event store unavailable: {exc}")
        if page is None:
            return error_response(404, "not_found", f"user {user_id} has no events")
        next_after = page[-1]["stream_version"] if len(page) == limit else None
        body = UserEvents.model_validate(
            {"user_id": user_id, "events": page, "next_after": next_after}
        )
        return JSONResponse(body)

    async def live(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        report = await health.check({"postgres": probes["postgres"]})
        return JSONResponse(report, 200 if report.status != "down" else 503)

    async def full_health(request: Request) -> Response:
        report = await health.check(probes)
        return JSONResponse(report, 200 if report.status != "down" else 503)

    return [
        Route("/api/v1/users/{user_id}/events", user_events, methods=["GET"]),
        Route("/api/v1/health/live", live, methods=["GET"]),
        Route("/api/v1/health/ready", ready, methods=["GET"]),
        Route("/api/v1/health", full_health, methods=["GET"]),
    ]
