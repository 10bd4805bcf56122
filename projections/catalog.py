"""The movie catalog in memory (titles, genres), reloaded from PostgreSQL when it changed.

Whether it changed is one row (`catalog_version`, raised by a trigger on every catalog
write). Folds check it for every batch (`current=True`), after reading the batch's
events, so they never fold against a catalog older than those events; the query side
checks at most every REFRESH_SECONDS."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import asyncpg

REFRESH_SECONDS = 5.0


class GenreLookup:
    """Callable as `genres_of(movie_id)` for the folds; also titles and genre members."""

    def __init__(self) -> None:
        self._genres: dict[str, tuple[str, ...]] = {}
        self._titles: dict[str, str] = {}
        self._by_genre: dict[str, frozenset[str]] = {}
        self._genre_names: dict[str, str] = {}
        self._version: int | None = None
        self._loaded_at = -REFRESH_SECONDS

    def __call__(self, movie_id: str) -> Sequence[str]:
        return self._genres.get(movie_id, ())

    def title(self, movie_id: str) -> str | None:
        return self._titles.get(movie_id)

    def movies_in(self, genre: str) -> frozenset[str]:
        return self._by_genre.get(genre.lower(), frozenset())

    @property
    def version(self) -> int | None:
        """The catalog version the copy in memory was read at (None before the first)."""
        return self._version

    def genre_map(self) -> Mapping[str, tuple[str, ...]]:
        """Every catalog movie's genres (read only: the copy in memory itself)."""
        return self._genres

    def genre_named(self, text: str) -> str | None:
        """The catalog genre a search text names, if any ("comedy" -> "Comedy")."""
        return self._genre_names.get(text.strip().lower())

    def stale(self) -> bool:
        """Whether a `refresh` (not `current`) would look for a change now: readers that
        have no connection at hand acquire one only then."""
        return time.monotonic() - self._loaded_at >= REFRESH_SECONDS

    async def refresh(self, conn: asyncpg.Connection, *, current: bool = False) -> None:
        """Reload if the catalog changed; `current`: check now, else at most every
        REFRESH_SECONDS."""
        if not current and not self.stale():
            return
        # Claim this refresh before awaiting, so concurrent callers keep using the
        # current copy instead of all reloading the catalog at once.
        self._loaded_at = time.monotonic()
        version = await conn.fetchval("SELECT version FROM catalog_version")
        if version == self._version:
            return
        # Read after the version: a change committing in between makes the rows newer
        # than the version kept, and only costs one more reload.
        rows = await conn.fetch("SELECT movie_id, title, genres FROM movies")
        self._version = version
        self._genres = {r["movie_id"]: tuple(r["genres"]) for r in rows}
        self._titles = {r["movie_id"]: r["title"] for r in rows}
        members: dict[str, set[str]] = {}
        for movie_id, genres in self._genres.items():
            for genre in genres:
                members.setdefault(genre.lower(), set()).add(movie_id)
                self._genre_names[genre.lower()] = genre
        self._by_genre = {g: frozenset(m) for g, m in members.items()}
