"""Projection workers as a Kafka consumer group, against the real broker."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from cinemate.app import Services, build_app, open_services
from cinemate.settings import Settings
from projections.kafka_consumer import ProjectionConsumer
from projections.rebuild import rebuild
from tests.kafka_helpers import consume_until, with_kafka
from tests.projection_helpers import (
    PROJECTIONS,
    FailingProjection,
    add_catalog,
    append_random,
    features_at,
    snapshot,
    wait_caught_up,
)


async def wait_for(condition: Any, within: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def consumer_caught_up(pool: asyncpg.Pool, consumer: ProjectionConsumer) -> bool:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT partitions, lag_messages FROM kafka_consumers WHERE member = $1",
            consumer.member,
        )
    return row is not None and len(row["partitions"]) == 6 and row["lag_messages"] == 0


async def test_poison_messages_go_to_the_dlq_and_the_partition_moves_on(
    settings: Settings, kafka_bootstrap: str, db: asyncpg.Connection
) -> None:
    settings = with_kafka(settings, kafka_bootstrap)
    assert settings.database_url and settings.redis_url
    group = f"poison-{uuid.uuid4().hex[:8]}"
    async with AsyncExitStack() as stack:
        # The relay publishes from here; the projections run only as the consumer below.
        services = await open_services(
            settings, settings.database_url, settings.redis_url, stack, run_projections=False
        )
        consumer = ProjectionConsumer(
            services.pool,
            kafka_bootstrap,
            [
                *services.projections.values(),
                FailingProjection(
                    "refuses_cursed", lambda e: getattr(e, "movie_id", "") == "cursed"
                ),
            ],
            group=group,
        )
        task = asyncio.create_task(consumer.run())
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            http = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=build_app(services)), base_url="http://c"
            )
            watch = {"user_id": "p1", "movie_id": "m1", "progress": 0.9}
            assert (await http.post("/api/v1/events/watch", json=watch)).status_code == 202
            await features_at(http, "p1", 1, within=60)
            # Undecodable, then well-formed JSON of no known event type, on p1's partition.
            await producer.send_and_wait("interaction_events", b"\x00not json", key=b"p1")
            await producer.send_and_wait(
                "interaction_events",
                b'{"type": "teleport", "user_id": "p1"}',
                key=b"p1",
                headers=[("tx_id", b"1")],
            )
            for movie in ("cursed", "m2"):
                rating = {"user_id": "p1", "movie_id": movie, "rating": 4}
                assert (await http.post("/api/v1/events/rating", json=rating)).status_code == 202
            other = {"user_id": "p2", "movie_id": "m3", "rating": 5}
            assert (await http.post("/api/v1/events/rating", json=other)).status_code == 202

            after = await features_at(http, "p1", 3, within=60)
            await features_at(http, "p2", 1, within=60)
            dead = await consume_until(
                kafka_bootstrap,
                "interaction_events_dlq",
                lambda ms: len(ms) >= 3,
                keep=lambda m: dict(m.headers).get("dlq_group") == group.encode(),
            )

            async def audited() -> bool:  # the audit row follows the DLQ delivery
                count = await db.fetchval(
                    "SELECT count(*) FROM audit_events WHERE stage = 'dead_lettered'"
                )
                return bool(count >= 3)

            await wait_for(audited, what="the dead letters' audit rows")
            metrics = (await http.get("/metrics")).text
            health = (await http.get("/api/v1/health")).json()["components"]["kafka"]

            # Redelivering everything (a new group reads the topic from the start)
            # changes no read model.
            before = await snapshot(db)
            again = ProjectionConsumer(
                services.pool,
                kafka_bootstrap,
                list(services.projections.values()),
                group=f"{group}-again",
            )
            replay = asyncio.create_task(again.run())
            try:
                await wait_for(lambda: consumer_caught_up(services.pool, again), what="replay")
            finally:
                replay.cancel()
                await asyncio.gather(replay, return_exceptions=True)
            assert await snapshot(db) == before
            assert again.applied == 0
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await producer.stop()

    assert after["stream_version"] == 3  # the cursed rating (version 2) was dead-lettered
    assert consumer.dead_lettered == 3
    errors = sorted(dict(m.headers)["dlq_error_type"].decode() for m in dead)
    assert errors == ["PoisonMessage", "PoisonMessage", "RuntimeError"]
    assert all(m.key == b"p1" for m in dead)
    assert {m.value for m in dead} >= {b"\x00not json", b'{"type": "teleport", "user_id": "p1"}'}
    headers = dict(dead[0].headers)
    assert headers["dlq_topic"] == b"interaction_events" and "dlq_offset" in headers
    rows = await db.fetch(
        "SELECT event_type, detail FROM audit_events WHERE stage = 'dead_lettered' ORDER BY at"
    )
    assert sorted(r["event_type"] for r in rows) == ["rating", "unknown", "unknown"]
    assert "cinemate_dlq_messages 3.0" in metrics
    assert [c["member"] for c in health["detail"]["consumers"]] == [consumer.member]


def start_worker(settings: Settings, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    assert settings.database_url and settings.redis_url and settings.kafka_bootstrap_servers
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "CINEMATE_DATA_DIR": str(data_dir),
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "cinemate.cli", "worker", "--source", "kafka"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


async def consumed_events(conn: asyncpg.Connection) -> int:
    """Events the consumers have applied: each user's applied-stream mark counts them."""
    return int(await conn.fetchval("SELECT coalesce(sum(stream_version), 0) FROM applied_streams"))


async def noted_as_projected(conn: asyncpg.Connection) -> dict[str, int]:
    """Per projection, the events its audit trail's stretches cover."""
    rows = await conn.fetch(
        "SELECT actor, sum(events) AS events FROM audit_batches"
        " WHERE stage = 'projected' GROUP BY actor"
    )
    return {row["actor"]: int(row["events"]) for row in rows}


def close_floats(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]]) -> bool:
    """Item scores sum events in arrival order, which Kafka's partitions change."""
    return len(got) == len(want) and all(
        len(g) == len(w)
        and all(
            math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) if isinstance(a, float) else a == b
            for a, b in zip(g, w, strict=True)
        )
        for g, w in zip(got, want, strict=True)
    )


async def test_two_workers_one_killed_the_read_models_equal_a_rebuild(
    settings: Settings,
    kafka_bootstrap: str,
    db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    settings = with_kafka(settings, kafka_bootstrap)
    assert settings.database_url and settings.redis_url
    await add_catalog(db)
    log = tmp_path / "workers.log"
    async with AsyncExitStack() as stack:
        services: Services = await open_services(
            settings, settings.database_url, settings.redis_url, stack, run_projections=False
        )
        workers = [start_worker(settings, tmp_path, log) for _ in range(2)]
        try:
            await wait_for(lambda: _sharing(db), within=120, what="both workers to get partitions")
            appended = await append_random(services.committer, total=4000, users=300, seed=5)
            await wait_for(lambda: _more_than(db, 500), what="the workers to start applying")
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait(10)
            applied_at_kill = await consumed_events(db)
            appended += await append_random(services.committer, total=2000, users=300, seed=6)
            await wait_caught_up(services.pool, within=180)
            survivor = await db.fetch("SELECT member, partitions FROM kafka_consumers")
            trail = await noted_as_projected(db)
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
                    assert worker.wait(30) == 0, log.read_text()[-3000:]
        consumed = await snapshot(db)
        for name in PROJECTIONS:
            await rebuild(services.pool, services.projections[name])
        rebuilt = await snapshot(db)

    print(
        f"two workers, one killed: {appended} events, {applied_at_kill} applied at the kill, "
        f"{len(consumed['audit'])} in the read models, equal to a rebuild"
    )
    assert applied_at_kill < appended, "the kill should land mid-stream"
    assert len(consumed["audit"]) == appended
    # Each event's trail says it was projected, by every projection, once.
    assert trail == {name: appended for name in PROJECTIONS}, trail
    assert consumed["user_features"] == rebuilt["user_features"]
    assert consumed["model_feedback"] == rebuilt["model_feedback"]
    assert consumed["audit"] == rebuilt["audit"]
    assert close_floats(consumed["item_stats"], rebuilt["item_stats"])
    # The survivor took over every partition of the killed worker.
    assert any(len(row["partitions"]) == 6 for row in survivor), survivor


async def _more_than(conn: asyncpg.Connection, events: int) -> bool:
    return await consumed_events(conn) > events


async def _sharing(conn: asyncpg.Connection) -> bool:
    rows = await conn.fetch("SELECT partitions FROM kafka_consumers")
    return len(rows) == 2 and all(r["partitions"] for r in rows)
