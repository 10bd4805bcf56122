"""The composition root: connects the adapters and builds the HTTP application."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from cinemate import database
from cinemate.docs import docs_routes
from cinemate.middleware import RequestContext
from cinemate.settings import Settings
from command_side.group_commit import GroupCommitter
from command_side.http import command_routes
from query_side.health import Probe
from query_side.http import query_routes
from schema import openapi
from schema.http import error_response
from schema.responses import ComponentHealth

log = logging.getLogger("cinemate.app")


@dataclass
class Services:
    """Everything a running service holds open; closed by the exit stack that made it."""

    settings: Settings
    pool: asyncpg.Pool
    redis: aioredis.Redis
    committer: GroupCommitter


async def open_services(
    settings: Settings, database_url: str, redis_url: str, stack: AsyncExitStack
) -> Services:
    pool = await database.create_pool(database_url, max_size=12)
    stack.push_async_callback(pool.close)
    async with pool.acquire() as conn:
        await database.migrate(conn)
    redis = aioredis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    stack.push_async_callback(redis.aclose)
    committer = GroupCommitter(
        pool,
        concurrency=settings.group_commit_concurrency,
        max_pending_events=settings.max_pending_events,
    )
    committer.start()
    stack.push_async_callback(committer.stop)
    return Services(settings, pool, redis, committer)


def health_probes(services: Services) -> dict[str, Probe]:
    async def postgres() -> ComponentHealth:
        async with services.pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1")
        return ComponentHealth(status="ok")

    async def redis() -> ComponentHealth:
        try:
            await services.redis.ping()
        except Exception as exc:
            return ComponentHealth(status="degraded", detail={"error": repr(exc)})
        return ComponentHealth(status="ok")

    async def kafka() -> ComponentHealth:
        return ComponentHealth(status="disabled")

    return {"postgres": postgres, "redis": redis, "kafka": kafka}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), exc.detail)


def build_app(services: Services) -> Starlette:
    routes = [
        *command_routes(services.committer),
        *query_routes(services.pool, health_probes(services)),
        *docs_routes(openapi.build()),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(RequestContext)],
        exception_handlers={HTTPException: _http_error},
    )
