"""Projection workers as a Kafka consumer group on the interactions topic.

Several processes in group cinemate-projections share the topic's partitions; each user
is one key, so each stream arrives in order on one partition. A batch is applied in one
PostgreSQL transaction under the projections' lock, durably (its commit waits for the WAL
flush, unlike a store follower's), and its offsets are committed to Kafka only after that
transaction. What a crash or a rebalance redelivers, and what the relay republished, is
skipped by the applied-stream marks (see projections.applier), so it changes nothing.
A message is applied only if the store holds that very event: the store is the truth,
and a forgotten user's events, still in the topic, stay forgotten.

A message no projection can read, or one that keeps failing, goes to
the dead-letter topic with the error in its headers and a "dead_lettered" audit row,
and the partition moves on. PostgreSQL being unreachable is not the message's fault:
that batch is retried until the database is back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError

from event_store import feed, locks
from event_store.errors import TRANSIENT_ERRORS, UNAVAILABLE_ERRORS
from event_store.feed import StoredRecord
from event_store.stopping import cancel_and_wait
from projections import checkpoints, dead_letters, retry
from projections.applier import Applied, Applier
from projections.kafka_feed import (
    PoisonMessage,
    ensure_topics,
    from_message,
    new_producer,
    stop_quietly,
)
from projections.projection import Projection
from schema import topics

log = logging.getLogger("cinemate.consumer")

REPORT_SQL = """
INSERT INTO kafka_consumers AS c (member, group_id, partitions, lag_messages, state, error)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (member) DO UPDATE
SET partitions = excluded.partitions, lag_messages = excluded.lag_messages,
    state = excluded.state, error = excluded.error, heartbeat_at = now()
"""
LEAVE_SQL = "DELETE FROM kafka_consumers WHERE member = $1"
# Reading a batch of messages lets the batch applying beside it go on this often.
PARSE_YIELD_EVERY = 20
# Batches read and waiting for the one applying to commit.
PARSED_AHEAD = 1


class SystemicFailure(RuntimeError):
    """Applying fails whatever the message: not a reason to dead-letter any."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """A readable message and the stored record it carries."""

    message: ConsumerRecord[bytes, bytes]
    record: StoredRecord


Unreadable = tuple[ConsumerRecord[bytes, bytes], PoisonMessage]
# A batch read: its deliveries, its unreadable messages, and the offsets to commit after.
Parsed = tuple[list[Delivery], list[Unreadable], dict[TopicPartition, int]]


def member_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class ProjectionConsumer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        bootstrap: str,
        projections: Sequence[Projection],
        *,
        group: str = topics.PROJECTIONS_GROUP,
        batch_size: int = 1000,
        attempts: int = 3,
    ) -> None:
        self.pool = pool
        self.bootstrap = bootstrap
        # Offsets go to the broker once a batch commits: it must survive a crash.
        self.applier = Applier(projections, durable=True)
        self.group = group
        self.batch_size = batch_size
        self.attempts = attempts
        self.member = member_name()
        self.applied = 0
        self.dead_lettered = 0
        self._copying: asyncio.Task[None] | None = None

    # -- applying ---------------------------------------------------------------------

    async def apply(self, deliveries: Sequence[Delivery]) -> int:
        """One transaction: the deliveries the store holds and no applier has applied
        yet go to every projection whose checkpoint (a rebuild's) does not cover them."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                marks = await self.applier.begin(conn)
                stored = await feed.held_in_store(conn, [d.record for d in deliveries])
                records = [d.record for d in deliveries if d.record.event_id in stored]
                applied = await self.applier.apply(conn, records, marks)
                await self.applier.mark(conn, applied)
        if self._copying is not None:
            await self._copying  # one batch's copies in flight at most
        self._copying = asyncio.create_task(self._copy(applied))
        self.applied += len(applied.fresh)
        return len(applied.fresh)

    async def _copy(self, applied: Applied) -> None:
        """A committed batch's copies outside PostgreSQL (the features cache), written
        while the next batch applies (the Redis round trips need not hold up
        PostgreSQL's work). Best effort: they are caches, set only if newer, and
        PostgreSQL has the batch already."""
        try:
            await self.applier.after_commit(applied)
        except Exception as exc:
            log.warning("a batch's cache copies failed", extra={"error": repr(exc)})

    async def _until_store_answers(self, work: Any) -> Any:
        """Run `work()`, waiting out PostgreSQL outages and transient conflicts (not the
        message's fault); other errors propagate."""
        errors = (*UNAVAILABLE_ERRORS, *TRANSIENT_ERRORS)
        return await retry.waiting_out(work, errors, log, "store unavailable; retrying the batch")

    async def parse(
        self, messages: Sequence[ConsumerRecord[bytes, bytes]]
    ) -> tuple[list[Delivery], list[Unreadable]]:
        """The readable messages as deliveries, and the unreadable ones with why. Reading
        is pure Python: it yields to the loop now and then, so that the batch before,
        applying meanwhile, sends its next statement to PostgreSQL (the other core)."""
        deliveries: list[Delivery] = []
        poison: list[Unreadable] = []
        for count, message in enumerate(messages, start=1):
            if message.value is None:
                continue  # a tombstone: forgetting the user erased the read models already
            try:
                deliveries.append(Delivery(message, from_message(message.value, message.headers)))
            except PoisonMessage as exc:
                poison.append((message, exc))
            if count % PARSE_YIELD_EVERY == 0:
                await asyncio.sleep(0)
        return deliveries, poison

    async def process_parsed(
        self,
        deliveries: Sequence[Delivery],
        poison: Sequence[Unreadable],
        producer: AIOKafkaProducer,
    ) -> None:
        """Dead-letter the unreadable messages, then apply the batch (message by message
        if it fails, dead-lettering those that fail alone)."""
        for message, unreadable in poison:
            await self.dead_letter(producer, message, unreadable, None)
        if not deliveries:
            return
        try:
            await self._until_store_answers(lambda: self.apply(deliveries))
            return
        except Exception as exc:
            log.warning(
                "batch failed; applying its messages one by one", extra={"error": repr(exc)}
            )
        failed = [
            (delivery, error)
            for delivery in deliveries
            if (error := await self._apply_alone(delivery)) is not None
        ]
        if len(deliveries) > 1 and len(failed) == len(deliveries):
            # Every message failing alone is not the messages' fault (a bug, a broken
            # table): parking them all would empty the topic into the DLQ. Stop instead;
            # the consumer restarts and reads them again.
            raise SystemicFailure(f"all {len(failed)} messages fail alone: {failed[0][1]!r}")
        for delivery, error in failed:
            await self.dead_letter(producer, delivery.message, error, delivery.record)

    async def _apply_alone(self, delivery: Delivery) -> Exception | None:
        """None once applied, or the error it still fails with after every attempt."""
        try:
            await retry.attempts(
                self.attempts, lambda: self._until_store_answers(lambda: self.apply([delivery]))
            )
        except Exception as exc:
            return exc
        return None

    async def dead_letter(
        self,
        producer: AIOKafkaProducer,
        message: ConsumerRecord[bytes, bytes],
        error: Exception,
        record: StoredRecord | None,
    ) -> None:
        """Park the message on the DLQ (delivered before its offset is committed) and say
        so in the audit trail."""
        reason = dead_letters.describe(error)
        source = {
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "group": self.group,
        }
        headers = [
            *(message.headers or ()),
            ("dlq_error", reason.encode()),
            ("dlq_error_type", type(error).__name__.encode()),
            *((f"dlq_{k}", str(v).encode()) for k, v in source.items()),
            ("dlq_consumer", self.member.encode()),
        ]
        await (
            await producer.send(
                topics.DEAD_LETTERS, message.value, key=message.key, headers=headers
            )
        )
        key = (message.key or b"").decode(errors="replace")
        # One audit row per message, however often it is redelivered.
        event_id = (
            record.event_id
            if record
            else uuid.uuid5(
                uuid.NAMESPACE_URL, f"kafka:{message.topic}/{message.partition}/{message.offset}"
            )
        )

        async def audit() -> None:
            async with self.pool.acquire() as conn, conn.transaction():
                # Under the audit projection's lock, so a rebuild's swap carries it over.
                await locks.lock_projections(conn, ["audit"], durable=True)
                await dead_letters.record(
                    conn,
                    event_id,
                    record.position if record else 0,
                    record.user_id if record else key,
                    record.event_type if record else "unknown",
                    {**source, "error": reason},
                )

        await self._until_store_answers(audit)
        self.dead_lettered += 1
        log.error("message dead-lettered", extra={**source, "error": reason})

    # -- keeping the store-side view current --------------------------------------------

    async def advance_checkpoints(self, limit: int = 5000) -> None:
        """Move the projections' store checkpoints over events already applied, and note
        those stretches in the audit trail, so that lag, health and each event's trail
        read the same as with store followers. `limit` events a transaction (it holds
        the projections' lock, which the next batch waits for)."""
        while await self._advance_checkpoints(limit) >= limit:
            pass

    async def _advance_checkpoints(self, limit: int) -> int:
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                marks = await self.applier.begin(conn)
                # One stretch per distinct checkpoint (they differ only after a rebuild).
                covered = {
                    mark: await feed.covered_by_marks(conn, mark, limit) for mark in set(marks)
                }
                await self.applier.advance_over(conn, [covered[mark] for mark in marks])
                await checkpoints.heartbeat(conn, self.applier.names)
        return max((s.events for s in covered.values() if s is not None), default=0)

    async def report(self, consumer: AIOKafkaConsumer | None, state: str, error: str = "") -> None:
        partitions: list[int] = []
        lag = 0
        if consumer is not None:
            for tp in sorted(consumer.assignment()):
                partitions.append(tp.partition)
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    lag += max(0, highwater - await consumer.position(tp))
        try:
            async with self.pool.acquire(timeout=2) as conn:
                await conn.execute(
                    REPORT_SQL, self.member, self.group, partitions, lag, state, error or None
                )
        except Exception as exc:
            log.debug("consumer state not recorded: %r", exc)

    # -- running ------------------------------------------------------------------------

    async def _consume(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        """Fetch and read batches while earlier ones apply: one task reads messages
        (Python on this core) up to PARSED_AHEAD batches ahead, another applies them one
        at a time and in order (their statements in PostgreSQL, on the other core), so a
        batch's applying starts as soon as the one before commits, never waiting for
        its messages to be read. Each batch's offsets go to Kafka after it commits,
        while later ones apply; commits stay in order (each waits for the one before).
        Offsets lost in a crash only mean redeliveries, which the marks skip."""
        loop = asyncio.get_running_loop()
        reported = 0.0
        parsed: asyncio.Queue[Parsed] = asyncio.Queue(maxsize=PARSED_AHEAD)
        applying = asyncio.create_task(self._apply_in_order(consumer, parsed, producer))
        try:
            while True:
                fetched = await consumer.getmany(timeout_ms=500, max_records=self.batch_size)
                messages = [m for batch in fetched.values() for m in batch]
                if messages:
                    deliveries, poison = await self.parse(messages)
                    offsets = {tp: batch[-1].offset + 1 for tp, batch in fetched.items()}
                    queued = asyncio.ensure_future(parsed.put((deliveries, poison, offsets)))
                    await asyncio.wait({queued, applying}, return_when=asyncio.FIRST_COMPLETED)
                    if not queued.done():
                        queued.cancel()
                if applying.done():
                    applying.result()  # raises what it raised: run restarts the consumer
                if loop.time() - reported >= 1.0:
                    reported = loop.time()
                    await self._until_store_answers(self.advance_checkpoints)
                    await self.report(consumer, "running")
        finally:
            await cancel_and_wait([applying])
            if self._copying is not None:
                await asyncio.gather(self._copying, return_exceptions=True)

    async def _apply_in_order(
        self,
        consumer: AIOKafkaConsumer,
        parsed: asyncio.Queue[Parsed],
        producer: AIOKafkaProducer,
    ) -> None:
        committing: asyncio.Task[None] | None = None
        try:
            while True:
                deliveries, poison, offsets = await parsed.get()
                await self.process_parsed(deliveries, poison, producer)
                if committing is not None and committing.done():
                    committing.result()  # a failed commit restarts the consumer (run)
                committing = asyncio.create_task(
                    self._commit_offsets(consumer, committing, offsets)
                )
        finally:
            if committing is not None:
                await asyncio.gather(committing, return_exceptions=True)

    @staticmethod
    async def _commit_offsets(
        consumer: AIOKafkaConsumer,
        before: asyncio.Task[None] | None,
        offsets: dict[TopicPartition, int],
    ) -> None:
        if before is not None:
            await before  # raises what it raised: the loop then restarts the consumer
        try:
            await consumer.commit(offsets)
        except CommitFailedError as exc:
            # A rebalance gave these partitions to another member, which reads them
            # again from the last commit; the marks make that harmless.
            log.info("offsets not committed after a rebalance", extra={"error": repr(exc)})

    async def run(self) -> None:
        """Consume until cancelled; while Kafka is unreachable, retry with backoff."""
        async with self.pool.acquire() as conn:
            await checkpoints.ensure(conn, self.applier.names)
        failures = 0
        try:
            while True:
                consumer = AIOKafkaConsumer(
                    topics.INTERACTIONS,
                    bootstrap_servers=self.bootstrap,
                    group_id=self.group,
                    client_id=self.member,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    max_poll_records=self.batch_size,
                )
                producer = new_producer(self.bootstrap)
                try:
                    await ensure_topics(self.bootstrap)
                    await producer.start()
                    await consumer.start()
                    failures = 0
                    await self._consume(consumer, producer)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures += 1
                    log.warning(
                        "consumer cannot run; will retry",
                        extra={"error": repr(exc), "attempt": failures},
                    )
                    await self.report(None, f"retrying: {type(exc).__name__}", repr(exc))
                    await asyncio.sleep(retry.wait_after(failures))
                finally:
                    await stop_quietly(consumer, producer)
        finally:
            try:
                async with asyncio.timeout(2), self.pool.acquire() as conn:
                    await conn.execute(LEAVE_SQL, self.member)
            except Exception as exc:
                log.debug("consumer row not removed: %r", exc)
