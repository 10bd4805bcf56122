"""The outbox relay against a real Kafka broker (KRaft, started by the test)."""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import AsyncExitStack
from typing import Any

import httpx
import orjson

from cinemate.app import build_app, open_services
from cinemate.settings import Settings
from devtools.kafka_broker import KafkaBroker
from tests.kafka_helpers import consume_events, consume_until, envelope, user_of, with_kafka
from tests.projection_helpers import features_at


async def test_every_stored_event_is_published_once_per_position(
    settings: Settings, kafka_bootstrap: str
) -> None:
    settings = with_kafka(settings, kafka_bootstrap)
    assert settings.database_url and settings.redis_url
    async with AsyncExitStack() as stack:
        services = await open_services(settings, settings.database_url, settings.redis_url, stack)
        transport = httpx.ASGITransport(app=build_app(services))
        async with httpx.AsyncClient(transport=transport, base_url="http://c") as http:
            items: list[dict[str, Any]] = [
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
            published = await consume_events(kafka_bootstrap, "interaction_events", 61, "k")
            feedback = await consume_events(kafka_bootstrap, "model_feedback", 1, "k")
            # Each user's document once the projection has applied all their events.
            per_user = Counter(item["user_id"] for item in items)
            features = {u: await features_at(http, u, n, within=60) for u, n in per_user.items()}
            documents = await consume_until(
                kafka_bootstrap,
                "processed_features",
                lambda ms: (
                    {user_of(m): envelope(m)["stream_version"] for m in ms}
                    == {u: f["stream_version"] for u, f in features.items()}
                ),
                keep=lambda m: m.value is not None and user_of(m).startswith("k"),
            )
            health = (await http.get("/api/v1/health")).json()
    by_position = {orjson.loads(m.value)["position"]: m for m in published}
    assert sorted(by_position) == sorted(r["position"] for r in accepted)
    first = orjson.loads(by_position[accepted[0]["position"]].value)
    assert set(first) == {
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
    assert first["payload"]["rating"] == 4.0 and first["user_id"] == "k0"
    assert by_position[accepted[0]["position"]].key == b"k0"
    assert orjson.loads(feedback[0].value)["payload"]["action"] == "like"
    # Each change of a user's features, in order, ending with the document served now.
    latest = {user_of(m): envelope(m) for m in documents}
    assert latest == features
    versions = [envelope(m)["stream_version"] for m in documents if user_of(m) == "k1"]
    assert versions == sorted(versions)
    assert health["components"]["kafka"]["status"] in ("ok", "degraded")


async def test_kafka_down_while_accepting_then_everything_is_published(
    settings: Settings, own_broker: KafkaBroker
) -> None:
    broker = own_broker
    settings = with_kafka(settings, broker.bootstrap_servers)
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
            published = await consume_events(
                broker.bootstrap_servers, "interaction_events", 40, "outage"
            )
    assert statuses == [202] * 40
    outage = {
        orjson.loads(m.value)["event_id"]
        for m in published
        if orjson.loads(m.value)["user_id"] == "outage"
    }
    print(
        f"kafka outage: {statuses.count(202)} accepted while the broker was down, "
        f"{len(outage)} published after, {len(published) - len(outage)} republished copies"
    )
    assert len(outage) == 40


async def test_a_forgotten_user_gets_a_tombstone(settings: Settings, kafka_bootstrap: str) -> None:
    settings = with_kafka(settings, kafka_bootstrap, admin_token="s3cret")
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
            tombstones = await consume_until(
                kafka_bootstrap,
                "interaction_events",
                lambda ms: bool(ms),
                keep=lambda m: m.key == b"gone" and m.value is None,
                within=60,
            )
            left = -1
            for _ in range(100):  # the relay deletes a row once Kafka acknowledged it
                async with services.pool.acquire() as conn:
                    left = await conn.fetchval("SELECT count(*) FROM kafka_outbox")
                if left == 0:
                    break
                await asyncio.sleep(0.05)
    assert tombstones
    assert left == 0
