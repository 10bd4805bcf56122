"""Feature documents: Redis first, the read model's table when the cache misses or Redis
is down."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from schema.cache import FeatureCache

StoredFeatures = Callable[[str], Awaitable[dict[str, Any] | None]]


async def read_features(
    cache: FeatureCache, stored: StoredFeatures, user_id: str
) -> dict[str, Any] | None:
    cached = await cache.read(user_id)
    if cached is not None:
        return cached
    return await stored(user_id)
