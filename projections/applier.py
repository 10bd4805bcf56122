"""The one batch applier: store followers, Kafka consumers and rebuilds apply through it.

A batch is applied inside the caller's transaction, under the projections' advisory
locks (taken in one order, so appliers in several processes take turns and never
deadlock). Each projection gets the records past its own checkpoint (they differ after a
rebuild), and, for live tables, only those past their user's applied-stream mark: an
event some other applier has put in already changes nothing. The caller then either
moves the checkpoints over the batch (a store follower: the batch is a stretch of the
store) or raises the marks (a Kafka consumer: the batch is whatever the partitions
delivered). Read models, marks and checkpoints commit together, so a crash keeps all of
a batch or none of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from event_store import columns, locks
from event_store.feed import Checkpoint, StoredRecord, Stretch
from projections import checkpoints
from projections.projection import Batch, Changes, Projection

# Applied-stream marks: per user, the highest stream version the read models hold.
# Kafka consumers raise them in the transaction that applies a batch and skip events at
# or below them, so a redelivered or republished message changes nothing; store
# followers skip them too and record their own progress as checkpoints, which consumers
# skip as well. Each user's events reach every applier in stream order (the store by
# version, Kafka by partition), so a mark never passes an event not yet applied.
LOAD_SQL = (
    "SELECT user_id, stream_version FROM applied_streams"
    " WHERE user_id = ANY(string_to_array($1, chr(31)))"
)
RAISE_SQL = """
INSERT INTO applied_streams AS a (user_id, stream_version)
SELECT * FROM unnest(string_to_array($1, chr(31)), string_to_array($2, chr(31))::integer[])
ON CONFLICT (user_id) DO UPDATE SET stream_version = excluded.stream_version
WHERE a.stream_version < excluded.stream_version
"""


def not_applied(records: Sequence[StoredRecord], marks: dict[str, int]) -> list[StoredRecord]:
    """The records past their user's mark, once each (a batch may hold one twice)."""
    marks = dict(marks)
    fresh = []
    for record in records:
        if record.stream_version > marks.get(record.user_id, 0):
            marks[record.user_id] = record.stream_version
            fresh.append(record)
    return fresh


async def load_marks(conn: asyncpg.Connection, records: Sequence[StoredRecord]) -> dict[str, int]:
    users = sorted({r.user_id for r in records})
    return {
        row["user_id"]: row["stream_version"]
        for row in await conn.fetch(LOAD_SQL, columns.texts(users))
    }


async def raise_marks(conn: asyncpg.Connection, records: Sequence[StoredRecord]) -> None:
    top: dict[str, int] = {}
    for record in records:
        top[record.user_id] = max(top.get(record.user_id, 0), record.stream_version)
    users = sorted(top)
    if users:
        await conn.execute(
            RAISE_SQL, columns.texts(users), columns.numbers([top[u] for u in users])
        )


# A batch's statements take arrays whose length changes with every batch, so PostgreSQL
# plans each of them anew for every batch (a custom plan). For the small batches a
# steady stream of single POSTs makes, planning cost more than running: with generic
# plans the worker's PostgreSQL backend spent 75-79 us per event instead of 106-121 at
# 3,000 POSTs/s. For catch-up batches (1,000 events) plans made for their arrays are
# cheaper (generic ones cost PostgreSQL 7-12% more per event, paired runs).
#
# A generic plan is made once per connection, for the tables as they are then, and kept
# until PostgreSQL next analyzes them. Made while user_items was empty (a fresh service),
# the item lookup joined the batch's keys by hashing them and reading the whole table:
# 12.6 ms a batch at 37,000 rows, growing with the table, where the index took 0.4 ms.
# Every statement of a batch looks rows up by key, so the joins run as nested loops over
# the batch's keys, whatever size the tables were when they were planned.
GENERIC_PLANS_UP_TO = 200
GENERIC_PLANS_SQL = (
    "SELECT set_config('plan_cache_mode', 'force_generic_plan', true),"
    " set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)"
)

AUDIT_BATCHES_SQL = """
INSERT INTO audit_batches
    (stage, actor, first_tx_id, first_position, last_tx_id, last_position, events)
SELECT 'projected', a.actor, a.first_tx::xid8, a.first_position, a.last_tx::xid8,
       a.last_position, a.events
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::integer[])
     AS a(actor, first_tx, first_position, last_tx, last_position, events)
"""


@dataclass(frozen=True)
class Target:
    """Where a projection writes: its live tables and checkpoint, or a rebuild's shadows."""

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


@dataclass(frozen=True, slots=True)
class Applied:
    """What one batch did: the records put in (past their marks), and per projection the
    changes for `after_commit`."""

    fresh: list[StoredRecord]
    changes: list[Changes]


class Applier:
    def __init__(
        self,
        projections: Sequence[Projection],
        targets: Sequence[Target] | None = None,
        *,
        durable: bool = False,
    ) -> None:
        """`durable`: each batch's commit waits for the WAL flush (see
        locks.lock_projections), for callers that report the commit outside PostgreSQL."""
        self.projections = list(projections)
        self.durable = durable
        self.targets = (
            list(targets) if targets is not None else [Target.live_of(p) for p in projections]
        )
        self.names = [p.name for p in self.projections]
        self.live = all(t.live for t in self.targets)

    async def begin(self, conn: asyncpg.Connection) -> list[Checkpoint]:
        """Inside the caller's transaction: take the projections' turn (live tables; a
        rebuild's shadows have one writer, and its swap takes the live lock); their
        checkpoints. Unless `durable`, the commit need not wait for the WAL flush."""
        if self.live:
            await locks.lock_projections(conn, self.names, durable=self.durable)
        else:
            await conn.execute("SELECT set_config('synchronous_commit', 'off', true)")
        return await checkpoints.load(conn, [t.checkpoint for t in self.targets])

    async def apply(
        self,
        conn: asyncpg.Connection,
        records: Sequence[StoredRecord],
        marks_from: Sequence[Checkpoint],
    ) -> Applied:
        """Apply each projection the records past its checkpoint in `marks_from`. Live
        tables skip what the applied-stream marks hold; a rebuild's shadows take all."""
        if len(records) <= GENERIC_PLANS_UP_TO:
            await conn.execute(GENERIC_PLANS_SQL)
        fresh = (
            not_applied(records, await load_marks(conn, records)) if self.live else list(records)
        )
        # Decoded once for every projection (they mostly take the same records).
        decoded = [r.decode() for r in fresh]
        places = [r.checkpoint for r in fresh]
        first = min(places, default=None)
        changes = []
        for projection, target, mark in zip(
            self.projections, self.targets, marks_from, strict=True
        ):
            if first is not None and first > mark:  # the common case: every record is past
                batch = Batch(fresh, decoded)
            else:
                mine = [i for i, place in enumerate(places) if place > mark]
                batch = Batch([fresh[i] for i in mine], [decoded[i] for i in mine])
            changes.append(
                await projection.apply(conn, batch, target.tables, defer=not target.live)
                if batch.records
                else Changes()
            )
        return Applied(fresh, changes)

    async def advance(
        self,
        conn: asyncpg.Connection,
        records: Sequence[StoredRecord],
        marks_from: Sequence[Checkpoint],
    ) -> None:
        """Move each checkpoint over the records (a stretch of the store, in its order)."""
        places = [r.checkpoint for r in records]
        stretches: list[Stretch | None] = []
        for mark in marks_from:
            mine = [place for place in places if place > mark]
            stretches.append(Stretch(mine[0], mine[-1], len(mine)) if mine else None)
        await self.advance_over(conn, stretches)

    async def advance_over(
        self, conn: asyncpg.Connection, stretches: Sequence[Stretch | None]
    ) -> None:
        """Move each target's checkpoint to the end of its stretch of the store (None:
        it stays) and note the stretch in the audit trail of each live projection (an
        event's "projected" stage): two statements for all of them."""
        moved: dict[str, Checkpoint] = {}
        noted: list[tuple[str, Stretch]] = []
        for target, stretch in zip(self.targets, stretches, strict=True):
            if stretch is None:
                continue
            moved[target.checkpoint] = stretch.last
            if target.live:
                noted.append((target.checkpoint, stretch))
        if noted:
            await conn.execute(
                AUDIT_BATCHES_SQL,
                [name for name, _ in noted],
                [str(s.first.tx_id) for _, s in noted],
                [s.first.position for _, s in noted],
                [str(s.last.tx_id) for _, s in noted],
                [s.last.position for _, s in noted],
                [s.events for _, s in noted],
            )
        await checkpoints.save_all(conn, moved)

    async def mark(self, conn: asyncpg.Connection, applied: Applied) -> None:
        """Raise the applied-stream marks over what the batch put in (Kafka consumers:
        a redelivery or a republished message then changes nothing)."""
        await raise_marks(conn, applied.fresh)

    async def after_commit(self, applied: Applied) -> None:
        for projection, changed in zip(self.projections, applied.changes, strict=True):
            await projection.after_commit(changed)
