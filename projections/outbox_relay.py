"""The outbox relay: every stored event, in store order, onto Kafka.

The event store is the outbox. The relay reads committed events after its checkpoint
(the same commit-safe feed the projections use), publishes them with an idempotent
producer (acks=all), waits for every delivery, and only then moves its checkpoint in
PostgreSQL. Kafka being down only delays publishing: nothing acknowledged is skipped,
and a crash between delivery and checkpoint republishes a batch, which consumers
recognise by event id. Messages that are not store events (feature documents,
tombstones) are written to the kafka_outbox table by the transaction that decides them
and deleted from it once Kafka has them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import asyncpg
from aiokafka import AIOKafkaProducer

from event_store import feed, locks
from event_store.feed import StoredRecord, read_after
from projections import checkpoints, retry
from projections.kafka_feed import (
    Outage,
    ensure_topics,
    new_producer,
    patiently,
    stop_quietly,
    to_message,
)
from schema import topics

log = logging.getLogger("cinemate.relay")

RELAY = "kafka_relay"
RETRYING = (
    "the producer retries until its request timeout, then the relay reconnects,"
    f" backing off {retry.FIRST_WAIT} s doubling to {retry.MAX_WAIT:.0f} s"
)

AUDIT_SQL = """
INSERT INTO audit_batches
    (stage, actor, first_tx_id, first_position, last_tx_id, last_position, events)
VALUES ('published', 'kafka_relay', $1::text::xid8, $2, $3::text::xid8, $4, $5)
"""


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, bootstrap: str, *, batch_size: int = 2000) -> None:
        self.pool = pool
        self.bootstrap = bootstrap
        self.batch_size = batch_size
        self.published = 0
        self.outage = Outage()

    async def _publish(self, producer: AIOKafkaProducer, records: Sequence[StoredRecord]) -> None:
        deliveries = []
        for record in records:
            key = record.user_id.encode()
            value, headers = to_message(record)
            deliveries.append(
                await producer.send(topics.INTERACTIONS, value, key=key, headers=headers)
            )
            if record.event_type == "feedback":
                deliveries.append(
                    await producer.send(topics.FEEDBACK, value, key=key, headers=headers)
                )
        await asyncio.gather(*deliveries)

    async def publish_outbox(self, producer: AIOKafkaProducer) -> int:
        """Messages written for Kafka outside the event stream, oldest first; each row is
        deleted only after Kafka acknowledged it."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await locks.take_relay_turn(conn):
                return 0
            rows = await conn.fetch(
                "SELECT id, topic, key, value FROM kafka_outbox ORDER BY id LIMIT 2000"
            )
            if not rows:
                return 0

            async def send() -> None:
                deliveries = [
                    await producer.send(row["topic"], row["value"], key=row["key"].encode())
                    for row in rows
                ]
                await asyncio.gather(*deliveries)

            await patiently(
                send(), self.outage, f"publishing {len(rows)} outbox messages", RETRYING
            )
            await conn.execute(
                "DELETE FROM kafka_outbox WHERE id = ANY($1::bigint[])", [r["id"] for r in rows]
            )
        return len(rows)

    async def step(self, producer: AIOKafkaProducer) -> int:
        """Publish one batch and, once Kafka has acknowledged all of it, checkpoint it."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await locks.take_relay_turn(conn):
                return 0
            checkpoint = await checkpoints.load_one(conn, RELAY)
            records = await read_after(conn, checkpoint, self.batch_size)
            if not records:
                await checkpoints.set_state(conn, RELAY, "running")
                return 0
            await patiently(
                self._publish(producer, records),
                self.outage,
                f"publishing {len(records)} events",
                RETRYING,
            )
            first, last = records[0].checkpoint, records[-1].checkpoint
            await checkpoints.save(conn, RELAY, last)
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

    async def _report(self, state: str) -> None:
        try:
            async with self.pool.acquire(timeout=2) as conn:
                await checkpoints.set_state(conn, RELAY, state)
        except Exception as exc:  # PostgreSQL down too: the relay's own retry covers it
            log.debug("relay state not recorded: %r", exc)

    async def run(self, wake: asyncio.Event, idle_seconds: float = 1.0) -> None:
        """Publish until cancelled; while Kafka is unreachable, retry with backoff."""
        async with self.pool.acquire() as conn:
            await checkpoints.ensure(conn, [RELAY])
        failures = 0
        while True:
            producer = new_producer(self.bootstrap)
            try:
                await ensure_topics(self.bootstrap)
                await producer.start()
                while True:
                    while await self.step(producer) >= self.batch_size:
                        pass
                    while await self.publish_outbox(producer):
                        pass
                    self.outage.end()
                    failures = 0
                    await feed.woken(wake, idle_seconds)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                backoff = retry.wait_after(failures)
                # One warning per outage (unless one was given already), not per attempt.
                self.outage.begin(
                    "kafka unreachable: the relay cannot publish; reconnecting in %.1f s,"
                    " backing off up to %.0f s",
                    backoff,
                    retry.MAX_WAIT,
                    error=repr(exc),
                )
                log.debug("relay retrying", extra={"error": repr(exc), "attempt": failures})
                await self._report(f"retrying: {type(exc).__name__}")
                await asyncio.sleep(backoff)
            finally:
                await stop_quietly(producer)
