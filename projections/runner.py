"""Running a projection: follow the store, apply batches, checkpoint in the same transaction.

Each batch is one transaction holding the projection's advisory lock: it reads the
checkpoint, the next committed events after it, writes the read-model changes, the audit
trail and the new checkpoint, and commits. A crash anywhere leaves either all of a
batch's effects or none, so a restarted projector neither loses nor doubles anything.
Several processes may run the same projection; the lock makes them take turns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg

from projections.projection import Batch, Changes, Projection
from projections.store_feed import Checkpoint, read_after

log = logging.getLogger("cinemate.projections")

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
HEARTBEAT_SQL = "UPDATE projection_checkpoints SET heartbeat_at = now() WHERE name = $1"
AUDIT_PROJECTED_SQL = """
INSERT INTO audit_events (event_id, stage, projection, position, user_id, event_type)
SELECT e, 'projected', $6, p, u, t
FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[]) AS x(e, p, u, t)
WHERE $5
ON CONFLICT DO NOTHING
"""


def lock_key(name: str) -> str:
    return f"projection:{name}"


async def lock_projection(conn: asyncpg.Connection, name: str) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", lock_key(name))


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

    @classmethod
    def shadow_of(cls, projection: Projection) -> Target:
        return cls(
            f"{projection.name}__rebuild",
            {t: f"{t}__rebuild" for t in projection.tables},
            live=False,
        )


async def apply_next_batch(
    conn: asyncpg.Connection, projection: Projection, target: Target, limit: int
) -> tuple[int, Changes]:
    """Inside the caller's transaction (which holds the projection lock): one batch."""
    checkpoint = await load_checkpoint(conn, target.checkpoint)
    records = await read_after(conn, checkpoint, limit)
    if not records:
        return 0, Changes()
    batch = Batch(records, [r.decode() for r in records])
    changes = await projection.apply(conn, batch, target.tables)
    await conn.execute(
        AUDIT_PROJECTED_SQL,
        [r.event_id for r in records],
        [r.position for r in records],
        [r.user_id for r in records],
        [r.event_type for r in records],
        target.live and projection.name != "audit",
        projection.name,
    )
    await save_checkpoint(conn, target.checkpoint, records[-1].checkpoint)
    return len(records), changes


class Projector:
    """Keeps one projection up to date with the store."""

    def __init__(
        self, pool: asyncpg.Pool, projection: Projection, *, batch_size: int = 1000
    ) -> None:
        self.pool = pool
        self.projection = projection
        self.batch_size = batch_size
        self.target = Target.live_of(projection)

    async def step(self) -> int:
        """One batch, committed. Returns how many events it applied."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                await lock_projection(conn, self.projection.name)
                applied, changes = await apply_next_batch(
                    conn, self.projection, self.target, self.batch_size
                )
            if applied:
                await self.projection.after_commit(changes)
            else:
                await conn.execute(HEARTBEAT_SQL, self.target.checkpoint)
        return applied

    async def run(self, wake: asyncio.Event, idle_seconds: float = 1.0) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(ENSURE_CHECKPOINT_SQL, self.target.checkpoint, "running")
        failures = 0
        while True:
            try:
                while await self.step() >= self.batch_size:
                    pass
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning(
                    "projection batch failed; retrying",
                    extra={"projection": self.projection.name, "error": repr(exc)},
                )
                await asyncio.sleep(min(5.0, 0.1 * 2**failures))
                continue
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), idle_seconds)
            except TimeoutError:
                pass


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
