"""Feature documents: Redis first, PostgreSQL when the cache misses or Redis is down."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis

from schema.cache import features_key

log = logging.getLogger("cinemate.query_side")


async def read_features(
    pool: asyncpg.Pool, redis: aioredis.Redis, user_id: str
) -> dict[str, Any] | None:
    try:
        cached = await redis.get(features_key(user_id))
        if cached is not None:
            document: dict[str, Any] = orjson.loads(cached)
            return document
    except (aioredis.RedisError, OSError) as exc:
        log.debug("features cache unavailable: %r", exc)
    async with pool.acquire() as conn:
        raw = await conn.fetchval("SELECT doc::text FROM user_features WHERE user_id = $1", user_id)
    return orjson.loads(raw) if raw is not None else None
