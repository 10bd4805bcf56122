"""Read endpoints: features, popular, user streams, health, projection status."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from event_store.errors import UNAVAILABLE_ERRORS
from query_side import health
from query_side.features import StoredFeatures, read_features
from query_side.popular import PopularCache
from query_side.user_events import read_stream_page
from schema import commands, openapi, responses
from schema.cache import FeatureCache
from schema.commands import Identifier
from schema.http import JSONResponse, admin_only, error_response, unavailable
from schema.openapi import ApiRoute
from schema.responses import UserEvents

_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)
Refresh = Callable[[str], Awaitable[dict[str, Any] | None]]
# The projections' positions, lag and state, as GET /api/v1/admin/projections lists them.
ProjectionReport = Callable[[], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True)
class QueryServices:
    pool: asyncpg.Pool
    features_cache: FeatureCache
    stored_features: StoredFeatures
    probes: Mapping[str, health.Probe]
    refresh_features: Refresh
    projection_report: ProjectionReport
    admin_token: str | None


class BadQuery(Exception):
    def __init__(self, where: str, name: str, msg: str) -> None:
        super().__init__(msg)
        self.loc = [where, name]
        self.msg = msg


def query_param(request: Request, name: str) -> str | None:
    """A query parameter given at most once (a repeated one is a list, which no
    parameter of this API is: refused rather than silently taking one of them)."""
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise BadQuery("query", name, f"{name} may be given only once")
    return values[0] if values else None


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = query_param(request, name)
    if raw is None:  # `?limit=` is no integer: refused below, as the schema says
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise BadQuery("query", name, f"{name} must be an integer from {low} to {high}")
    return value


def user_id_param(request: Request) -> str:
    user_id: str = request.path_params["user_id"]
    try:
        _IDENTIFIER.validate_python(user_id)
    except ValidationError:
        raise BadQuery("path", "user_id", "1-64 characters from [A-Za-z0-9_.:-]") from None
    return user_id


def answering(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except BadQuery as exc:
            return error_response(
                422, "validation_error", [{"loc": exc.loc, "msg": exc.msg, "type": "value_error"}]
            )
        except UNAVAILABLE_ERRORS as exc:
            return unavailable(f"store unavailable: {exc}")

    return endpoint


def query_routes(services: QueryServices) -> list[Route]:
    pool = services.pool
    trending_copies = PopularCache(pool)

    async def user_events(request: Request) -> Response:
        user_id = user_id_param(request)
        after = int_param(request, "after", 0, 0, 2**31 - 1)
        limit = int_param(request, "limit", 100, 1, 1000)
        # One event past the page tells whether this page holds the stream's last event:
        # then next_after is null, even when the page is full (SPEC).
        page = await read_stream_page(pool, user_id, after, limit + 1)
        if page is None:
            return error_response(404, "not_found", f"user {user_id} has no events")
        more = len(page) > limit
        page = page[:limit]
        next_after = page[-1]["stream_version"] if more else None
        body = UserEvents.model_validate(
            {"user_id": user_id, "events": page, "next_after": next_after}
        )
        return JSONResponse(body)

    async def features(request: Request) -> Response:
        user_id = user_id_param(request)
        document = await read_features(services.features_cache, services.stored_features, user_id)
        if document is None:
            return error_response(404, "not_found", f"no features for user {user_id}")
        return JSONResponse(document)

    async def refresh(request: Request) -> Response:
        user_id = user_id_param(request)
        document = await services.refresh_features(user_id)
        if document is None:
            return error_response(404, "not_found", f"user {user_id} has no events")
        return JSONResponse(document)

    async def trending(request: Request) -> Response:
        limit = int_param(request, "limit", 10, 1, 100)
        genre = query_param(request, "genre") or None
        # PostgreSQL text cannot hold NUL (the query would fail): no genre has one.
        items = [] if genre and "\x00" in genre else await trending_copies.get(genre, limit)
        return JSONResponse({"genre": genre, "items": items})

    async def projections(request: Request) -> Response:
        return JSONResponse({"projections": await services.projection_report()})

    async def live(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def ready(request: Request) -> Response:
        report = await health.check({"postgres": services.probes["postgres"]})
        return JSONResponse(report, 200 if report.status != "down" else 503)

    async def full_health(request: Request) -> Response:
        report = await health.check(services.probes)
        return JSONResponse(report, 200 if report.status != "down" else 503)

    admin = services.admin_token
    return [
        ApiRoute(
            "/api/v1/users/{user_id}/events",
            answering(user_events),
            methods=["GET"],
            doc=openapi.Operation(
                "A user's event stream, oldest first",
                "queries",
                None,
                openapi.answers({200: responses.UserEvents}, 404, 422, 503),
                (
                    openapi.USER_ID,
                    openapi.Param(
                        "after",
                        "query",
                        {"type": "integer", "minimum": 0, "maximum": commands.MAX_INT32},
                        "Stream version to start after",
                    ),
                    openapi.Param(
                        "limit",
                        "query",
                        {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                    ),
                ),
            ),
        ),
        ApiRoute(
            "/api/v1/features/{user_id}",
            answering(features),
            methods=["GET"],
            doc=openapi.Operation(
                "The user's feature document",
                "queries",
                None,
                openapi.answers({200: responses.FeatureDocument}, 404, 422, 503),
                (openapi.USER_ID,),
            ),
        ),
        ApiRoute(
            "/api/v1/features/{user_id}/refresh",
            answering(refresh),
            methods=["POST"],
            doc=openapi.Operation(
                "Recompute the user's features from their stream, store and return them",
                "queries",
                None,
                openapi.answers({200: responses.FeatureDocument}, 404, 422, 503),
                (openapi.USER_ID,),
            ),
        ),
        ApiRoute(
            "/api/v1/popular",
            answering(trending),
            methods=["GET"],
            doc=openapi.Operation(
                "Trending movies (time-decayed)",
                "queries",
                None,
                {200: responses.Popular, 422: responses.ErrorBody},
                (
                    openapi.Param(
                        "genre", "query", {"type": "string"}, "Only movies of this genre"
                    ),
                    openapi.Param(
                        "limit",
                        "query",
                        {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                    ),
                ),
            ),
        ),
        ApiRoute(
            "/api/v1/admin/projections",
            admin_only(answering(projections), admin),
            methods=["GET"],
            doc=openapi.Operation(
                "Each projection's position, lag and state",
                "admin",
                None,
                openapi.answers({200: responses.Projections}, 401, 403),
                admin=True,
            ),
        ),
        ApiRoute(
            "/api/v1/health/live",
            live,
            methods=["GET"],
            doc=openapi.Operation("200 while the process runs", "health", None, {200: None}),
        ),
        ApiRoute(
            "/api/v1/health/ready",
            ready,
            methods=["GET"],
            doc=openapi.Operation(
                "200 when the service can serve",
                "health",
                None,
                {200: responses.Health, 503: responses.Health},
            ),
        ),
        ApiRoute(
            "/api/v1/health",
            full_health,
            methods=["GET"],
            doc=openapi.Operation(
                "Health of every component",
                "health",
                None,
                {200: responses.Health, 503: responses.Health},
            ),
        ),
    ]
