"""Redis back after an outage (restarted from its snapshot, or resumed with old memory)
never serves a feature document older than PostgreSQL's; health says degraded until the
cache is trusted again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import asyncpg
import httpx
import pytest

from cinemate.app import Services, build_app, open_services
from cinemate.settings import Settings
from projections.user_features import stored_document
from tests.redis_helpers import PrivateRedis

USER = "viewer"


@pytest.fixture
async def cached_services(
    settings: Settings, private_redis: PrivateRedis
) -> AsyncIterator[Services]:
    assert settings.database_url
    async with AsyncExitStack() as stack:
        yield await open_services(settings, settings.database_url, private_redis.url, stack)


@pytest.fixture
async def http(cached_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(cached_services))
    async with httpx.AsyncClient(transport=transport, base_url="http://cinemate") as client:
        yield client


async def post_ratings(http: httpx.AsyncClient, first: int, last: int) -> None:
    for i in range(first, last + 1):
        answer = await http.post(
            "/api/v1/events/rating", json={"user_id": USER, "movie_id": f"m{i}", "rating": 4}
        )
        assert answer.status_code == 202 and answer.json()["stream_version"] == i


async def stored_version(db: asyncpg.Connection, within: float, at_least: int) -> int:
    deadline = time.monotonic() + within
    while True:
        version = await db.fetchval(
            "SELECT stream_version FROM user_features WHERE user_id = $1", USER
        )
        if version is not None and version >= at_least:
            return int(version)
        assert time.monotonic() < deadline, f"user_features not at {at_least}: {version}"
        await asyncio.sleep(0.02)


async def cached_in_redis(server: PrivateRedis, within: float, version: int) -> None:
    """Until the projector's copy of the document is in Redis (whatever its format)."""
    deadline = time.monotonic() + within
    while True:
        with server.client() as conn:
            raw = conn.get(f"features:{USER}")
        if raw is not None and f'"stream_version":{version},'.encode() in raw:
            return
        assert time.monotonic() < deadline, f"no cached document at v{version}: {raw!r}"
        await asyncio.sleep(0.02)


async def versions_read(http: httpx.AsyncClient, seconds: float) -> list[int]:
    """Every version GET features answers for a while, from the first moment on."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        answer = await http.get(f"/api/v1/features/{USER}")
        assert answer.status_code == 200, answer.text
        seen.append(answer.json()["stream_version"])
    return seen


async def redis_health(http: httpx.AsyncClient) -> str:
    status: str = (await http.get("/api/v1/health")).json()["components"]["redis"]["status"]
    return status


async def test_redis_restarted_from_its_snapshot_serves_nothing_older(
    http: httpx.AsyncClient, db: asyncpg.Connection, private_redis: PrivateRedis
) -> None:
    await post_ratings(http, 1, 3)
    await cached_in_redis(private_redis, 10, 3)
    await asyncio.to_thread(private_redis.shutdown_save)
    await post_ratings(http, 4, 8)
    assert await stored_version(db, 10, 8) == 8
    assert (await http.get(f"/api/v1/features/{USER}")).json()["stream_version"] == 8
    assert await redis_health(http) == "degraded"

    await asyncio.to_thread(private_redis.start)  # with v3 from the snapshot
    with private_redis.client() as conn:
        assert b'"stream_version":3,' in (conn.get(f"features:{USER}") or b"")
    seen = await versions_read(http, 1.5)
    assert set(seen) == {8}, f"served {sorted(set(seen))} after the restart"
    await post_ratings(http, 9, 9)
    await stored_version(db, 10, 9)
    deadline = time.monotonic() + 10
    while (await http.get(f"/api/v1/features/{USER}")).json()["stream_version"] != 9:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert await redis_health(http) == "ok"


async def test_redis_resumed_with_old_memory_serves_nothing_older(
    http: httpx.AsyncClient, db: asyncpg.Connection, private_redis: PrivateRedis
) -> None:
    await post_ratings(http, 1, 3)
    await cached_in_redis(private_redis, 10, 3)
    private_redis.freeze()
    try:
        await post_ratings(http, 4, 4)
        await stored_version(db, 10, 4)
        await asyncio.sleep(1.5)  # the projector's write of v4 times out, and waits in Redis
        await post_ratings(http, 5, 8)
        assert await stored_version(db, 10, 8) == 8
        await asyncio.sleep(1.5)
        assert (await http.get(f"/api/v1/features/{USER}")).json()["stream_version"] == 8
    finally:
        private_redis.thaw()
    seen = await versions_read(http, 1.5)
    assert set(seen) == {8}, f"served {sorted(set(seen))} after the resume"


async def test_health_says_degraded_while_the_cache_is_not_trusted(
    http: httpx.AsyncClient, cached_services: Services, private_redis: PrivateRedis
) -> None:
    await post_ratings(http, 1, 1)
    await cached_in_redis(private_redis, 10, 1)
    assert await redis_health(http) == "ok"
    with private_redis.client() as conn:
        # Redis answers, but refuses writes (out of memory): no new epoch can be installed.
        conn.config_set("maxmemory-policy", "noeviction")
        conn.config_set("maxmemory", "1")
        conn.script_flush()  # what a restart does to this process's scripts
    assert (await http.get(f"/api/v1/features/{USER}")).json()["stream_version"] == 1
    assert cached_services.features_cache.suspect
    health = (await http.get("/api/v1/health")).json()["components"]["redis"]
    assert health["status"] == "degraded" and "restarted" in health["detail"]["error"]
    with private_redis.client() as conn:
        conn.config_set("maxmemory", "0")
    deadline = time.monotonic() + 10
    while await redis_health(http) != "ok":
        assert time.monotonic() < deadline, "the cache was never trusted again"
        await asyncio.sleep(0.05)


async def test_the_table_gives_the_document_redis_holds(
    cached_services: Services, http: httpx.AsyncClient, private_redis: PrivateRedis
) -> None:
    """A read that misses Redis builds the document from the state the row holds
    (the row keeps no document of its own): the same bytes the projector cached."""
    await post_ratings(http, 1, 4)
    await cached_in_redis(private_redis, 10, 4)
    cached = await cached_services.features_cache.read(USER)
    assert cached is not None and cached["stream_version"] == 4
    assert await stored_document(cached_services.pool, USER) == cached
    assert await stored_document(cached_services.pool, "nobody") is None
    with private_redis.client() as conn:
        conn.delete(f"features:{USER}")
    answer = await http.get(f"/api/v1/features/{USER}")
    assert answer.status_code == 200 and answer.json() == cached
