"""The read models and what they write with: the part of the composition root that a
process only projecting needs.

`cinemate.app` builds the service on it; `cinemate replay` uses it alone, so a replay
starts without importing the web app, the query side or the model (numpy, scipy,
scikit-learn): about three quarters of the service's import time.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis

from cinemate import database
from cinemate.settings import Settings
from projections.catalog import GenreLookup
from projections.outcomes import OutcomesProjection
from projections.projection import Projection
from projections.simple_projections import (
    AuditProjection,
    ItemStatsProjection,
    ModelFeedbackProjection,
)
from projections.user_features import UserFeaturesProjection
from schema.cache import FeatureCache


def make_projections(
    cache: FeatureCache, genres: GenreLookup, *, publish_features: bool = False
) -> dict[str, Projection]:
    projections: list[Projection] = [
        UserFeaturesProjection(cache, genres, publish=publish_features),
        ItemStatsProjection(),
        AuditProjection(),
        ModelFeedbackProjection(),
        OutcomesProjection(),
    ]
    return {p.name: p for p in projections}


@dataclass
class ReadModels:
    """A migrated database's pool, the Redis copy, and the projections writing both."""

    pool: asyncpg.Pool
    redis: aioredis.Redis
    features_cache: FeatureCache
    genres: GenreLookup
    projections: dict[str, Projection]


async def open_read_models(
    settings: Settings, database_url: str, redis_url: str, stack: AsyncExitStack
) -> ReadModels:
    """Open the pool (migrating first) and the cache, closed by `stack`."""
    pool = await database.create_pool(database_url, max_size=16)
    stack.push_async_callback(database.close_pool, pool)
    async with pool.acquire() as conn:
        await database.migrate(conn)
    redis = aioredis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    stack.push_async_callback(redis.aclose)
    # A new cache epoch for this process before it caches or reads anything.
    features_cache = FeatureCache(redis)
    await features_cache.start()
    stack.push_async_callback(features_cache.close)
    genres = GenreLookup()
    projections = make_projections(features_cache, genres, publish_features=settings.kafka_on)
    return ReadModels(pool, redis, features_cache, genres, projections)
