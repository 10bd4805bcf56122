"""The movie catalog: reference data written by admins and by imports, not an event stream."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from command_side.http import BadRequest, parse, read_json_body
from event_store.errors import UNAVAILABLE_ERRORS
from schema import commands, openapi
from schema.commands import ADAPTERS, Identifier, MovieCommand
from schema.http import JSONResponse, admin_only, error_response, unavailable
from schema.openapi import ApiRoute

UPSERT_SQL = """
INSERT INTO movies (movie_id, title, genres, year, updated_at)
SELECT m, t, coalesce(string_to_array(nullif(g, ''), '|'), '{}'), y, now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::integer[]) AS x(m, t, g, y)
ON CONFLICT (movie_id) DO UPDATE
SET title = excluded.title, genres = excluded.genres, year = excluded.year,
    updated_at = excluded.updated_at
"""

_MOVIE_ID: TypeAdapter[str] = TypeAdapter(Identifier)


async def upsert_movies(
    conn: asyncpg.Connection, movies: Sequence[tuple[str, MovieCommand]]
) -> None:
    await conn.execute(
        UPSERT_SQL,
        [movie_id for movie_id, _ in movies],
        [movie.title for _, movie in movies],
        ["|".join(movie.genres) for _, movie in movies],
        [movie.year for _, movie in movies],
    )


def catalog_routes(pool: asyncpg.Pool, admin_token: str | None) -> list[Route]:
    async def put_movie(request: Request) -> Response:
        movie_id = request.path_params["movie_id"]
        try:
            _MOVIE_ID.validate_python(movie_id)
            movie: MovieCommand = parse(ADAPTERS["movie"], await read_json_body(request))
        except ValidationError:
            return error_response(
                422,
                "validation_error",
                [
                    {
                        "loc": ["path", "movie_id"],
                        "msg": "1-64 characters from [A-Za-z0-9_.:-]",
                        "type": "string_pattern_mismatch",
                    }
                ],
            )
        except BadRequest as exc:
            return error_response(exc.status_code, exc.error, exc.detail)
        try:
            async with pool.acquire() as conn:
                await upsert_movies(conn, [(movie_id, movie)])
        except UNAVAILABLE_ERRORS as exc:
            return unavailable(f"store unavailable: {exc}")
        return JSONResponse({"movie_id": movie_id, **movie.model_dump()})

    return [
        ApiRoute(
            "/api/v1/movies/{movie_id}",
            admin_only(put_movie, admin_token),
            methods=["PUT"],
            doc=openapi.Operation(
                "Create or replace a catalog entry",
                "admin",
                commands.MovieCommand,
                openapi.answers({200: None}, 400, 401, 403, 413, 415, 422, 503),
                (
                    openapi.Param(
                        "movie_id",
                        "path",
                        {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
                        required=True,
                    ),
                ),
                admin=True,
            ),
        )
    ]
