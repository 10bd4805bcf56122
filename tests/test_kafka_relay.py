"""The outbox relay against a real Kafka broker (KRaft, started by the test)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from cinemate.app import build_app, open_services
from cinemate.kafka_broker import KafkaBroker
from cinemate.settings import Settings


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    kafka = KafkaBroker(tmp_path_factory.mktemp("kafka-relay"))
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()


async def consume_all(
    bootstrap: str, topic: str, expected: int, user_prefix: str = "", within: float = 90
) -> list[Any]:
    """Messages of users named `user_prefix`... from the beginning of the topic, until
    `expected` distinct event ids were seen."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    messages: list[Any] = []
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                messages.extend(
                    m for m in records if orjson.loads(m.value)["user_id"].startswith(user_prefix)
                )
            if len({dict(m.headers)["event_id"] for m in messages}) >= expected:
                break
    finally:
        await consumer.stop()
    return messages


def with_kafka(settings: Settings, broker: KafkaBroker) -> Settings:
    return dataclasses.replace(
        settings, kafka_bootstrap_servers=broker.bootstrap_servers, enable_kafka=True
    )


async def test_every_stored_event_is_published_once_per_position(
    settings: Settings, broker: KafkaBroker
) -> None:
    settings = with_kafka(settings, broker)
    assert settings.database_url and settings.redis_url
    async with AsyncExitStack() as stack:
        services = await open_services(settings, settings.database_url, settings.redis_url, stack)
        transport = httpx.ASGITransport(app=build_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://c") as http:
            items = [
                {"type": "rating", "user_id": f"k{i % 7}", "movie_id": f"m{i}", "rating": 4}
                for i in range(60)
            ]
            items.append(
                {
                    "type": "feedback",
                    "user_id": "k1",
                    "movie_id": "m3",
                    "recommendation_id": "r1",
                    "action": "like",
                }
            )
            answer = await http.post("/api/v1/events/batch", json={"events": items})
            assert answer.status_code == 202
            accepted = answer.json()["results"]
            published = await consume_all(broker.bootstrap_servers, "interaction_events", 61, "k")
            feedback = await consume_all(broker.bootstrap_servers, "model_feedback", 1, "k")
            health = (await http.get("/api/v1/health")).json()
    by_position = {orjson.loads(m.value)["position"]: m for m in published}
    assert sorted(by_position) == sorted(r["position"] for r in accepted)
    envelope = orjson.loads(by_position[accepted[0]["position"]].value)
    assert set(envelope) == {
        "event_id",
        "type",
        "schema_version",
        "user_id",
        "stream_version",
        "position",
        "occurred_at",
        "recorded_at",
        "payload",
    }
    assert envelope["payload"]["rating"] == 4.0 and envelope["user_id"] == "k0"
    assert by_position[accepted[0]["position"]].key == b"k0"
    assert orjson.loads(feedback[0].value)["payload"]["action"] == "like"
    assert health["components"]["kafka"]["status"] in ("ok", "degraded")


async def test_kafka_down_while_accepting_then_everything_is_published(
    settings: Settings, broker: KafkaBroker, tmp_path: Path
) -> None:
    settings = with_kafka(settings, broker)
    assert settings.database_url and settings.redis_url
    async with AsyncExitStack() as stack:
        services = await open_services(settings, settings.database_url, settings.redis_url, stack)
        transport = httpx.ASGITransport(app=build_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://c") as http:
            broker.kill()
            statuses = []
            for i in range(40):
                answer = await http.post(
                    "/api/v1/events/watch",
                    json={"user_id": "outage", "movie_id": f"m{i}", "progress": 0.5},
                )
                statuses.append(answer.status_code)
                await asyncio.sleep(0.02)
            await asyncio.to_thread(broker.start)
            published = await consume_all(
                broker.bootstrap_servers, "interaction_events", 40, "outage"
            )
    assert statuses == [202] * 40
    outage = {
        orjson.loads(m.value)["event_id"]
        for m in published
        if orjson.loads(m.value)["user_id"] == "outage"
    }
    assert len(outage) == 40


async def test_a_forgotten_user_gets_a_tombstone(settings: Settings, broker: KafkaBroker) -> None:
    settings = dataclasses.replace(with_kafka(settings, broker), admin_token="s3cret")
    assert settings.database_url and settings.redis_url
    async with AsyncExitStack() as stack:
        services = await open_services(settings, settings.database_url, settings.redis_url, stack)
        transport = httpx.ASGITransport(app=build_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://c") as http:
            await http.post(
                "/api/v1/events/rating", json={"user_id": "gone", "movie_id": "m1", "rating": 3}
            )
            answer = await http.delete(
                "/api/v1/users/gone", headers={"Authorization": "Bearer s3cret"}
            )
            assert answer.status_code == 200
            consumer = AIOKafkaConsumer(
                "interaction_events",
                bootstrap_servers=broker.bootstrap_servers,
                auto_offset_reset="earliest",
                enable_auto_commit=False,
            )
            await consumer.start()
            tombstones = []
            try:
                deadline = time.monotonic() + 60
                while not tombstones and time.monotonic() < deadline:
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        tombstones += [m for m in records if m.key == b"gone" and m.value is None]
            finally:
                await consumer.stop()
            left = -1
            for _ in range(100):  # the relay deletes a row once Kafka acknowledged it
                async with services.pool.acquire() as conn:
                    left = await conn.fetchval("SELECT count(*) FROM kafka_outbox")
                if left == 0:
                    break
                await asyncio.sleep(0.05)
    assert tombstones
    assert left == 0
