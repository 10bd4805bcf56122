"""Feature documents: Redis first, PostgreSQL when the cache misses or Redis is down."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from schema.cache import FeatureCache


async def read_features(
    pool: asyncpg.Pool, cache: FeatureCache, user_id: str
) -> dict[str, Any] | None:
    cached = await cache.read(user_id)
    if cached is not None:
        return cached
    async with pool.acquire() as conn:
        raw = await conn.fetchval("SELECT doc::text FROM user_features WHERE user_id = $1", user_id)
    return orjson.loads(raw) if raw is not None else None
