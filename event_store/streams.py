"""Per-user streams: read a page, read all of it, erase it; and the whole store in order.

Rows are decoded (and upcast) by eventsourcing's mapper on the way out, so no caller
sees a stored schema version older than the current event class.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

import asyncpg

from event_store import locks
from schema import events


@dataclass(frozen=True, slots=True)
class StreamEvent:
    event_id: UUID
    event_type: str
    schema_version: int
    stream_version: int
    position: int
    occurred_at: datetime
    recorded_at: datetime
    event: events.InteractionEvent


PAGE_SQL = """
SELECT event_id, event_type, topic, schema_version, originator_version, position,
       occurred_at, recorded_at, payload::text AS state
FROM interaction_events
WHERE originator_id = $1 AND originator_version > $2
ORDER BY originator_version
LIMIT $3
"""
EXISTS_SQL = "SELECT EXISTS (SELECT 1 FROM interaction_events WHERE originator_id = $1)"


async def read_stream(
    conn: asyncpg.Connection, user_id: str, after: int = 0, limit: int | None = None
) -> list[StreamEvent]:
    """The user's events after stream version `after`, oldest first."""
    rows = await conn.fetch(PAGE_SQL, user_id, after, limit)
    return [
        StreamEvent(
            event_id=row["event_id"],
            event_type=row["event_type"],
            schema_version=row["schema_version"],
            stream_version=row["originator_version"],
            position=row["position"],
            occurred_at=row["occurred_at"],
            recorded_at=row["recorded_at"],
            event=events.decode(
                user_id, row["originator_version"], row["topic"], row["state"].encode()
            ),
        )
        for row in rows
    ]


async def stream_exists(conn: asyncpg.Connection, user_id: str) -> bool:
    return bool(await conn.fetchval(EXISTS_SQL, user_id))


class ErasedEvent(NamedTuple):
    position: int
    event_id: UUID


async def erase_stream(conn: asyncpg.Connection, user_id: str) -> list[ErasedEvent]:
    """Inside the caller's transaction: delete the user's events (the one delete the
    table's trigger lets through, for the user named in a transaction-local setting)
    while holding the stream's lock, so no append to it is in flight. Returns the erased
    events; the user's next event starts a new stream at version 1."""
    await locks.take(conn, locks.LockClass.USER_STREAM, [user_id])
    await conn.execute("SELECT set_config('cinemate.forget_user', $1, true)", user_id)
    erased = await conn.fetch(
        "DELETE FROM interaction_events WHERE originator_id = $1 RETURNING position, event_id",
        user_id,
    )
    return [ErasedEvent(row["position"], row["event_id"]) for row in erased]


async def every_event(
    conn: asyncpg.Connection, skip_types: Collection[str] = ()
) -> AsyncIterator[tuple[int, events.InteractionEvent]]:
    """Every stored event in position order, with its position, inside the caller's
    transaction (a server-side cursor: the store need not fit in one fetch)."""
    cursor = conn.cursor(
        "SELECT position, originator_id, originator_version, topic, payload::text AS state "
        "FROM interaction_events WHERE event_type <> ALL($1::text[]) ORDER BY position",
        list(skip_types),
    )
    async for row in cursor:
        yield (
            row["position"],
            events.decode(
                row["originator_id"], row["originator_version"], row["topic"], row["state"].encode()
            ),
        )
