"""Trending movies: time-decayed interaction weight, optionally within a genre."""

from __future__ import annotations

from typing import Any

import asyncpg

POPULAR_SQL = """
SELECT s.movie_id, s.trend_key, m.title, COALESCE(m.genres, '{}') AS genres
FROM item_stats AS s LEFT JOIN movies AS m ON m.movie_id = s.movie_id
WHERE s.trend_key > '-Infinity'::float8
  AND ($1::text IS NULL OR $1 = ANY(m.genres))
ORDER BY s.trend_key DESC, s.movie_id
LIMIT $2
"""


async def popular(pool: asyncpg.Pool, genre: str | None, limit: int) -> list[dict[str, Any]]:
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
