"""The movie catalog as projections need it: genres by movie id, refreshed now and then."""

from __future__ import annotations

import time
from collections.abc import Sequence

import asyncpg

REFRESH_SECONDS = 5.0


class GenreLookup:
    def __init__(self) -> None:
        self._genres: dict[str, tuple[str, ...]] = {}
        self._loaded_at = -REFRESH_SECONDS

    def __call__(self, movie_id: str) -> Sequence[str]:
        return self._genres.get(movie_id, ())

    async def refresh(self, conn: asyncpg.Connection, *, force: bool = False) -> None:
        if not force and time.monotonic() - self._loaded_at < REFRESH_SECONDS:
            return
        rows = await conn.fetch("SELECT movie_id, genres FROM movies")
        self._genres = {r["movie_id"]: tuple(r["genres"]) for r in rows}
        self._loaded_at = time.monotonic()
