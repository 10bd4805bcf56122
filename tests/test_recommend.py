"""Serving recommendations from the live read model, on real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import shutil
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from cinemate.app import Services, build_app, open_services
from cinemate.settings import Settings
from model.artifacts import file_sha256, save_model
from model.interactions import Interaction
from model.recommender import train
from query_side import user_vectors
from tests.projection_helpers import features_at, wait_caught_up

ADMIN = {"Authorization": "Bearer s3cret"}
COMEDIES = [f"a{i}" for i in range(12)]
HORRORS = [f"b{i}" for i in range(12)]


def planted_model(path: Path) -> Path:
    """Two tastes that never mix: comedy fans and horror fans."""
    rng = random.Random(3)
    records = []
    for user in range(80):
        liked = COMEDIES if user % 2 else HORRORS
        for n, movie in enumerate(rng.sample(liked, 8)):
            records.append(Interaction(f"t{user}", movie, "rating", 4.5, 1_000.0 * user + n))
    return save_model(train(records), path)


@pytest.fixture
async def http(services: Services, db: asyncpg.Connection, tmp_path: Path) -> Any:
    await db.executemany(
        "INSERT INTO movies (movie_id, title, genres) VALUES ($1, $2, $3)",
        [(m, f"Comedy {m}", ["Comedy"]) for m in COMEDIES]
        + [(m, f"Horror {m}", ["Horror"]) for m in HORRORS],
    )
    await services.models.load(planted_model(tmp_path / "planted.npz"))
    secured = dataclasses.replace(
        services, settings=dataclasses.replace(services.settings, admin_token="s3cret")
    )
    transport = httpx.ASGITransport(app=build_app(secured))
    async with httpx.AsyncClient(transport=transport, base_url="http://c") as client:
        yield client


async def rate(http: httpx.AsyncClient, user: str, movie: str, version: int) -> None:
    answer = await http.post(
        "/api/v1/events/rating", json={"user_id": user, "movie_id": movie, "rating": 5}
    )
    assert answer.status_code == 202
    await features_at(http, user, version)


async def recommend(http: httpx.AsyncClient, user: str, query: str = "") -> dict[str, Any]:
    answer = await http.get(f"/api/v1/recommend/{user}?limit=5{query}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_recommendations_follow_the_cluster_and_exclude_what_was_rated(
    http: httpx.AsyncClient,
) -> None:
    await rate(http, "fan", "a0", 1)
    await rate(http, "fan", "a1", 2)
    body = await recommend(http, "fan")
    assert body["strategy"] == "personalized"
    movies = [item["movie_id"] for item in body["items"]]
    assert len(movies) == 5 and all(m in COMEDIES for m in movies)
    assert not {"a0", "a1"} & set(movies)
    assert body["items"][0]["genres"] == ["Comedy"] and body["items"][0]["title"]
    filtered = await recommend(http, "fan", "&exclude=a2,a3&genre=Comedy")
    assert not {"a0", "a1", "a2", "a3"} & {i["movie_id"] for i in filtered["items"]}


async def test_one_new_event_changes_the_next_answer_without_retraining(
    http: httpx.AsyncClient, services: Services
) -> None:
    version = services.models.current.model.metadata["version"]  # type: ignore[union-attr]
    await rate(http, "switcher", "a0", 1)
    before = await recommend(http, "switcher")
    for n, movie in enumerate(["b0", "b1", "b2"], start=2):
        await rate(http, "switcher", movie, n)
    after = await recommend(http, "switcher")
    assert after["model_version"] == before["model_version"] == version
    assert [i["movie_id"] for i in after["items"]] != [i["movie_id"] for i in before["items"]]
    assert after["items"][0]["movie_id"] in HORRORS


async def test_cold_start_leans_toward_searched_genres(
    http: httpx.AsyncClient, services: Services
) -> None:
    events = [
        {"type": "favorite", "user_id": f"crowd{i}", "movie_id": m, "action": "add"}
        for i, m in enumerate(["a5", "a5", "a5", "b5", "b5"])
    ]
    assert (await http.post("/api/v1/events/batch", json={"events": events})).status_code == 202
    await wait_caught_up(services.pool)
    unknown = await recommend(http, "stranger")
    assert unknown["strategy"] == "cold_start"
    assert unknown["items"][0]["movie_id"] == "a5"
    search = await http.post("/api/v1/events/search", json={"user_id": "scared", "query": "horror"})
    assert search.status_code == 202
    await features_at(http, "scared", 1)
    leaning = await recommend(http, "scared")
    assert leaning["strategy"] == "cold_start"
    assert leaning["items"][0]["movie_id"] == "b5"


async def test_feedback_is_credited_to_the_model_version_that_was_shown(
    http: httpx.AsyncClient, services: Services, db: asyncpg.Connection
) -> None:
    await rate(http, "clicker", "b0", 1)
    shown = await recommend(http, "clicker")
    clicked = shown["items"][0]["movie_id"]
    feedback = {
        "user_id": "clicker",
        "movie_id": clicked,
        "action": "click",
        "rank": 1,
        "recommendation_id": shown["recommendation_id"],
    }
    assert (await http.post("/api/v1/feedback", json=feedback)).status_code == 202
    await features_at(http, "clicker", 2)
    row = None
    for _ in range(100):
        row = await db.fetchrow("SELECT model_version, strategy, shown FROM model_feedback")
        if row is not None:
            break
        await asyncio.sleep(0.02)
    assert row is not None
    assert dict(row) == {
        "model_version": shown["model_version"],
        "strategy": "personalized",
        "shown": True,
    }


async def test_similar_and_model_info(http: httpx.AsyncClient) -> None:
    similar = (await http.get("/api/v1/movies/b3/similar?limit=4")).json()
    assert [i["movie_id"][0] for i in similar["items"]] == ["b"] * 4
    assert (await http.get("/api/v1/movies/zz/similar")).status_code == 404
    info = (await http.get("/model/info")).json()
    assert info["format"] == "npz" and info["items"] == 24 and len(info["sha256"]) == 64


async def test_a_broken_model_is_refused_and_the_old_one_keeps_serving(
    settings: Settings, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    served = planted_model(models / "served.npz")
    good = planted_model(models / "good.pkl")
    corrupt = models / "corrupt.npz"
    tampered = models / "tampered.pkl"
    async with AsyncExitStack() as stack:
        http = await client_of(own_settings(settings, tmp_path), stack)
        before = (await http.get("/model/info")).json()
        assert before["sha256"] == file_sha256(served)
        assert (await http.post("/model/reload", json={"path": "good.pkl"})).status_code == 401

        corrupt.write_bytes(b"this is not a model")
        shutil.copy(good, tampered)
        shutil.copy(good.with_name(good.name + ".sha256"), models / "tampered.pkl.sha256")
        tampered.write_bytes(tampered.read_bytes() + b"\0")
        # good.pkl too: nobody recorded or pinned its digest.
        for path in (corrupt, tampered, models / "missing.npz", good):
            refused = await http.post("/model/reload", json={"path": str(path)}, headers=ADMIN)
            assert refused.status_code in (404, 422), refused.text
            assert "still serving" in refused.json()["detail"]
            assert refused.json()["detail"].count(str(path)) == 1, refused.json()["detail"]
            assert (await http.get("/model/info")).json()["sha256"] == before["sha256"]
            assert (await recommend(http, "anyone"))["items"]

        # No body is the default model; a body of whitespace alone is no JSON.
        blank = await http.post("/model/reload", content=b"\r\n", headers=ADMIN)
        assert blank.status_code == 400 and blank.json()["error"] == "malformed_json"
        # A path no artifact can have is refused as the schema's pattern says.
        for wrong in ("FALSE", str(models / "model.txt"), str(models) + "/.npz"):
            invalid = await http.post("/model/reload", json={"path": wrong}, headers=ADMIN)
            assert invalid.status_code == 422 and invalid.json()["error"] == "validation_error"

    pinned = own_settings(settings, tmp_path, model_sha256=frozenset({file_sha256(good)}))
    async with AsyncExitStack() as stack:
        http = await client_of(pinned, stack)
        loaded = await http.post("/model/reload", json={"path": str(good)}, headers=ADMIN)
        assert loaded.status_code == 200 and loaded.json()["format"] == "pkl"


def own_settings(settings: Settings, data_dir: Path, **changes: Any) -> Settings:
    """A service of the test's own: its data dir (so its models dir), the admin token."""
    return dataclasses.replace(settings, data_dir=data_dir, admin_token="s3cret", **changes)


async def client_of(settings: Settings, stack: AsyncExitStack) -> httpx.AsyncClient:
    assert settings.database_url and settings.redis_url
    services = await open_services(settings, settings.database_url, settings.redis_url, stack)
    transport = httpx.ASGITransport(app=build_app(services))
    return await stack.enter_async_context(
        httpx.AsyncClient(transport=transport, base_url="http://c")
    )


async def test_similar_without_a_trained_model_answers_from_the_catalog(
    client: httpx.AsyncClient, services: Services, db: asyncpg.Connection
) -> None:
    """No model: 404 for a movie nobody knows; for a known one, movies sharing its genres,
    the trending ones first, and the `strategy` says so."""
    assert services.models.current is None
    await db.executemany(
        "INSERT INTO movies (movie_id, title, genres) VALUES ($1, $2, $3)",
        [
            ("rom-com", "Rom-com", ["Comedy", "Romance"]),
            ("comedy1", "Comedy 1", ["Comedy"]),
            ("comedy2", "Comedy 2", ["Comedy"]),
            ("romcom2", "Rom-com 2", ["Romance", "Comedy"]),
            ("horror", "Horror", ["Horror"]),
        ],
    )
    # comedy2 trends: three viewers watched it.
    for user in ("v1", "v2", "v3"):
        answer = await client.post(
            "/api/v1/events/watch", json={"user_id": user, "movie_id": "comedy2", "progress": 1}
        )
        assert answer.status_code == 202
        await features_at(client, user, 1)
    await wait_caught_up(services.pool)

    unknown = await client.get("/api/v1/movies/nobody-knows/similar")
    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["error"] == "not_found"

    similar = await client.get("/api/v1/movies/rom-com/similar?limit=10")
    assert similar.status_code == 200, similar.text
    body = similar.json()
    assert body["strategy"] == "genres_by_trend"
    assert body["model_version"] == "popularity"
    # Both genres shared first, then one genre shared with the trending one ahead.
    assert [i["movie_id"] for i in body["items"]] == ["romcom2", "comedy2", "comedy1"]
    assert body["items"][0]["title"] == "Rom-com 2"
    # A movie known only from interactions (no catalog entry) is known too.
    await client.post(
        "/api/v1/events/watch", json={"user_id": "v9", "movie_id": "uncatalogued", "progress": 1}
    )
    await features_at(client, "v9", 1)
    await wait_caught_up(services.pool)
    loose = await client.get("/api/v1/movies/uncatalogued/similar")
    assert loose.status_code == 200, loose.text
    assert loose.json()["items"][0]["movie_id"] == "comedy2"  # trending, genres unknown


async def test_similar_with_a_model_says_its_strategy(http: httpx.AsyncClient) -> None:
    similar = (await http.get("/api/v1/movies/b3/similar?limit=4")).json()
    assert similar["strategy"] == "item_to_item"


async def test_exclude_takes_up_to_100_movie_ids_as_its_schema_says(
    http: httpx.AsyncClient,
) -> None:
    hundred = ",".join(f"m{i}" for i in range(100))
    assert (await http.get(f"/api/v1/recommend/fan?exclude={hundred}")).status_code == 200
    for wrong in (hundred + ",m100", "a1,", "a1,,a2", "a 1", "a1;a2"):
        answer = await http.get("/api/v1/recommend/fan", params={"exclude": wrong})
        assert answer.status_code == 422, wrong
        assert answer.json()["detail"][0]["loc"] == ["query", "exclude"]


async def test_a_running_service_picks_up_a_newer_artifact_by_itself(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SPEC: `cinemate train` (or demo) writes into the models dir; a running service
    serves it within 10 s, logged, without a restart or an admin reload."""
    own = dataclasses.replace(settings, data_dir=tmp_path / "data")
    models = own.data_dir / "models"
    assert own.database_url and own.redis_url
    caplog.set_level(logging.INFO, logger="cinemate.model")
    async with AsyncExitStack() as stack:
        services = await open_services(own, own.database_url, own.redis_url, stack)
        assert services.models.current is None  # nothing trained yet: popularity

        async def served_within(seconds: float, path: Path) -> float:
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                current = services.models.current
                if current is not None and current.path == path:
                    return time.monotonic() - started
                await asyncio.sleep(0.1)
            raise AssertionError(f"{path} not served within {seconds} s")

        first = planted_model(models / "first.npz")
        took = await served_within(10, first)
        assert "picked up a newer model" in caplog.text
        print(f"picked up in {took:.1f} s")

        # A newer artifact that cannot serve is refused and logged; the first one stays.
        broken = models / "second.npz"
        broken.write_bytes(b"half a model")
        deadline = time.monotonic() + 10
        while "newer model artifact refused" not in caplog.text:
            assert time.monotonic() < deadline, caplog.text
            await asyncio.sleep(0.1)
        assert services.models.current is not None and services.models.current.path == first

        # Fixed (trained again under that name): served.
        await asyncio.sleep(0.01)
        fixed = planted_model(broken)
        await served_within(10, fixed)

        # An admin's explicit choice of an older one stays until a newer one appears.
        await services.models.load(first)
        await asyncio.sleep(4)
        assert services.models.current.path == first


async def test_the_reload_body_is_checked_by_its_model(http: httpx.AsyncClient) -> None:
    before = (await http.get("/model/info")).json()
    malformed = await http.post("/model/reload", content=b"{path", headers=ADMIN)
    assert malformed.status_code == 400 and malformed.json()["error"] == "malformed_json"
    for body, loc in (
        ({"path": 7}, ["body", "path"]),
        ({"path": "x.npz", "force": True}, ["body", "force"]),
        ({"path": "model.txt"}, ["body", "path"]),  # not an artifact's name
        (["x.npz"], ["body"]),
    ):
        refused = await http.post("/model/reload", json=body, headers=ADMIN)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"] == "validation_error"
        assert [e["loc"] for e in refused.json()["detail"]] == [loc]
    assert (await http.get("/model/info")).json()["sha256"] == before["sha256"]
    for raw in (b"", b'{"path": null}', b"{}"):  # the default: none in the data dir
        default = await http.post("/model/reload", content=raw, headers=ADMIN)
        assert default.status_code == 404, default.text
        assert default.json()["detail"].startswith("no model artifact in"), default.text


async def test_a_stream_recreated_after_a_forget_is_never_served_the_old_ranking(
    http: httpx.AsyncClient,
) -> None:
    await rate(http, "returning", "a0", 1)
    before = await recommend(http, "returning")
    assert before["strategy"] == "personalized"
    assert all(item["movie_id"] in COMEDIES for item in before["items"])
    answer = await http.delete("/api/v1/users/returning", headers=ADMIN)
    assert answer.status_code == 200
    await rate(http, "returning", "b0", 1)  # the same user and stream version as before
    after = await recommend(http, "returning")
    movies = [item["movie_id"] for item in after["items"]]
    assert movies and all(m in HORRORS for m in movies), movies


async def test_explain_says_which_history_movies_each_personal_item_comes_from(
    http: httpx.AsyncClient, services: Services
) -> None:
    """?explain=true: `because` on each personalized item, from the viewer's own history,
    the movie adding most first; the answer is otherwise what it is without explain, and
    without explain (or for a cold start) no item has a `because`."""
    for n, movie in enumerate(["a0", "a1", "a2", "b0"], start=1):
        await rate(http, "fan", movie, n)
    plain = await recommend(http, "fan")
    explained = await recommend(http, "fan", "&explain=true")
    assert explained["strategy"] == "personalized"
    assert all("because" not in item for item in plain["items"])
    assert [{k: v for k, v in item.items() if k != "because"} for item in explained["items"]] == (
        plain["items"]
    )
    served = services.models.current
    assert served is not None
    history = {"a0", "a1", "a2", "b0"}
    for item in explained["items"]:
        assert 1 <= len(item["because"]) <= 3 and set(item["because"]) <= history
        if item["movie_id"].startswith("a"):  # a comedy: explained by the comedies first
            assert item["because"][0].startswith("a")
    # The same as the model's own explanation of the same ranking.
    async with services.pool.acquire() as conn:
        folded = orjson.loads(
            await conn.fetchval("SELECT state::text FROM user_features WHERE user_id = 'fan'")
        )
        folded["items"] = {
            r["movie_id"]: orjson.loads(r["signals"])
            for r in await conn.fetch(
                "SELECT movie_id, signals::text FROM user_items WHERE user_id = 'fan'"
            )
        }
    assert set(folded["items"]) == history
    rows, weights = user_vectors.history_rows(served.model, folded)
    indices = [served.model.index_of(i["movie_id"]) or 0 for i in explained["items"]]
    assert [i["because"] for i in explained["items"]] == served.model.because(
        rows, weights, indices
    )
    assert (await recommend(http, "fan", "&explain=false"))["items"] == plain["items"]
    cold = await recommend(http, "nobody-yet", "&explain=true")
    assert cold["strategy"] == "cold_start"
    assert all("because" not in item for item in cold["items"])
    for wrong in ("yes", "", "2"):
        answer = await http.get("/api/v1/recommend/fan", params={"explain": wrong})
        assert answer.status_code == 422, wrong
        assert answer.json()["detail"][0]["loc"] == ["query", "explain"]
