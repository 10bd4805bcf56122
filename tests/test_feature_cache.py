"""The cache protocol (schema.cache) on a real Redis: epochs, late writes, restarts,
tombstones. Several FeatureCache objects on one server stand for several processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from schema.cache import EPOCH_KEY, SPREAD, FeatureCache, cached_value, features_key
from tests.redis_helpers import PrivateRedis


@pytest.fixture
async def redis(private_redis: PrivateRedis) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(private_redis.url, socket_timeout=1.0, socket_connect_timeout=1.0)
    yield client
    await client.aclose()


async def started(redis: aioredis.Redis) -> FeatureCache:
    cache = FeatureCache(redis)
    await cache.start()
    assert cache.suspect is None
    return cache


def doc(user: str, version: int, position: int) -> dict[str, Any]:
    return {"user_id": user, "stream_version": version, "position": position}


async def until_trusted(cache: FeatureCache) -> None:
    deadline = time.monotonic() + 10
    while cache.suspect:
        assert time.monotonic() < deadline, cache.suspect
        await asyncio.sleep(0.01)


async def test_newer_positions_win_within_an_epoch(redis: aioredis.Redis) -> None:
    cache = await started(redis)
    token = cache.token()
    await cache.store(token, {"u": doc("u", 5, 50)})
    await cache.store(token, {"u": doc("u", 4, 40)})  # a slower writer finishing late
    assert await cache.read("u") == doc("u", 5, 50)
    await cache.store(token, {"u": doc("u", 6, 60)})
    assert await cache.read("u") == doc("u", 6, 60)
    assert 0 < await redis.ttl(features_key("u")) <= cache.ttl_seconds
    await cache.close()


async def test_a_document_computed_before_a_new_epoch_is_never_cached_under_it(
    redis: aioredis.Redis,
) -> None:
    writer, other = await started(redis), FeatureCache(redis)
    early = writer.token()
    await other.start()  # another process starts: a new epoch
    await writer.store(early, {"u": doc("u", 3, 30)})
    assert await writer.read("u") is None and await redis.get(features_key("u")) is None
    # The writer goes on under the new epoch (it saw no failure: nothing to distrust).
    assert writer.token() not in (None, early)
    await writer.store(writer.token(), {"u": doc("u", 4, 40)})
    assert await other.read("u") == doc("u", 4, 40)
    await writer.close()
    await other.close()


async def test_values_of_an_old_epoch_are_not_read(redis: aioredis.Redis) -> None:
    cache = await started(redis)
    await cache.store(cache.token(), {"u": doc("u", 3, 30)})
    old_value = await redis.get(features_key("u"))
    assert old_value is not None
    restarted = await started(redis)
    assert await restarted.read("u") is None and await cache.read("u") is None
    # Even a value written by hand with the old epoch's prefix, after the new epoch.
    await redis.set(features_key("u"), old_value)
    assert await restarted.read("u") is None
    await cache.close()
    await restarted.close()


async def test_a_restart_is_noticed_without_any_error_and_a_new_epoch_installed(
    redis: aioredis.Redis, private_redis: PrivateRedis
) -> None:
    cache = await started(redis)
    await cache.store(cache.token(), {"u": doc("u", 3, 30)})
    first_epoch = await redis.get(EPOCH_KEY)
    await asyncio.to_thread(private_redis.shutdown_save)
    await asyncio.to_thread(private_redis.start)  # back with v3 and the old epoch
    assert await redis.get(EPOCH_KEY) == first_epoch  # redis-py reconnected quietly
    assert await cache.read("u") is None  # NOSCRIPT: this process's scripts are gone
    assert cache.suspect and "restarted" in cache.suspect
    await until_trusted(cache)
    assert await redis.get(EPOCH_KEY) != first_epoch
    assert await cache.read("u") is None  # v3 belongs to the old epoch
    await cache.close()


async def test_a_failed_write_makes_the_process_install_a_new_epoch_first(
    redis: aioredis.Redis, private_redis: PrivateRedis
) -> None:
    cache = await started(redis)
    token = cache.token()
    await cache.store(token, {"u": doc("u", 3, 30)})
    private_redis.freeze()
    try:
        await cache.store(token, {"u": doc("u", 4, 40)})  # times out; runs on resume
        assert cache.suspect and cache.token() is None
        await cache.store(cache.token(), {"u": doc("u", 5, 50)})  # not even tried
    finally:
        private_redis.thaw()
    await until_trusted(cache)
    assert cache.token() != token
    assert await cache.read("u") is None  # v4 ran late, under the old epoch
    await cache.close()


async def test_a_tombstone_keeps_the_old_stream_out_and_lets_the_new_one_in(
    redis: aioredis.Redis,
) -> None:
    cache = await started(redis)
    token = cache.token()
    await cache.store(token, {"u": doc("u", 25000, 70000)})
    await cache.erase(token, "u", 70000)
    assert await cache.read("u") is None
    await cache.store(token, {"u": doc("u", 25000, 70000)})  # the old stream, in flight
    assert await cache.read("u") is None
    await cache.store(token, {"u": doc("u", 1, 70001)})  # the new stream
    assert await cache.read("u") == doc("u", 1, 70001)
    await cache.close()


async def test_a_flushed_epoch_makes_writers_start_a_new_one(redis: aioredis.Redis) -> None:
    cache = await started(redis)
    token = cache.token()
    await redis.flushall()
    await cache.store(token, {"u": doc("u", 3, 30)})
    assert await redis.get(features_key("u")) is None
    await until_trusted(cache)
    await cache.store(cache.token(), {"u": doc("u", 4, 40)})
    assert await cache.read("u") == doc("u", 4, 40)
    await cache.close()


def test_a_cached_value_reads_back_as_its_epoch_position_and_document() -> None:
    document = orjson.dumps(doc("u", 3, 30))
    for position in range(40, 40 + SPREAD):
        epoch, at, stored = cached_value("e1", position, document).split(b" ", 2)
        assert (epoch, int(at), orjson.loads(stored)) == (b"e1", position, doc("u", 3, 30))
    assert cached_value("e1", 7, b"") == b"e1 7 "  # a tombstone: nothing after the position
    # Alike documents at consecutive positions take SPREAD lengths (Lua's string hashing).
    lengths = {len(cached_value("e1", 100 + i, document)) for i in range(3 * SPREAD)}
    assert len(lengths) == SPREAD
