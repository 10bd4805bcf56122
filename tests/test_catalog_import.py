"""Catalog PUT, MovieLens import (idempotent), and training from the store."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import httpx

from cinemate.app import Services
from cinemate.movielens import import_movielens, read_interactions
from model.artifacts import load_model, save_model
from model.recommender import train
from tests.projection_helpers import features_at

ADMIN = {"Authorization": "Bearer s3cret"}


def write_movielens(folder: Path) -> Path:
    folder.mkdir()
    (folder / "movies.csv").write_text(
        "movieId,title,genres\n"
        "1,Toy Story (1995),Adventure|Animation|Comedy\n"
        '2,"Heat, The Movie (1995)",Action|Crime\n'
        "3,Untitled,(no genres listed)\n"
        "4,Alien (1979),Horror|Sci-Fi\n"
    )
    rows = ["userId,movieId,rating,timestamp"]
    for user in range(1, 9):
        cluster = [1, 3] if user % 2 else [2, 4]
        for n, movie in enumerate(cluster):
            rows.append(f"{user},{movie},{4 + (n % 2) * 0.5},{1_000_000 + user * 10 + n}")
    (folder / "ratings.csv").write_text("\n".join(rows) + "\n")
    return folder


async def test_import_is_idempotent_and_fills_the_catalog(
    settings_without_projectors: Services, db: asyncpg.Connection, tmp_path: Path
) -> None:
    services = settings_without_projectors
    folder = write_movielens(tmp_path / "ml")
    seen: list[int] = []
    first = await import_movielens(services.pool, services.committer, folder, seen.append)
    again = await import_movielens(services.pool, services.committer, folder, seen.append)
    assert first == {"movies": 4, "accepted": 16, "duplicate": 0}
    assert again == {"movies": 4, "accepted": 0, "duplicate": 16}
    assert sum(seen) == 32
    assert await db.fetchval("SELECT count(*) FROM interaction_events") == 16
    heat = await db.fetchrow("SELECT title, genres, year FROM movies WHERE movie_id = '2'")
    assert dict(heat) == {
        "title": "Heat, The Movie (1995)",
        "genres": ["Action", "Crime"],
        "year": 1995,
    }
    assert await db.fetchval("SELECT genres FROM movies WHERE movie_id = '3'") == []
    versions = await db.fetch(
        "SELECT originator_version, occurred_at FROM interaction_events "
        "WHERE originator_id = '3' ORDER BY originator_version"
    )
    assert [r["originator_version"] for r in versions] == [1, 2]
    assert versions[0]["occurred_at"] < versions[1]["occurred_at"]


async def test_training_from_the_store_gives_a_loadable_model(
    settings_without_projectors: Services, tmp_path: Path
) -> None:
    services = settings_without_projectors
    folder = write_movielens(tmp_path / "ml")
    await import_movielens(services.pool, services.committer, folder, lambda _: None)
    interactions, position = await read_interactions(services.pool, lambda _: None)
    assert len(interactions) == 16 and position == 16
    model = train(interactions, data_position=position)
    path = save_model(model, tmp_path / "model.npz")
    loaded = load_model(path)
    assert loaded.metadata["data_position"] == 16
    assert set(loaded.item_ids) <= {"1", "2", "3", "4"}


async def test_catalog_put_needs_admin_and_validates(
    services: Services, db: asyncpg.Connection, admin_client: httpx.AsyncClient
) -> None:
    body = {"title": "Heat", "genres": ["Action", "Crime"], "year": 1995}
    http = admin_client
    assert (await http.put("/api/v1/movies/m9", json=body)).status_code == 401
    stored = await http.put("/api/v1/movies/m9", json=body, headers=ADMIN)
    assert stored.status_code == 200 and stored.json()["movie_id"] == "m9"
    bad = await http.put("/api/v1/movies/m9", json={"title": ""}, headers=ADMIN)
    assert bad.status_code == 422
    bad_id = await http.put("/api/v1/movies/bad%20id", json=body, headers=ADMIN)
    assert bad_id.status_code == 422
    row = await db.fetchrow("SELECT title, genres, year FROM movies WHERE movie_id = 'm9'")
    assert dict(row) == {"title": "Heat", "genres": ["Action", "Crime"], "year": 1995}


async def test_genres_of_movies_put_a_moment_ago_reach_the_features_at_once(
    services: Services, admin_client: httpx.AsyncClient
) -> None:
    """The projector folds against a catalog at least as new as the events it folds."""
    http = admin_client
    # The projector has loaded the (empty) catalog already.
    assert (
        await http.post(
            "/api/v1/events/watch", json={"user_id": "early", "movie_id": "x", "progress": 1}
        )
    ).status_code == 202
    await features_at(http, "early", 1)
    for movie in ("c1", "c2"):
        put = await http.put(
            f"/api/v1/movies/{movie}", json={"title": movie, "genres": ["Comedy"]}, headers=ADMIN
        )
        assert put.status_code == 200
    watch = {"user_id": "newcomer", "movie_id": "c1", "progress": 0.95}
    assert (await http.post("/api/v1/events/watch", json=watch)).status_code == 202
    rating = {"user_id": "newcomer", "movie_id": "c2", "rating": 4.5}
    assert (await http.post("/api/v1/events/rating", json=rating)).status_code == 202
    document = await features_at(http, "newcomer", 2, within=3)
    assert [g["genre"] for g in document["top_genres"]] == ["Comedy"]
    # A refresh folds the whole stream again, against the catalog as it is now.
    await http.put("/api/v1/movies/x", json={"title": "x", "genres": ["Drama"]}, headers=ADMIN)
    refreshed = (await http.post("/api/v1/features/early/refresh")).json()
    assert [g["genre"] for g in refreshed["top_genres"]] == ["Drama"]
