"""Recommendation endpoints: recommend, similar, model info and reload."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import numpy as np
import orjson
from cachetools import LRUCache
from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from event_store.append import time_ordered_id
from query_side import recommend, user_vectors
from query_side.experiments import ExperimentHolder
from query_side.experiments_http import experiment_routes
from query_side.http import BadQuery, answering, int_param, query_param, user_id_param
from query_side.model_serving import (
    OUTSIDE,
    ModelHolder,
    ModelRefused,
    ServedModel,
    allowed_path,
)
from query_side.recommendation_log import RecommendationLog, Record
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
# The user's state, with every item the projection keeps in a row of its own (the
# model reads the whole history), only when it is not the one whose vector is kept ($2:
# its position): a user asking again with no new event costs a primary-key lookup and a
# few bytes. One statement: the items are those of the same state.
STATE_SQL = """
SELECT f.position,
       CASE WHEN f.position = $2 THEN NULL ELSE f.state::text END AS state,
       CASE WHEN f.position = $2 THEN NULL ELSE
           (SELECT coalesce(json_object_agg(i.movie_id, i.signals), '{}')::text
            FROM user_items AS i WHERE i.user_id = f.user_id)
       END AS items
FROM user_features AS f WHERE f.user_id = $1
"""


def whole_state(row: asyncpg.Record) -> dict[str, Any]:
    """A STATE_SQL row's state, its items put back in."""
    state: dict[str, Any] = orjson.loads(row["state"])
    state["items"] = orjson.loads(row["items"])
    return state


class Trending:
    """The trending list, read at most once a second: it moves slowly, and cold starts
    are common."""

    def __init__(self, max_age: float = 1.0) -> None:
        self.max_age = max_age
        self._movies: list[str] = []
        self._read_at = float("-inf")

    async def get(self, pool: asyncpg.Pool) -> list[str]:
        now = time.monotonic()
        if now - self._read_at > self.max_age:
            self._read_at = now  # claimed: concurrent callers use the current list
            async with pool.acquire() as conn:
                self._movies = [r["movie_id"] for r in await conn.fetch(TRENDING_SQL, 500)]
        return self._movies


class Catalog(Protocol):
    """The movie catalog as the query side reads it (titles, genres, genre members)."""

    def __call__(self, movie_id: str) -> Sequence[str]: ...

    def title(self, movie_id: str) -> str | None: ...

    def movies_in(self, genre: str) -> frozenset[str]: ...

    def genre_named(self, text: str) -> str | None: ...

    def genre_map(self) -> Mapping[str, Sequence[str]]: ...

    def stale(self) -> bool: ...

    async def refresh(self, conn: asyncpg.Connection, *, current: bool = False) -> None: ...


@dataclass(frozen=True)
class RecommendServices:
    pool: asyncpg.Pool
    models: ModelHolder
    catalog: Catalog
    models_dir: Path
    model_path: Path | None
    admin_token: str | None
    # Started by the service (group commit); without one, each record is inserted alone.
    records: RecommendationLog | None = None
    # For the plain SELECTs of recommend and similar (database.create_pool reads_only).
    reads: asyncpg.Pool | None = None
    # The running A/B experiment, if any (kept in step with PostgreSQL by the service).
    experiments: ExperimentHolder | None = None


class GenreIndices:
    """The model's item indices of each genre's movies, per (model, genre): a genre of
    thousands of movies is then a ready array, not a loop over its ids per request.
    Valid while the catalog keeps the same member set (`movies_in` returns the same
    object until the catalog is reloaded); bounded in bytes."""

    def __init__(self, max_bytes: int = 16 * 2**20) -> None:
        self._indices: LRUCache[tuple[str, str], tuple[frozenset[str], np.ndarray]] = LRUCache(
            max_bytes, getsizeof=lambda entry: entry[1].nbytes + 200
        )

    def get(self, served: ServedModel, genre: str, members: frozenset[str]) -> np.ndarray:
        key = (served.sha256, genre)
        found = self._indices.get(key)
        if found is not None and found[0] is members:
            return found[1]
        indices = served.model.indices(members)
        if indices.nbytes + 200 <= self._indices.maxsize:
            self._indices[key] = (members, indices)
        return indices


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


_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def _explain_param(request: Request) -> bool:
    raw = query_param(request, "explain")
    if raw is None:
        return False
    value = _BOOLEANS.get(raw.lower())
    if value is None:
        raise BadQuery("query", "explain", "true or false")
    return value


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

    vectors = user_vectors.UserVectorCache()
    genre_indices = GenreIndices()
    records = services.records or RecommendationLog(pool)
    reads = services.reads or pool
    genre_index: list[recommend.GenreIndex] = []  # the current one, rebuilt per catalog
    experiments = services.experiments or ExperimentHolder(models)

    async def refresh_catalog() -> None:
        if catalog.stale():
            async with reads.acquire() as conn:
                await catalog.refresh(conn)

    async def user_state(
        user_id: str, served: ServedModel | None
    ) -> tuple[dict[str, Any] | None, user_vectors.UserVector | None]:
        """(state, vector): the state only when the kept vector is not current (the
        user's store position moved); a None vector is a user the model cannot score
        (a cold start, which reads the state)."""
        key = (user_id, served.sha256) if served is not None else None
        known = vectors.position(key) if key is not None else None
        async with reads.acquire() as conn:
            await catalog.refresh(conn)
            row = await conn.fetchrow(STATE_SQL, user_id, -1 if known is None else known)
            if row is not None and row["state"] is None:
                vector = vectors.get(key, row["position"]) if key is not None else None
                if vector is not None:
                    return None, vector
                # Dropped from the cache meanwhile: read the state after all.
                row = await conn.fetchrow(STATE_SQL, user_id, -1)
        if row is None:
            return None, None
        state = whole_state(row)
        vector = None
        if served is not None and key is not None:
            if served.model.n_items >= user_vectors.THREAD_ITEMS:
                vector = await asyncio.to_thread(user_vectors.read, served.model, state)
            else:
                vector = user_vectors.read(served.model, state)
            if vector is not None:
                vectors.put(key, row["position"], vector)
        return state, vector

    async def cold_start(
        state: dict[str, Any] | None,
        served: ServedModel | None,
        limit: int,
        allowed: frozenset[str] | None,
        exclude: set[str],
    ) -> list[tuple[str, float]]:
        exclude = exclude | recommend.seen_movies(state)
        trending = await trending_list.get(reads)
        if not trending and served is not None:
            trending = [m for m, _ in served.model.popular(500)]
        searched = [
            g for q in (state or {}).get("recent_searches", []) if (g := catalog.genre_named(q))
        ]
        affinity = recommend.genre_affinity(state, searched)
        return recommend.cold_start(trending, catalog, affinity, limit, exclude, allowed)

    async def explained(
        user_id: str,
        state: dict[str, Any] | None,
        served: ServedModel,
        ranked: list[tuple[str, float]],
    ) -> list[list[str]]:
        """`because` of each ranked item. Only explain=true comes here: a user whose
        vector was kept has their state read once more (the vector keeps no history)."""
        if state is None:
            async with reads.acquire() as conn:
                row = await conn.fetchrow(STATE_SQL, user_id, -1)
            state = whole_state(row) if row is not None else None
        model = served.model
        rows, weights = user_vectors.history_rows(model, state)
        indices = [i for m, _ in ranked if (i := model.index_of(m)) is not None]
        return model.because(rows, weights, indices)

    async def recommendations(request: Request) -> Response:
        user_id = user_id_param(request)
        limit = int_param(request, "limit", 10, 1, 100)
        genre = query_param(request, "genre") or None
        exclude = _exclude_param(request)
        explain = _explain_param(request)
        experiment = experiments.current
        served = models.current if experiment is None else experiment.assign(user_id)
        state, vector = await user_state(user_id, served)
        allowed = catalog.movies_in(genre) if genre else None
        if served is not None and vector is not None:
            # A fresh ranking from the scores kept for this state (a new event, a model
            # swap or a forget-and-return makes another state: they are read again).
            model = served.model
            excluded = np.concatenate([vector.seen, model.indices(exclude)])
            allowed_at = (
                genre_indices.get(served, genre, allowed)
                if genre is not None and allowed is not None
                else None
            )
            ranked = [
                (m, round(s, 6)) for m, s in model.rank(vector.scores, limit, excluded, allowed_at)
            ]
            strategy = "personalized"
        else:
            strategy = "cold_start"
            ranked = await cold_start(state, served, limit, allowed, exclude)
        version = str(served.model.metadata["version"]) if served else POPULARITY_VERSION
        recommendation_id = time_ordered_id().hex
        # Committed before the answer leaves: feedback naming this id finds it.
        await records.record(
            Record(recommendation_id, user_id, version, strategy, [m for m, _ in ranked])
        )
        items = _items(catalog, ranked)
        if explain and strategy == "personalized" and served is not None:
            for item, because in zip(
                items, await explained(user_id, state, served, ranked), strict=True
            ):
                item["because"] = because
        return JSONResponse(
            {
                "user_id": user_id,
                "recommendation_id": recommendation_id,
                "model_version": version,
                "strategy": strategy,
                "items": items,
                "generated_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            }
        )

    def genres_index() -> recommend.GenreIndex:
        movies = catalog.genre_map()
        if not genre_index or genre_index[0].built_for is not movies:
            genre_index[:] = [recommend.GenreIndex(movies)]
        return genre_index[0]

    async def similar(request: Request) -> Response:
        movie_id = request.path_params["movie_id"]
        try:
            _MOVIE_ID.validate_python(movie_id)
        except ValidationError:
            raise BadQuery("path", "movie_id", "1-64 characters from [A-Za-z0-9_.:-]") from None
        limit = int_param(request, "limit", 10, 1, 100)
        served = models.current
        await refresh_catalog()
        if served is not None and served.model.index_of(movie_id) is not None:
            ranked = [(m, round(s, 6)) for m, s in served.model.similar(movie_id, limit)]
            strategy = "item_to_item"
        else:
            # No model, or one trained before this movie arrived: answer from what the
            # service has, the catalog's genres and the trend, for any movie it knows.
            if catalog.title(movie_id) is None:
                async with reads.acquire() as conn:
                    known = await conn.fetchval(
                        "SELECT EXISTS (SELECT 1 FROM item_stats WHERE movie_id = $1)", movie_id
                    )
                if not known:
                    return error_response(404, "not_found", f"no movie {movie_id} is known")
            trending = await trending_list.get(reads)
            ranked = genres_index().similar(movie_id, trending, limit)
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
                openapi.answers({200: responses.Recommendation}, 422, 503),
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
                    openapi.Param(
                        "explain",
                        "query",
                        {"type": "boolean", "default": False},
                        "Add `because` to each personalized item: the at most 3 movies of"
                        " the viewer's history contributing most to its score (cold-start"
                        " items get none)",
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
                openapi.answers({200: responses.SimilarMovies}, 404, 422, 503),
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
                openapi.answers({200: responses.ModelInfo}, 400, 401, 403, 404, 422),
                admin=True,
                body_required=False,
            ),
        ),
        *experiment_routes(
            pool, experiments, services.models_dir, services.model_path, services.admin_token
        ),
    ]
