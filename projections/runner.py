"""Running a projection: follow the store, apply batches, checkpoint in the same transaction.

Each batch is one transaction holding the projection's advisory lock: it reads the
checkpoint, the next committed events after it, writes the read-model changes, the audit
trail and the new checkpoint, and commits. A crash anywhere leaves either all of a
batch's effects or none, so a restarted projector neither loses nor doubles anything.
Several processes may run the same projection; the lock makes them take turns. Kafka
consumers (kafka_consumer) may apply events too: each batch here skips what their
applied-stream marks say is in already.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from projections import dead_letters
from projections.applied_streams import load_marks, not_applied, raise_marks
from projections.projection import Batch, Changes, Projection
from projections.store_feed import UNAVAILABLE_ERRORS, Checkpoint, StoredRecord, read_after

log = logging.getLogger("cinemate.projections")

# A batch failing this often for a reason other than an unreachable database is
# searched for the event that fails alone.
POISON_AFTER_FAILURES = 3

CHECKPOINT_SQL = (
    "SELECT tx_id::text::bigint AS tx, position FROM projection_checkpoints WHERE name = $1"
)
ENSURE_CHECKPOINT_SQL = """
INSERT INTO projection_checkpoints (name, state) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING
"""
SAVE_CHECKPOINT_SQL = """
UPDATE projection_checkpoints
SET tx_id = $2::text::xid8, position = $3, updated_at = now(), heartbeat_at = now()
WHERE name = $1
"""
HEARTBEAT_SQL = "UPDATE projection_checkpoints SET heartbeat_at = now() WHERE name = ANY($1)"
AUDIT_BATCH_SQL = """
INSERT INTO audit_batches
    (stage, actor, first_tx_id, first_position, last_tx_id, last_position, events)
VALUES ('projected', $1, $2::text::xid8, $3, $4::text::xid8, $5, $6)
"""


def lock_key(name: str) -> str:
    return f"projection:{name}"


async def lock_projection(conn: asyncpg.Connection, *names: str) -> None:
    """Take the projections' turn for this transaction (locks in one order, so two
    processes never deadlock), and commit without waiting for the WAL flush: a read
    model and its checkpoint are lost or kept together, so after a crash the events are
    simply projected again. Only acknowledged events need synchronous durability, and
    those live in the store."""
    await conn.execute(
        "SELECT set_config('synchronous_commit', 'off', true),"
        " pg_advisory_xact_lock(hashtextextended(k, 0))"
        " FROM unnest($1::text[]) AS k ORDER BY k",
        sorted(lock_key(name) for name in names),
    )


async def take_locks(conn: asyncpg.Connection, keys: Sequence[str]) -> None:
    """This transaction's advisory locks, taken in one order so holders never deadlock."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(k, 0))"
        " FROM unnest($1::text[]) AS k ORDER BY k",
        sorted(keys),
    )


async def load_checkpoint(conn: asyncpg.Connection, name: str) -> Checkpoint:
    row = await conn.fetchrow(CHECKPOINT_SQL, name)
    return Checkpoint(row["tx"], row["position"]) if row else Checkpoint()


async def save_checkpoint(conn: asyncpg.Connection, name: str, checkpoint: Checkpoint) -> None:
    await conn.execute(SAVE_CHECKPOINT_SQL, name, str(checkpoint.tx_id), checkpoint.position)


@dataclass(frozen=True)
class Target:
    """Where a projector writes: the live tables and checkpoint, or a rebuild's shadows."""

    checkpoint: str
    tables: Mapping[str, str]
    live: bool

    @classmethod
    def live_of(cls, projection: Projection) -> Target:
        return cls(projection.name, {t: t for t in projection.tables}, live=True)

    @staticmethod
    def shadow_name(name: str) -> str:
        return f"{name}__rebuild"

    @classmethod
    def shadow_of(cls, projection: Projection) -> Target:
        return cls(
            cls.shadow_name(projection.name),
            {t: f"{t}__rebuild" for t in projection.tables},
            live=False,
        )


async def apply_records(
    conn: asyncpg.Connection,
    projection: Projection,
    target: Target,
    records: Sequence[StoredRecord],
    *,
    fresh: Container[UUID] | None = None,
) -> Changes:
    """Inside the caller's transaction (holding the projection's lock): apply the records
    (only those in `fresh`, when given) and move the target's checkpoint past all of them."""
    if not records:
        return Changes()
    applying = records if fresh is None else [r for r in records if r.event_id in fresh]
    changes = (
        await projection.apply(conn, Batch.of(applying), target.tables, defer=not target.live)
        if applying
        else Changes()
    )
    first, last = records[0].checkpoint, records[-1].checkpoint
    if target.live:
        await conn.execute(
            AUDIT_BATCH_SQL,
            projection.name,
            str(first.tx_id),
            first.position,
            str(last.tx_id),
            last.position,
            len(records),
        )
    await save_checkpoint(conn, target.checkpoint, last)
    return changes


async def apply_next_batch(
    conn: asyncpg.Connection, projection: Projection, target: Target, limit: int
) -> tuple[int, Changes]:
    """Inside the caller's transaction (which holds the projection lock): one batch."""
    checkpoint = await load_checkpoint(conn, target.checkpoint)
    records = await read_after(conn, checkpoint, limit)
    return len(records), await apply_records(conn, projection, target, records)


class Projector:
    """Keeps projections up to date with the store: one read per batch serves them all,
    and each applies the records past its own checkpoint (they differ after a rebuild)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        projections: Sequence[Projection],
        *,
        batch_size: int = 1000,
        min_interval: float = 0.02,
    ) -> None:
        self.pool = pool
        self.projections = list(projections)
        self.batch_size = batch_size
        # Under a steady stream, waking for every commit would make many tiny batches;
        # waiting a little between them makes fewer, larger ones at a small cost in lag.
        self.min_interval = min_interval
        self.targets = [Target.live_of(p) for p in self.projections]

    async def _apply_next(
        self, conn: asyncpg.Connection, limit: int
    ) -> tuple[list[StoredRecord], list[Changes]]:
        """Inside the caller's transaction: the next batch, applied and checkpointed."""
        await lock_projection(conn, *[p.name for p in self.projections])
        checkpoints = [await load_checkpoint(conn, t.checkpoint) for t in self.targets]
        records = await read_after(conn, min(checkpoints), limit)
        # A Kafka consumer may have applied some already. (This side need not raise the
        # marks: consumers also skip what a projection's checkpoint covers.)
        fresh = not_applied(records, await load_marks(conn, records))
        fresh_ids = {r.event_id for r in fresh}
        changes = [
            await apply_records(
                conn,
                projection,
                target,
                [r for r in records if r.checkpoint > mark],
                fresh=fresh_ids,
            )
            for projection, target, mark in zip(
                self.projections, self.targets, checkpoints, strict=True
            )
        ]
        return records, changes

    async def step(self, limit: int | None = None) -> int:
        """One batch, committed. Returns how many events it read."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                records, changes = await self._apply_next(conn, limit or self.batch_size)
            await self._after_commit(conn, records, changes)
        return len(records)

    async def _after_commit(
        self, conn: asyncpg.Connection, records: Sequence[StoredRecord], changes: list[Changes]
    ) -> None:
        if records:
            for projection, changed in zip(self.projections, changes, strict=True):
                await projection.after_commit(changed)
        else:
            await conn.execute(HEARTBEAT_SQL, [p.name for p in self.projections])

    async def isolate(self) -> None:
        """A batch keeps failing, and not for want of a database: go through it one event
        at a time, and dead-letter the first event that fails alone. One bad event (say,
        stored before validation got stricter) must not stop every read model."""
        for _ in range(self.batch_size):
            try:
                if not await self.step(limit=1):
                    return
            except UNAVAILABLE_ERRORS:
                raise
            except Exception as exc:
                await self.skip_next(exc)
                return

    async def skip_next(self, error: Exception) -> None:
        """Move every checkpoint past the next event, applied by none of the projections
        (so they stay consistent with each other), and say so in the audit trail; but
        only together with the event after it applying cleanly. When that one fails as
        well the fault is not in the event (a bug, a broken table), and skipping would
        eat the stream one event at a time: nothing is skipped then."""
        names = [p.name for p in self.projections]
        try:
            async with self.pool.acquire() as conn:
                async with conn.transaction():
                    await lock_projection(conn, *names)
                    checkpoints = [await load_checkpoint(conn, t.checkpoint) for t in self.targets]
                    records = await read_after(conn, min(checkpoints), 2)
                    if len(records) < 2:
                        return  # nothing to tell a bad event from a broken projection
                    poison = records[0]
                    for target, mark in zip(self.targets, checkpoints, strict=True):
                        if poison.checkpoint > mark:
                            await save_checkpoint(conn, target.checkpoint, poison.checkpoint)
                    await raise_marks(conn, [poison])  # Kafka consumers need not try it
                    detail = {"applier": "store", "error": dead_letters.describe(error)}
                    await dead_letters.record(
                        conn,
                        poison.event_id,
                        poison.position,
                        poison.user_id,
                        poison.event_type,
                        detail,
                    )
                    following, changes = await self._apply_next(conn, 1)
                await self._after_commit(conn, following, changes)
        except UNAVAILABLE_ERRORS:
            raise
        except Exception as exc:
            log.error(
                "projections fail on consecutive events; not skipping any",
                extra={"error": repr(exc), "first_error": repr(error)},
            )
            return
        log.error(
            "event dead-lettered: it fails alone",
            extra={"event_id": str(poison.event_id), "position": poison.position, **detail},
        )

    async def run(self, wake: asyncio.Event, idle_seconds: float = 1.0) -> None:
        async with self.pool.acquire() as conn:
            for target in self.targets:
                await conn.execute(ENSURE_CHECKPOINT_SQL, target.checkpoint, "running")
        failures = 0
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                while await self.step() >= self.batch_size:
                    started = loop.time()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning(
                    "projection batch failed; retrying",
                    extra={"projections": [p.name for p in self.projections], "error": repr(exc)},
                )
                await asyncio.sleep(min(5.0, 0.1 * 2**failures))
                if failures >= POISON_AFTER_FAILURES and not isinstance(exc, UNAVAILABLE_ERRORS):
                    try:
                        await self.isolate()
                    except Exception as isolating:
                        log.warning("isolating a failing batch failed: %r", isolating)
                continue
            await asyncio.sleep(max(0.0, started + self.min_interval - loop.time()))
            if wake.is_set():
                wake.clear()
                continue
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that lands as the timeout fires, and the projector would never stop.
            try:
                async with asyncio.timeout(idle_seconds):
                    await wake.wait()
            except TimeoutError:
                pass
            wake.clear()


class StoreListener:
    """One LISTEN connection that wakes every projector when events commit."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.events: list[asyncio.Event] = []
        self._conn: asyncpg.Connection | None = None

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        self.events.append(event)
        return event

    def _notify(self, *_: object) -> None:
        for event in self.events:
            event.set()

    async def run(self) -> None:
        """Listen, reconnecting after failures; projectors also poll, so a gap only adds latency."""
        while True:
            try:
                closed = asyncio.Event()
                self._conn = await asyncpg.connect(self.database_url)
                self._conn.add_termination_listener(lambda _, done=closed: done.set())
                await self._conn.add_listener("interaction_events", self._notify)
                self._notify()
                await closed.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("store listener reconnecting", extra={"error": repr(exc)})
                await asyncio.sleep(1.0)
            finally:
                if self._conn is not None and not self._conn.is_closed():
                    await self._conn.close()
