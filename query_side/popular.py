"""Trending movies: time-decayed interaction weight, optionally within a genre.

GET /popular is answered from a copy about `max_age` (1 s) old per genre: the ranking
moves with every event, so every query would read and sort PostgreSQL's item_stats (a
rare genre scans most of it), thousands of times a second for the same answer. One read
per genre per second holds the `MAX_LIMIT` best, a request slices its limit; an expired
copy still answers while its successor is read (one read, whoever asks meanwhile). The
copies are bounded in bytes (genres are whatever clients send, so the least recently used
go first).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any

import asyncpg
from cachetools import LRUCache

POPULAR_SQL = """
SELECT s.movie_id, s.trend_key, m.title, COALESCE(m.genres, '{}') AS genres
FROM item_stats AS s LEFT JOIN movies AS m ON m.movie_id = s.movie_id
WHERE s.trend_key > '-Infinity'::float8
  AND ($1::text IS NULL OR $1 = ANY(m.genres))
ORDER BY s.trend_key DESC, s.movie_id
LIMIT $2
"""
MAX_LIMIT = 100
Items = list[dict[str, Any]]


async def popular(pool: asyncpg.Pool, genre: str | None, limit: int) -> Items:
    async with pool.acquire() as conn:
        rows = await conn.fetch(POPULAR_SQL, genre, limit)
    return [
        {
            "movie_id": r["movie_id"],
            "score": round(r["trend_key"], 6),
            "title": r["title"],
            "genres": list(r["genres"]),
        }
        for r in rows
    ]


def items_bytes(genre: str | None, items: Items) -> int:
    """Memory an entry holds: its key, the list, each item's dict and values."""
    size = sys.getsizeof(genre) + sys.getsizeof(items) + 200  # the cache's slot and node
    for item in items:
        size += sys.getsizeof(item) + sys.getsizeof(item["score"])
        size += sys.getsizeof(item["movie_id"]) + sys.getsizeof(item["title"])
        size += sys.getsizeof(item["genres"]) + sum(sys.getsizeof(g) for g in item["genres"])
    return size


class PopularCache:
    """`popular` answers per genre, each read at most once per `max_age` seconds."""

    def __init__(self, pool: asyncpg.Pool, max_age: float = 1.0, max_bytes: int = 8 * 2**20):
        self.pool = pool
        self.max_age = max_age
        self.max_bytes = max_bytes
        # genre -> (read at, items, bytes)
        self._copies: LRUCache[str | None, tuple[float, Items, int]] = LRUCache(
            max_bytes, getsizeof=lambda entry: entry[2]
        )
        self._reading: dict[str | None, asyncio.Future[Items]] = {}

    async def get(self, genre: str | None, limit: int) -> Items:
        found = self._copies.get(genre)
        if found is not None and time.monotonic() - found[0] <= self.max_age:
            return found[1][:limit]
        pending = self._reading.get(genre)
        if pending is None:
            pending = asyncio.ensure_future(self._read(genre))
            self._reading[genre] = pending
            pending.add_done_callback(self._read_done(genre))
        if found is not None:
            # Expired: answered from the copy while the new one is read (so no request
            # waits for a read but the first of a genre; a copy is then at most max_age
            # plus one read old).
            return found[1][:limit]
        return (await asyncio.shield(pending))[:limit]

    def _read_done(self, genre: str | None) -> Callable[[asyncio.Future[Items]], None]:
        def done(read: asyncio.Future[Items]) -> None:
            self._reading.pop(genre, None)
            if not read.cancelled():
                read.exception()  # a failed read is retried by the next request

        return done

    async def _read(self, genre: str | None) -> Items:
        read_at = time.monotonic()
        items = await popular(self.pool, genre, MAX_LIMIT)
        size = items_bytes(genre, items)
        if size <= self.max_bytes:
            self._copies[genre] = (read_at, items, size)
        return items

    @property
    def held_bytes(self) -> int:
        return int(self._copies.currsize)
