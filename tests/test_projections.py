"""Projections on the real PostgreSQL and Redis: incremental folds equal a full rebuild."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import asyncpg
import httpx
import pytest

from cinemate.app import Services, build_app, open_services
from cinemate.embedded import EmbeddedRedis
from cinemate.settings import Settings
from projections import rebuild as rebuild_module
from projections.rebuild import rebuild, rebuild_all
from tests.projection_helpers import (
    PROJECTIONS,
    add_catalog,
    append_random,
    features_at,
    random_command,
    snapshot,
    wait_caught_up,
)

ADMIN = {"Authorization": "Bearer s3cret"}


async def test_incremental_read_models_equal_a_full_rebuild(
    services: Services, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_catalog(db)
    options_sql = "SELECT reloptions FROM pg_class WHERE relname = 'user_features'"
    storage = await db.fetchval(options_sql)
    assert set(storage) == {"fillfactor=50", "toast_tuple_target=8160"}  # migration 0011
    appended = await append_random(services.committer, total=4000, users=300)
    await wait_caught_up(services.pool)
    incremental = await snapshot(db)
    assert len(incremental["audit"]) == appended
    assert 250 < len(incremental["user_features"]) <= 300
    for name in PROJECTIONS:
        await rebuild(services.pool, services.projections[name])
    rebuilt = await snapshot(db)
    for name in incremental:
        assert rebuilt[name] == incremental[name], name
    # All at once, in one pass over the store: the same rows again.
    replayed = await rebuild_all(services.pool, [services.projections[n] for n in PROJECTIONS])
    assert replayed >= appended
    assert await db.fetchval(options_sql) == storage  # the swapped-in table keeps them
    together = await snapshot(db)
    for name in incremental:
        assert together[name] == incremental[name], name
    # Small batches and a flush every few of them: states and items are written
    # mid-replay, then read back (a state with only the items its batches touched) and
    # replaced: the same rows again.
    monkeypatch.setattr(rebuild_module, "FLUSH_EVERY_EVENTS", 1500)
    flushed = await rebuild_all(
        services.pool, [services.projections[n] for n in PROJECTIONS], batch_size=100
    )
    assert flushed >= appended
    in_steps = await snapshot(db)
    for name in incremental:
        assert in_steps[name] == incremental[name], name
    interactions = await db.fetchval("SELECT sum(interactions) FROM item_stats")
    with_movie = await db.fetchval(
        "SELECT count(*) FROM interaction_events WHERE payload->>'movie_id' IS NOT NULL "
        "OR payload->>'clicked_movie_id' IS NOT NULL"
    )
    assert interactions == with_movie


async def test_features_are_served_and_refreshed(
    client: httpx.AsyncClient, services: Services, db: asyncpg.Connection
) -> None:
    await add_catalog(db, movies=5)
    assert (await client.get("/api/v1/features/fresh")).status_code == 404
    for body in ({"movie_id": "m1", "progress": 0.95}, {"movie_id": "m2", "progress": 0.5}):
        answer = await client.post("/api/v1/events/watch", json={"user_id": "fresh", **body})
        assert answer.status_code == 202
    doc = await features_at(client, "fresh", 2)
    assert doc["stream_version"] == 2
    assert doc["watch"]["completed_count"] == 1
    assert doc["recent_movies"] == ["m2", "m1"]
    refreshed = await client.post("/api/v1/features/fresh/refresh")
    assert refreshed.status_code == 200
    assert {k: v for k, v in refreshed.json().items() if k != "updated_at"} == {
        k: v for k, v in doc.items() if k != "updated_at"
    }
    assert (await client.post("/api/v1/features/ghost/refresh")).status_code == 404
    assert (await client.get("/api/v1/features/bad%20id")).status_code == 422


async def test_popular_is_trending_and_filters_by_genre(
    client: httpx.AsyncClient, services: Services, db: asyncpg.Connection
) -> None:
    await db.execute(
        "INSERT INTO movies (movie_id, title, genres) VALUES "
        "('hit', 'Hit', '{Comedy}'), ('cult', 'Cult', '{Horror}'), ('flop', 'Flop', '{Comedy}')"
    )
    events: list[dict[str, object]] = [
        {"type": "favorite", "user_id": f"p{i}", "movie_id": "hit", "action": "add"}
        for i in range(5)
    ]
    events += [
        {"type": "rating", "user_id": "p1", "movie_id": "cult", "rating": 5},
        {"type": "rating", "user_id": "p2", "movie_id": "flop", "rating": 1},
    ]
    assert (await client.post("/api/v1/events/batch", json={"events": events})).status_code == 202
    await wait_caught_up(services.pool)
    ranked = (await client.get("/api/v1/popular?limit=3")).json()["items"]
    assert [i["movie_id"] for i in ranked] == ["hit", "cult", "flop"]
    assert ranked[0]["title"] == "Hit" and ranked[0]["genres"] == ["Comedy"]
    comedy = (await client.get("/api/v1/popular?genre=Comedy")).json()["items"]
    assert [i["movie_id"] for i in comedy] == ["hit", "flop"]
    assert (await client.get("/api/v1/popular?limit=0")).status_code == 422


async def test_admin_projection_endpoints_need_the_token(
    services: Services, db: asyncpg.Connection, admin_client: httpx.AsyncClient
) -> None:
    http = admin_client
    assert (await http.get("/api/v1/admin/projections")).status_code == 401
    wrong = await http.get("/api/v1/admin/projections", headers={"Authorization": "Bearer x"})
    assert wrong.status_code == 403
    listing = await http.get("/api/v1/admin/projections", headers=ADMIN)
    assert listing.status_code == 200
    names = [p["name"] for p in listing.json()["projections"]]
    assert names == PROJECTIONS
    assert set(listing.json()["projections"][0]) == {
        "name",
        "position",
        "lag_events",
        "lag_seconds",
        "state",
    }
    unknown = await http.post("/api/v1/admin/projections/nope/rebuild", headers=ADMIN)
    assert unknown.status_code == 404
    open_admin = httpx.ASGITransport(app=build_app(services))  # ADMIN_TOKEN unset
    async with httpx.AsyncClient(transport=open_admin, base_url="http://c") as http:
        refused = await http.get("/api/v1/admin/projections", headers=ADMIN)
        assert refused.status_code == 403


async def test_rebuild_while_reads_and_writes_go_on_answers_no_errors(
    services: Services, db: asyncpg.Connection
) -> None:
    await add_catalog(db)
    await append_random(services.committer, total=3000, users=200, seed=3)
    secured = dataclasses.replace(
        services, settings=dataclasses.replace(services.settings, admin_token="s3cret")
    )
    transport = httpx.ASGITransport(app=build_app(secured))
    failures: list[str] = []
    done = asyncio.Event()
    rng = random.Random(5)

    async def traffic(http: httpx.AsyncClient) -> int:
        calls = 0
        while not done.is_set():
            command = random_command(rng, users=200)
            body = command.model_dump(mode="json", exclude_none=True)
            answers = [
                await http.post("/api/v1/events/batch", json={"events": [body]}),
                await http.get(f"/api/v1/features/user{rng.randrange(200)}"),
                await http.get("/api/v1/popular"),
                await http.get(f"/api/v1/users/user{rng.randrange(200)}/events?limit=5"),
            ]
            failures.extend(
                f"{a.request.url} {a.status_code} {a.text[:200]}"
                for a in answers
                if a.status_code >= 400 and a.status_code != 404
            )
            calls += len(answers)
        return calls

    async with httpx.AsyncClient(transport=transport, base_url="http://c") as http:
        workers = [asyncio.create_task(traffic(http)) for _ in range(4)]
        await asyncio.sleep(0.3)
        for name in ("user_features", "item_stats"):
            started = await http.post(f"/api/v1/admin/projections/{name}/rebuild", headers=ADMIN)
            assert started.status_code == 202, started.text
            assert started.json() == {"name": name, "state": "rebuilding"}
        await asyncio.gather(*secured.rebuilds.values())
        await asyncio.sleep(0.3)
        done.set()
        calls = sum(await asyncio.gather(*workers))
    assert calls > 100
    assert failures == []
    await wait_caught_up(services.pool)
    live = await snapshot(db)
    await rebuild(services.pool, services.projections["user_features"])
    assert (await snapshot(db))["user_features"] == live["user_features"]


async def test_redis_down_serves_features_from_postgres_and_says_degraded(
    settings: Settings, tmp_path: Path
) -> None:
    redis_server = EmbeddedRedis(tmp_path)
    redis_url = redis_server.start()
    try:
        async with AsyncExitStack() as stack:
            assert settings.database_url is not None
            services = await open_services(settings, settings.database_url, redis_url, stack)
            transport = httpx.ASGITransport(app=build_app(services))
            async with httpx.AsyncClient(transport=transport, base_url="http://c") as http:
                await http.post(
                    "/api/v1/events/rating", json={"user_id": "r1", "movie_id": "m1", "rating": 4}
                )
                await features_at(http, "r1", 1)
                for _ in range(100):  # the cache is written just after the commit
                    if await services.redis.get("features:r1") is not None:
                        break
                    await asyncio.sleep(0.02)
                assert await services.redis.get("features:r1") is not None
                assert (await http.get("/api/v1/health")).json()["status"] == "ok"

                redis_server.stop()
                answer = await http.get("/api/v1/features/r1")
                assert answer.status_code == 200 and answer.json()["ratings"]["mean"] == 4.0
                await http.post(
                    "/api/v1/events/rating", json={"user_id": "r1", "movie_id": "m2", "rating": 2}
                )
                await wait_caught_up(services.pool)
                answer = await http.get("/api/v1/features/r1")
                assert answer.json()["ratings"] == {"count": 2, "mean": 3.0}
                health = (await http.get("/api/v1/health")).json()
                assert health["status"] == "degraded"
                assert health["components"]["redis"]["status"] == "degraded"
                assert health["components"]["postgres"]["status"] == "ok"
    finally:
        redis_server.stop()


async def _states(http: httpx.AsyncClient) -> dict[str, str]:
    listing = (await http.get("/api/v1/admin/projections", headers=ADMIN)).json()
    return {p["name"]: p["state"] for p in listing["projections"]}


async def test_the_projections_listing_and_the_rebuild_refusal_agree(
    services: Services, db: asyncpg.Connection, admin_client: httpx.AsyncClient
) -> None:
    """`rebuilding` in the listing if and only if POST .../rebuild answers 409."""
    http = admin_client
    await add_catalog(db)
    await append_random(services.committer, total=300, users=20, seed=8)
    await wait_caught_up(services.pool)
    url = "/api/v1/admin/projections/user_features/rebuild"

    # Answered 202: the listing says so at once.
    started = await http.post(url, headers=ADMIN)
    assert started.status_code == 202, started.text
    assert (await _states(http))["user_features"] == "rebuilding"
    assert (await http.post(url, headers=ADMIN)).status_code == 409
    await asyncio.gather(*services.rebuilds.values())
    assert (await _states(http))["user_features"] != "rebuilding"
    again = await http.post(url, headers=ADMIN)
    assert again.status_code == 202, again.text
    await asyncio.gather(*services.rebuilds.values())

    # A rebuild running in another process (`cinemate replay`): its shadow beats.
    await db.execute(
        "INSERT INTO projection_checkpoints (name, state) VALUES ('item_stats__rebuild', 'rebuilding')"
    )
    await db.execute(
        "UPDATE projection_checkpoints SET state = 'rebuilding' WHERE name = 'item_stats'"
    )
    assert (await _states(http))["item_stats"] == "rebuilding"
    assert (
        await http.post("/api/v1/admin/projections/item_stats/rebuild", headers=ADMIN)
    ).status_code == 409

    # One that died without cleaning up: nothing beats, so it is not rebuilding any more.
    await db.execute(
        "UPDATE projection_checkpoints SET heartbeat_at = now() - interval '1 minute'"
        " WHERE name = 'item_stats__rebuild'"
    )
    assert (await _states(http))["item_stats"] != "rebuilding"
    restarted = await http.post("/api/v1/admin/projections/item_stats/rebuild", headers=ADMIN)
    assert restarted.status_code == 202, restarted.text
    await asyncio.gather(*services.rebuilds.values())
    assert (await _states(http))["item_stats"] == "running"


async def test_the_replay_command_rebuilds_every_read_model_to_the_same_rows(
    services: Services, settings: Settings, db: asyncpg.Connection
) -> None:
    """`cinemate replay` as an operator runs it, beside a running service: its own
    process (which loads neither the web app nor the model), every read model rebuilt
    in one pass and swapped in, the rows the same as the incremental projections'."""
    await add_catalog(db)
    appended = await append_random(services.committer, total=1500, users=120)
    await wait_caught_up(services.pool)
    incremental = await snapshot(db)
    assert settings.database_url and settings.redis_url
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "CINEMATE_DATA_DIR": str(settings.data_dir),
    }

    async def replay(*names: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cinemate.cli",
            "replay",
            *names,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode()

    code, out = await replay()
    assert code == 0, out
    assert f"{', '.join(PROJECTIONS)}: {appended} store events in" in out
    assert "swapped in" in out
    replayed = await snapshot(db)
    for name in incremental:
        assert replayed[name] == incremental[name], name
    code, out = await replay("user_features", "nope")
    assert code != 0
    assert "unknown projection(s) nope; known: user_features, item_stats" in out
