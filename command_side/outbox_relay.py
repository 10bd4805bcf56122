"""The outbox relay: every stored event, in store order, onto Kafka.

The event store is the outbox. The relay reads committed events after its checkpoint
(the same commit-safe feed the projections use), publishes them with an idempotent
producer (acks=all), waits for every delivery, and only then moves its checkpoint in
PostgreSQL. Kafka being down only delays publishing: nothing acknowledged is skipped,
and a crash between delivery and checkpoint republishes a batch, which consumers
recognise by event id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from projections.runner import ENSURE_CHECKPOINT_SQL, load_checkpoint, save_checkpoint
from projections.store_feed import StoredRecord, read_after
from schema import events

log = logging.getLogger("cinemate.relay")

RELAY = "kafka_relay"
INTERACTIONS_TOPIC = "interaction_events"
FEEDBACK_TOPIC = "model_feedback"
TOPIC_PARTITIONS = {
    INTERACTIONS_TOPIC: 6,
    FEEDBACK_TOPIC: 3,
    "processed_features": 6,
    "interaction_events_dlq": 1,
}

AUDIT_SQL = """
INSERT INTO audit_batches
    (stage, actor, first_tx_id, first_position, last_tx_id, last_position, events)
VALUES ('published', 'kafka_relay', $1::text::xid8, $2, $3::text::xid8, $4, $5)
"""


def envelope(record: StoredRecord) -> bytes:
    event = record.decode()
    return orjson.dumps(
        {
            "event_id": str(record.event_id),
            "type": record.event_type,
            "schema_version": record.schema_version,
            "user_id": record.user_id,
            "stream_version": record.stream_version,
            "position": record.position,
            "occurred_at": event.timestamp,
            "recorded_at": record.recorded_at,
            "payload": events.payload_of(event),
        }
    )


def headers(record: StoredRecord) -> list[tuple[str, bytes]]:
    return [
        ("event_id", str(record.event_id).encode()),
        ("event_type", record.event_type.encode()),
        ("schema_version", str(record.schema_version).encode()),
        ("position", str(record.position).encode()),
    ]


async def ensure_topics(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, partitions, 1)
            for name, partitions in TOPIC_PARTITIONS.items()
            if name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, bootstrap: str, *, batch_size: int = 2000) -> None:
        self.pool = pool
        self.bootstrap = bootstrap
        self.batch_size = batch_size
        self.published = 0

    async def _publish(self, producer: AIOKafkaProducer, records: Sequence[StoredRecord]) -> None:
        deliveries = []
        for record in records:
            key = record.user_id.encode()
            value = envelope(record)
            deliveries.append(
                await producer.send(INTERACTIONS_TOPIC, value, key=key, headers=headers(record))
            )
            if record.event_type == "feedback":
                deliveries.append(
                    await producer.send(FEEDBACK_TOPIC, value, key=key, headers=headers(record))
                )
        await asyncio.gather(*deliveries)

    async def publish_outbox(self, producer: AIOKafkaProducer) -> int:
        """Messages written for Kafka outside the event stream (tombstones), oldest first;
        each row is deleted only after Kafka acknowledged it."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id, topic, key, value FROM kafka_outbox ORDER BY id LIMIT 500"
            )
            if not rows:
                return 0
            deliveries = [
                await producer.send(row["topic"], row["value"], key=row["key"].encode())
                for row in rows
            ]
            await asyncio.gather(*deliveries)
            await conn.execute(
                "DELETE FROM kafka_outbox WHERE id = ANY($1::bigint[])", [r["id"] for r in rows]
            )
        return len(rows)

    async def step(self, producer: AIOKafkaProducer) -> int:
        """Publish one batch and, once Kafka has acknowledged all of it, checkpoint it."""
        async with self.pool.acquire() as conn:
            checkpoint = await load_checkpoint(conn, RELAY)
            records = await read_after(conn, checkpoint, self.batch_size)
            if not records:
                return 0
            await self._publish(producer, records)
            first, last = records[0].checkpoint, records[-1].checkpoint
            async with conn.transaction():
                await save_checkpoint(conn, RELAY, last)
                await conn.execute(
                    AUDIT_SQL,
                    str(first.tx_id),
                    first.position,
                    str(last.tx_id),
                    last.position,
                    len(records),
                )
        self.published += len(records)
        return len(records)

    async def run(self, wake: asyncio.Event, idle_seconds: float = 1.0) -> None:
        """Publish until cancelled; while Kafka is unreachable, retry with backoff."""
        async with self.pool.acquire() as conn:
            await conn.execute(ENSURE_CHECKPOINT_SQL, RELAY, "running")
        failures = 0
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                enable_idempotence=True,
                acks="all",
                linger_ms=5,
                request_timeout_ms=10_000,
                retry_backoff_ms=200,
            )
            try:
                await ensure_topics(self.bootstrap)
                await producer.start()
                while True:
                    while await self.step(producer) >= self.batch_size:
                        pass
                    while await self.publish_outbox(producer):
                        pass
                    failures = 0
                    try:
                        async with asyncio.timeout(idle_seconds):
                            await wake.wait()
                    except TimeoutError:
                        pass
                    wake.clear()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning(
                    "relay cannot publish; will retry",
                    extra={"error": repr(exc), "attempt": failures},
                )
                await asyncio.sleep(min(5.0, 0.2 * 2**failures))
            finally:
                try:
                    async with asyncio.timeout(5):
                        await producer.stop()
                except Exception:
                    pass
