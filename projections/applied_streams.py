"""Which events the read models already hold: per user, the highest stream version applied.

Kafka consumers raise these marks in the transaction that applies a batch, under the
projections' lock, and skip events at or below them, so a redelivered or republished
message changes nothing. Store followers skip them too, and record their own progress as
the projections' checkpoints, which consumers skip as well: so store followers and Kafka
consumers can run side by side. Each user's events reach every applier in stream order
(the store by version, Kafka by partition), so a mark never passes an event that has
not been applied.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from event_store.feed import StoredRecord

LOAD_SQL = "SELECT user_id, stream_version FROM applied_streams WHERE user_id = ANY($1::text[])"
RAISE_SQL = """
INSERT INTO applied_streams AS a (user_id, stream_version)
SELECT * FROM unnest($1::text[], $2::integer[])
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
    return {row["user_id"]: row["stream_version"] for row in await conn.fetch(LOAD_SQL, users)}


async def raise_marks(conn: asyncpg.Connection, records: Sequence[StoredRecord]) -> None:
    top: dict[str, int] = {}
    for record in records:
        top[record.user_id] = max(top.get(record.user_id, 0), record.stream_version)
    users = sorted(top)
    if users:
        await conn.execute(RAISE_SQL, users, [top[u] for u in users])
