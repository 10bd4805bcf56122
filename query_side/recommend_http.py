"""Recommendation endpoints: recommend, similar, model info and reload."""

from __future__ import annotations

import re
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import orjson
from cachetools import LRUCache
from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from query_side import recommend
from query_side.http import BadQuery, answering, int_param, query_param, user_id_param
from query_side.model_serving import (
    OUTSIDE,
    ModelHolder,
    ModelRefused,
    ServedModel,
    allowed_path,
)
from schema import commands, openapi, responses
from schema.commands import EXCLUDE_PATTERN, MAX_EXCLUDE, Identifier
from schema.http import JSONResponse, admin_only, error_response
from schema.openapi import ApiRoute

POPULARITY_VERSION = "popularity"
_MOVIE_ID: TypeAdapter[str] = TypeAdapter(Identifier)
_EXCLUDE = re.compile(EXCLUDE_PATTERN)
TRENDING_SQL = """
SELECT movie_id FROM item_stats WHERE trend_key > '-Infinity'::float8
ORDER BY trend_key DESC, movie_id LIMIT $1
"""
# The insert need not wait for the WAL flush: losing a recommendation record in a crash
# only loses the attribution of its feedback, never an acknowledged event.
RECORD_SQL = """
WITH quick AS (SELECT set_config('synchronous_commit', 'off', true))
INSERT INTO recommendations (recommendation_id, user_id, model_version, strategy, items)
SELECT $1, $2, $3, $4, $5 FROM quick
"""


class Trending:
    """The trending list, read at most once a second: it moves slowly, and cold starts
    are common."""

    def __init__(self, max_age: float = 1.0) -> None:
        self.max_age = max_age
        self._movies: list[str] = []
        self._read_at = float("-inf")

    async def get(self, conn: asyncpg.Connection) -> list[str]:
        now = time.monotonic()
        if now - self._read_at > self.max_age:
            self._movies = [r["movie_id"] for r in await conn.fetch(TRENDING_SQL, 500)]
            self._read_at = now
        return self._movies


Ranking = tuple[str, list[tuple[str, float]]]
# Beside each movie id's string, a ranked movie holds its (movie, score) pair, the score
# and the list's slot; an entry also holds its (ranking, weight) pair and the cache's
# bookkeeping (two dict slots and an ordering node): about 300 bytes on CPython 3.11.
PAIR_BYTES = sys.getsizeof((None, None)) + sys.getsizeof(0.0) + 8
ENTRY_BYTES = 300


def ranking_bytes(key: tuple[Any, ...], ranking: Ranking) -> int:
    """The memory a cached ranking and its key hold, from sys.getsizeof of their parts
    (cheap: a ranking has at most 100 movies, and it is weighed once, when put)."""
    _, ranked = ranking  # the strategy: one of two shared strings
    size = ENTRY_BYTES + sys.getsizeof(key) + sys.getsizeof(ranking) + sys.getsizeof(ranked)
    for part in key:
        size += sys.getsizeof(part)
        if isinstance(part, frozenset):
            size += sum(sys.getsizeof(movie) for movie in part)
    return size + sum(PAIR_BYTES + sys.getsizeof(movie) for movie, _ in ranked)


class RankingCache:
    """Rankings by everything they depend on: the user's last event (its store
    position), the model, the query. Any new event or model swap changes the key, so an
    answer is never stale; a page reload or a second screen is then answered without
    scoring again. Least recently used rankings go first once they would hold more than
    `max_bytes`."""

    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        self.max_bytes = max_bytes
        # Each value carries its weight, so that the key's share is counted too.
        self._rankings: LRUCache[tuple[Any, ...], tuple[Ranking, int]] = LRUCache(
            max_bytes, getsizeof=lambda weighed: weighed[1]
        )

    def get(self, key: tuple[Any, ...]) -> Ranking | None:
        found = self._rankings.get(key)
        return found[0] if found is not None else None

    def put(self, key: tuple[Any, ...], value: Ranking) -> None:
        size = ranking_bytes(key, value)
        if size <= self.max_bytes:
            self._rankings[key] = (value, size)

    @property
    def held_bytes(self) -> int:
        return int(self._rankings.currsize)


class Catalog(Protocol):
    """The movie catalog as the query side reads it (titles, genres, genre members)."""

    def __call__(self, movie_id: str) -> Sequence[str]: ...

    def title(self, movie_id: str) -> str | None: ...

    def movies_in(self, genre: str) -> frozenset[str]: ...

    def genre_named(self, text: str) -> str | None: ...

    async def refresh(self, conn: asyncpg.Connection, *, current: bool = False) -> None: ...


@dataclass(frozen=True)
class RecommendServices:
    pool: asyncpg.Pool
    models: ModelHolder
    catalog: Catalog
    models_dir: Path
    model_path: Path | None
    admin_token: str | None


def _exclude_param(request: Request) -> set[str]:
    """Exactly what the schema's pattern allows: up to MAX_EXCLUDE movie ids, no blanks."""
    raw = query_param(request, "exclude") or ""
    if _EXCLUDE.fullmatch(raw) is None:
        many = raw.count(",") >= MAX_EXCLUDE
        raise BadQuery(
            "query",
            "exclude",
            f"at most {MAX_EXCLUDE} movie ids"
            if many
            else "comma-separated movie ids (1-64 characters from [A-Za-z0-9_.:-])",
        )
    return set(raw.split(",")) if raw else set()


def _items(catalog: Catalog, ranked: list[tuple[str, float]]) -> list[dict[str, Any]]:
    return [
        {
            "movie_id": movie,
            "score": score,
            "title": catalog.title(movie),
            "genres": list(catalog(movie)),
        }
        for movie, score in ranked
    ]


def recommend_routes(services: RecommendServices) -> list[Route]:
    pool, models, catalog = services.pool, services.models, services.catalog
    trending_list = Trending()
    rankings = RankingCache()

    async def rank(
        conn: asyncpg.Connection,
        state: dict[str, Any] | None,
        served: ServedModel | None,
        limit: int,
        genre: str | None,
        exclude: set[str],
    ) -> tuple[str, list[tuple[str, float]]]:
        allowed = catalog.movies_in(genre) if genre else None
        exclude = exclude | recommend.seen_movies(state)
        if served is not None:
            ranked = recommend.personal(
                served.model, recommend.history_of(state), limit, exclude, allowed
            )
            if ranked is not None:
                return "personalized", ranked
        trending = await trending_list.get(conn)
        if not trending and served is not None:
            trending = [m for m, _ in served.model.popular(500)]
        searched = [
            g for q in (state or {}).get("recent_searches", []) if (g := catalog.genre_named(q))
        ]
        affinity = recommend.genre_affinity(state, searched)
        return "cold_start", recommend.cold_start(
            trending, catalog, affinity, limit, exclude, allowed
        )

    async def recommendations(request: Request) -> Response:
        user_id = user_id_param(request)
        limit = int_param(request, "limit", 10, 1, 100)
        genre = query_param(request, "genre") or None
        exclude = _exclude_param(request)
        async with pool.acquire() as conn:
            await catalog.refresh(conn)
            raw = await conn.fetchval(
                "SELECT state::text FROM user_features WHERE user_id = $1", user_id
            )
            state = orjson.loads(raw) if raw else None
            served = models.current
            key = (
                user_id,
                # The store position of the user's last event: unlike the stream version
                # it never repeats, so a stream re-created after a forget is a new key.
                state["position"] if state else 0,
                served.sha256 if served else None,
                limit,
                genre,
                frozenset(exclude),
            )
            cached = rankings.get(key) if state else None
            if cached is not None:
                strategy, ranked = cached
            else:
                strategy, ranked = await rank(conn, state, served, limit, genre, exclude)
                if state and strategy == "personalized":  # trending moves: not cached
                    rankings.put(key, (strategy, ranked))
            version = served.model.metadata.get("version") if served else POPULARITY_VERSION
            recommendation_id = uuid.uuid4().hex
            await conn.execute(
                RECORD_SQL,
                recommendation_id,
                user_id,
                version,
                strategy,
                [movie for movie, _ in ranked],
            )
        return JSONResponse(
            {
                "user_id": user_id,
                "recommendation_id": recommendation_id,
                "model_version": version,
                "strategy": strategy,
                "items": _items(catalog, ranked),
                "generated_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            }
        )

    async def similar(request: Request) -> Response:
        movie_id = request.path_params["movie_id"]
        try:
            _MOVIE_ID.validate_python(movie_id)
        except ValidationError:
            raise BadQuery("path", "movie_id", "1-64 characters from [A-Za-z0-9_.:-]") from None
        limit = int_param(request, "limit", 10, 1, 100)
        served = models.current
        if served is not None and served.model.index_of(movie_id) is not None:
            async with pool.acquire() as conn:
                await catalog.refresh(conn)
            ranked = [(m, round(s, 6)) for m, s in served.model.similar(movie_id, limit)]
            strategy = "item_to_item"
        else:
            # No model, or one trained before this movie arrived: answer from what the
            # service has, the catalog's genres and the trend, for any movie it knows.
            async with pool.acquire() as conn:
                await catalog.refresh(conn)
                known = catalog.title(movie_id) is not None or await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM item_stats WHERE movie_id = $1)", movie_id
                )
                if not known:
                    return error_response(404, "not_found", f"no movie {movie_id} is known")
                trending = await trending_list.get(conn)
            ranked = recommend.similar_by_genres(
                movie_id, catalog, catalog.movies_in, trending, limit
            )
            strategy = "genres_by_trend"
        version = served.model.metadata.get("version") if served else POPULARITY_VERSION
        return JSONResponse(
            {
                "movie_id": movie_id,
                "model_version": version,
                "strategy": strategy,
                "items": _items(catalog, ranked),
            }
        )

    async def info(request: Request) -> Response:
        served = models.current
        if served is None:
            return JSONResponse(
                {
                    "version": POPULARITY_VERSION,
                    "format": None,
                    "path": None,
                    "sha256": None,
                    "trained_at": None,
                    "items": 0,
                    "metrics": {},
                    "loaded_at": None,
                }
            )
        return JSONResponse(served.info())

    async def reload(request: Request) -> Response:
        body = await request.body()
        given = responses.ReloadRequest()  # no body: the default artifact
        if body:  # whitespace alone is no JSON (400), as the schema says
            try:
                given = responses.ReloadRequest.model_validate_json(body)
            except ValidationError as exc:
                errors = exc.errors(include_url=False, include_context=False, include_input=False)
                if any(e["type"] == "json_invalid" for e in errors):
                    return error_response(
                        400, "malformed_json", 'body must be empty or {"path": ...}'
                    )
                detail = [
                    {"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in errors
                ]
                return error_response(422, "validation_error", detail)
        path_text = given.path  # null or absent: the default
        try:
            if path_text:
                path = allowed_path(path_text, services.models_dir, services.model_path)
                if path is None:  # one answer for every path outside, existing or not
                    raise ModelRefused(422, OUTSIDE)
                served = await models.load(path)
            elif services.model_path is not None:
                served = await models.load(services.model_path)
            else:
                served = await models.load_newest(services.models_dir)
        except ModelRefused as exc:
            still = models.current.model.metadata.get("version") if models.current else None
            return error_response(
                exc.status_code,
                "not_found" if exc.status_code == 404 and not path_text else "model_refused",
                f"{exc.reason}; still serving {still or POPULARITY_VERSION}",
            )
        return JSONResponse({"status": "loaded", **served.info()})

    return [
        ApiRoute(
            "/api/v1/recommend/{user_id}",
            answering(recommendations),
            methods=["GET"],
            doc=openapi.Operation(
                "What to show the user next, scored from their current history",
                "queries",
                None,
                {200: responses.Recommendation, 422: responses.ErrorBody, 503: responses.ErrorBody},
                (
                    openapi.USER_ID,
                    openapi.Param(
                        "limit",
                        "query",
                        {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                    ),
                    openapi.Param(
                        "genre", "query", {"type": "string"}, "Only movies of this genre"
                    ),
                    openapi.Param(
                        "exclude",
                        "query",
                        {"type": "string", "pattern": commands.EXCLUDE_PATTERN},
                        f"Up to {commands.MAX_EXCLUDE} comma-separated movie ids to leave out",
                    ),
                ),
            ),
        ),
        ApiRoute(
            "/api/v1/movies/{movie_id}/similar",
            answering(similar),
            methods=["GET"],
            doc=openapi.Operation(
                "Similar movies (item to item)",
                "queries",
                None,
                {
                    200: responses.SimilarMovies,
                    404: responses.ErrorBody,
                    422: responses.ErrorBody,
                    503: responses.ErrorBody,
                },
                (
                    openapi.Param(
                        "movie_id",
                        "path",
                        {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
                        required=True,
                    ),
                    openapi.Param(
                        "limit",
                        "query",
                        {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                    ),
                ),
            ),
        ),
        ApiRoute(
            "/model/info",
            info,
            methods=["GET"],
            doc=openapi.Operation(
                "The model being served", "model", None, {200: responses.ModelInfo}
            ),
        ),
        ApiRoute(
            "/model/reload",
            admin_only(reload, services.admin_token),
            methods=["POST"],
            doc=openapi.Operation(
                "Load a model and swap it in; a broken one is refused",
                "admin",
                responses.ReloadRequest,
                {
                    200: responses.ModelInfo,
                    400: responses.ErrorBody,
                    401: responses.ErrorBody,
                    403: responses.ErrorBody,
                    404: responses.ErrorBody,
                    422: responses.ErrorBody,
                },
                admin=True,
                body_required=False,
            ),
        ),
    ]
