"""Following the event store in commit-safe order.

Positions are taken at insert, not at commit, so position 101 can be visible before 100.
A reader therefore orders by (tx_id, position) and takes only rows whose transaction id
is below the oldest transaction still running: everything below that line has either
committed or rolled back, so nothing can appear behind the reader later.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

import asyncpg

from schema import events

# Errors that mean "the store cannot be reached", as opposed to a bug or bad data.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    # A connection cut mid-operation can leave asyncpg's protocol in a state it reports
    # this way; the outcome is unknown, so the client retries with the same event id.
    asyncpg.InternalClientError,
)


@dataclass(frozen=True, order=True, slots=True)
class Checkpoint:
    tx_id: int = 0
    position: int = 0


@dataclass(frozen=True, slots=True)
class StoredRecord:
    position: int
    tx_id: int
    event_id: UUID
    user_id: str
    stream_version: int
    event_type: str
    topic: str
    schema_version: int
    state: bytes
    occurred_at: datetime
    recorded_at: datetime
    # Already decoded where the record was made (a Kafka message is checked by decoding it).
    decoded: events.InteractionEvent | None = field(default=None, compare=False, repr=False)

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.tx_id, self.position)

    def decode(self) -> events.InteractionEvent:
        """Decoded once for all projectors in this process: an event id names one event
        forever (positions do not: another database has its own)."""
        if self.decoded is not None:
            return self.decoded
        event = _decoded.get(self.event_id)
        if event is None:
            event = events.decode(self.user_id, self.stream_version, self.topic, self.state)
            if len(_decoded) >= _DECODED_LIMIT:
                # Oldest first: dicts keep insertion order, and followers move forward.
                for stale in list(itertools.islice(_decoded, _DECODED_LIMIT // 4)):
                    del _decoded[stale]
            _decoded[self.event_id] = event
        return event


_DECODED_LIMIT = 50_000
_decoded: dict[UUID, events.InteractionEvent] = {}


READ_SQL = """
SELECT position, tx_id::text::bigint AS tx, event_id, originator_id, originator_version,
       event_type, topic, schema_version, payload::text AS state, occurred_at, recorded_at
FROM interaction_events
WHERE (tx_id, position) > ($1::text::xid8, $2)
  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY tx_id, position
LIMIT $3
"""


async def read_after(conn: asyncpg.Connection, after: Checkpoint, limit: int) -> list[StoredRecord]:
    """The next committed events after `after`, never skipping one that commits later."""
    rows = await conn.fetch(READ_SQL, str(after.tx_id), after.position, limit)
    return [
        StoredRecord(
            position=row["position"],
            tx_id=row["tx"],
            event_id=row["event_id"],
            user_id=row["originator_id"],
            stream_version=row["originator_version"],
            event_type=row["event_type"],
            topic=row["topic"],
            schema_version=row["schema_version"],
            state=row["state"].encode(),
            occurred_at=row["occurred_at"],
            recorded_at=row["recorded_at"],
        )
        for row in rows
    ]
