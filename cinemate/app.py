"""The composition root: connects the adapters and builds the HTTP application."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg
import redis.asyncio as aioredis
from starlette.routing import BaseRoute

from cinemate import database
from cinemate.dashboard import dashboard_route
from cinemate.docs import docs_routes
from cinemate.metrics import MODEL_METRICS_TTL, Metrics, metrics_route, set_lags
from cinemate.middleware import ServiceApp
from cinemate.read_models import open_read_models, start_projectors, start_relay
from cinemate.settings import Settings
from command_side.catalog import catalog_routes
from command_side.http import (
    ForgetRefused,
    RebuildRefused,
    UnknownProjection,
    admin_command_routes,
    command_routes,
    forget_routes,
)
from event_store.append import GroupCommitter
from event_store.stopping import cancel_and_wait
from projections.catalog import GenreLookup
from projections.forget import forget_user
from projections.projection import Projection
from projections.rebuild import RebuildInProgress, begin_rebuild, rebuild
from projections.status import dead_letter_count, live_consumers, projection_status
from projections.user_features import refresh_user, stored_document
from query_side.experiments import ExperimentHolder
from query_side.health import Probe
from query_side.http import QueryServices, query_routes
from query_side.model_metrics import model_metrics, model_metrics_routes
from query_side.model_serving import ModelHolder, trusted_pickles
from query_side.recommend_http import RecommendServices, recommend_routes
from query_side.recommendation_log import RecommendationLog
from schema import openapi
from schema.cache import FeatureCache
from schema.responses import ComponentHealth

log = logging.getLogger("cinemate.app")

# Health turns "degraded" when a projection is further behind than this.
LAG_DEGRADED_SECONDS = 5.0


@dataclass
class Services:
    """Everything a running service holds open; closed by the exit stack that made it."""

    settings: Settings
    database_url: str
    pool: asyncpg.Pool
    redis: aioredis.Redis
    features_cache: FeatureCache
    committer: GroupCommitter
    genres: GenreLookup
    projections: dict[str, Projection]
    models: ModelHolder = field(default_factory=ModelHolder)
    metrics: Metrics = field(default_factory=Metrics)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    rebuilds: dict[str, asyncio.Task[int]] = field(default_factory=dict)
    recommendation_log: RecommendationLog | None = None
    # Plain SELECTs of the recommend path, on connections not reset per request.
    read_pool: asyncpg.Pool | None = None
    # The running A/B experiment, served beside (instead of) the current model.
    experiments: ExperimentHolder | None = None


def models_dir(settings: Settings) -> Path:
    return settings.data_dir / "models"


async def open_services(
    settings: Settings,
    database_url: str,
    redis_url: str,
    stack: AsyncExitStack,
    *,
    run_projections: bool | None = None,
    run_relay: bool | None = None,
    load_model: bool = True,
) -> Services:
    """Open everything; `run_projections` / `run_relay` default to what the settings say
    (ENABLE_CONSUMERS; ENABLE_KAFKA with brokers configured)."""
    read_models = await open_read_models(settings, database_url, redis_url, stack)
    metrics = Metrics()
    committer = GroupCommitter(
        read_models.pool,
        concurrency=settings.group_commit_concurrency,
        max_pending_events=settings.max_pending_events,
        on_committed=metrics.count_outcomes,
    )
    committer.start()
    stack.push_async_callback(committer.stop)
    services = Services(
        settings,
        database_url,
        read_models.pool,
        read_models.redis,
        read_models.features_cache,
        committer,
        read_models.genres,
        read_models.projections,
        metrics=metrics,
    )
    pool = services.pool
    stack.push_async_callback(
        lambda: cancel_and_wait([*services.tasks, *services.rebuilds.values()])
    )
    services.read_pool = await database.create_pool(
        database_url, min_size=1, max_size=8, reads_only=True
    )
    stack.push_async_callback(database.close_pool, services.read_pool)
    services.recommendation_log = RecommendationLog(pool)
    services.recommendation_log.start()
    stack.push_async_callback(services.recommendation_log.stop)
    if load_model:
        services.models.trusted_pickles = trusted_pickles(pool, settings.model_sha256)
        await services.models.load_initial(settings.model_path, models_dir(settings))
        if settings.model_path is None:  # an operator's MODEL_PATH is not overridden
            services.tasks.append(asyncio.create_task(services.models.watch(), name="models"))
        # The experiment running (if any) serves from the first request on, and whatever
        # another process starts or ends is followed.
        experiments = services.experiments = ExperimentHolder(services.models)
        await experiments.refresh(pool)
        services.tasks.append(asyncio.create_task(experiments.watch(pool), name="experiment"))
    if settings.enable_consumers if run_projections is None else run_projections:
        start_projectors(read_models)
    if settings.kafka_on if run_relay is None else run_relay:
        start_relay(read_models)
    return services


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
        if reason := services.features_cache.suspect:
            # Reads come from PostgreSQL until a new cache epoch is installed.
            return ComponentHealth(status="degraded", detail={"error": reason})
        return ComponentHealth(status="ok")

    async def kafka() -> ComponentHealth:
        async with services.pool.acquire(timeout=2) as conn:
            consumers = await live_consumers(conn)
            if not services.settings.kafka_on and not consumers:
                return ComponentHealth(status="disabled")
            relay = (await projection_status(conn, ["kafka_relay"]))[0]
        troubled = [
            *(["relay"] if relay["state"] != "running" else []),
            *(["relay lag"] if (relay["lag_seconds"] or 0) > LAG_DEGRADED_SECONDS else []),
            *(c["member"] for c in consumers if c["state"] != "running"),
        ]
        return ComponentHealth(
            status="degraded" if troubled else "ok",
            detail={"relay": relay, "consumers": consumers, "troubled": troubled},
        )

    async def model() -> ComponentHealth:
        served = services.models.current
        if served is None:
            return ComponentHealth(
                status="ok", detail={"version": "popularity", "note": "no trained model loaded"}
            )
        return ComponentHealth(
            status="ok",
            detail={
                "version": served.model.metadata.get("version"),
                "loaded_at": served.info()["loaded_at"],
            },
        )

    async def projections() -> ComponentHealth:
        async with services.pool.acquire(timeout=2) as conn:
            report = await projection_status(conn, list(services.projections))
        behind = [
            p["name"]
            for p in report
            if p["state"] == "stopped" or (p["lag_seconds"] or 0) > LAG_DEGRADED_SECONDS
        ]
        return ComponentHealth(
            status="degraded" if behind else "ok",
            detail={"projections": report, "behind": behind},
        )

    return {
        "postgres": postgres,
        "redis": redis,
        "kafka": kafka,
        "model": model,
        "projections": projections,
    }


def rebuild_starter(services: Services) -> Any:
    async def start(name: str) -> None:
        projection = services.projections.get(name)
        if projection is None:
            raise UnknownProjection(name)
        # Begun before answering, and refused by the same rule the projections listing
        # reads (a beating shadow checkpoint, whichever process runs it): after a 202 the
        # listing says `rebuilding`, and a 409 comes exactly while it does.
        try:
            async with services.pool.acquire() as conn:
                await begin_rebuild(conn, projection)
        except RebuildInProgress as exc:
            raise RebuildRefused(str(exc)) from None

        async def run() -> int:
            try:
                return await rebuild(services.pool, projection, begun=True)
            except Exception:
                log.exception("rebuild failed", extra={"projection": name})
                raise

        services.rebuilds[name] = asyncio.create_task(run(), name=f"rebuild-{name}")

    return start


def metrics_refresher(services: Services) -> Any:
    async def refresh() -> None:
        async with services.pool.acquire(timeout=2) as conn:
            report = await projection_status(conn, [*services.projections, "kafka_relay"])
        set_lags(
            services.metrics,
            [r for r in report if r["name"] in services.projections or r["lag_events"] is not None],
        )
        async with services.pool.acquire(timeout=2) as conn:
            services.metrics.dead_letters.set(await dead_letter_count(conn))
            consumers = await live_consumers(conn)
        services.metrics.consumer_lag.clear()
        for consumer in consumers:
            services.metrics.consumer_lag.labels(consumer["member"]).set(consumer["lag_messages"])
        services.metrics.model.clear()
        served = services.models.current
        version = served.model.metadata.get("version") if served else "popularity"
        services.metrics.model.labels(str(version)).set(1)
        experiment = services.experiments.current if services.experiments else None
        for variant in experiment.variants if experiment else ():
            services.metrics.model.labels(variant.version).set(1)
        now = time.monotonic()
        if now - services.metrics.online_read_at >= MODEL_METRICS_TTL:
            since = datetime.now(UTC) - timedelta(hours=24)
            async with services.pool.acquire(timeout=2) as conn:
                services.metrics.set_online(await model_metrics(conn, since))
            services.metrics.online_read_at = now

    return refresh


def build_app(services: Services) -> ServiceApp:
    async def refresh(user_id: str) -> dict[str, Any] | None:
        return await refresh_user(services.pool, services.features_cache, services.genres, user_id)

    async def report() -> list[dict[str, Any]]:
        async with services.pool.acquire() as conn:
            return await projection_status(conn, list(services.projections))

    async def stored_features(user_id: str) -> dict[str, Any] | None:
        return await stored_document(services.pool, user_id)

    queries = QueryServices(
        pool=services.pool,
        features_cache=services.features_cache,
        stored_features=stored_features,
        probes=health_probes(services),
        refresh_features=refresh,
        projection_report=report,
        admin_token=services.settings.admin_token,
    )

    async def forget(user_id: str) -> int:
        try:
            return await forget_user(
                services.pool,
                services.features_cache,
                user_id,
                list(services.projections),
                tombstones=services.settings.kafka_on,
            )
        except RebuildInProgress as exc:
            raise ForgetRefused(str(exc)) from exc

    routes = api_routes(
        services.committer,
        forget,
        rebuild_starter(services),
        services.pool,
        queries,
        RecommendServices(
            pool=services.pool,
            models=services.models,
            catalog=services.genres,
            models_dir=models_dir(services.settings),
            model_path=services.settings.model_path,
            admin_token=services.settings.admin_token,
            records=services.recommendation_log,
            reads=services.read_pool,
            experiments=services.experiments,
        ),
        services.settings.admin_token,
    )
    routes += [
        *docs_routes(openapi.build(routes)),
        metrics_route(services.metrics, metrics_refresher(services)),
        dashboard_route(),
    ]
    return ServiceApp(routes, services.metrics)


def api_routes(
    committer: GroupCommitter,
    forget: Callable[[str], Awaitable[int]],
    start_rebuild: Callable[[str], Awaitable[None]],
    pool: asyncpg.Pool,
    queries: QueryServices,
    recommending: RecommendServices,
    admin_token: str | None,
) -> list[BaseRoute]:
    """Every documented route of the API, each carrying its OpenAPI operation."""
    return [
        *command_routes(committer),
        *forget_routes(forget, admin_token),
        *admin_command_routes(start_rebuild, admin_token),
        *catalog_routes(pool, admin_token),
        *query_routes(queries),
        *recommend_routes(recommending),
        *model_metrics_routes(pool, admin_token),
    ]


def api_document() -> dict[str, Any]:
    """The OpenAPI document without opening anything (for tests and tools): the routes
    use their services only when a request comes, so placeholders are enough to read
    what each route declares."""
    unused = cast(Any, None)
    queries = QueryServices(unused, unused, unused, {}, unused, unused, None)
    recommending = RecommendServices(unused, unused, unused, Path(), None, None)
    return openapi.build(api_routes(unused, unused, unused, unused, queries, recommending, None))
