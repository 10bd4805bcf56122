"""Following the event store in commit-safe order: what store followers, the relay and
Kafka consumers read.

Positions are taken at insert, not at commit, so position 101 can be visible before 100.
A reader therefore orders by (tx_id, position) and takes only rows whose transaction id
is below the oldest transaction still running: everything below that line has either
committed or rolled back, so nothing can appear behind the reader later.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

import asyncpg

import event_store
from schema import events

log = logging.getLogger("cinemate.event_store")


class Checkpoint(NamedTuple):
    """A place in the store's (tx_id, position) order. A named tuple: it orders and
    compares in C, made and compared for every record of a batch by every projection."""

    tx_id: int = 0
    position: int = 0


class StoredRecord(NamedTuple):
    """One committed event as followers read it. A named tuple, made from each row in
    0.6 us, where a frozen dataclass's generated `__init__` took 2.5 us (8% of a
    user_features replay, py-spy). The event's own time is its decoded `timestamp`; no
    reader needs the row's `occurred_at` beside it."""

    position: int
    tx_id: int
    event_id: UUID
    user_id: str
    stream_version: int
    event_type: str
    topic: str
    schema_version: int
    state: bytes
    recorded_at: datetime
    # Already decoded where the record was made (a Kafka message is checked by decoding it).
    decoded: events.InteractionEvent | None = None

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


# Enough for the readers of one process that move together (the follower and the relay
# near the head of the store, a rebuild's batch): each decoded event outlives young
# collections, and many of them made the collector's full passes frequent and long.
_DECODED_LIMIT = 5_000
_decoded: dict[UUID, events.InteractionEvent] = {}


# The columns in StoredRecord's field order, the payload as the bytes it is decoded from:
# each row becomes a record by position (a replay reads every row of the store).
READ_SQL = """
SELECT position, tx_id::text::bigint AS tx, event_id, originator_id, originator_version,
       event_type, topic, schema_version, convert_to(payload::text, 'UTF8') AS state,
       recorded_at
FROM interaction_events
WHERE (tx_id, position) > ($1::text::xid8, $2)
  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY tx_id, position
LIMIT $3
"""


async def read_after(conn: asyncpg.Connection, after: Checkpoint, limit: int) -> list[StoredRecord]:
    """The next committed events after `after`, never skipping one that commits later."""
    rows = await conn.fetch(READ_SQL, str(after.tx_id), after.position, limit)
    return [StoredRecord(*row) for row in rows]


# By position (the primary key): one array to send, not four; the match is checked on the
# rows that come back.
IN_STORE_SQL = """
SELECT position, event_id, originator_id, originator_version
FROM interaction_events WHERE position = ANY($1::bigint[])
"""


async def held_in_store(conn: asyncpg.Connection, records: Sequence[StoredRecord]) -> set[UUID]:
    """The ids of the records the store holds as they are (same id, stream, version and
    position): a message on a topic is applied only if the store still has that event."""
    rows = {
        row["position"]: row
        for row in await conn.fetch(IN_STORE_SQL, [r.position for r in records])
    }
    held = set()
    for record in records:
        row = rows.get(record.position)
        if (
            row is not None
            and row["event_id"] == record.event_id
            and row["originator_id"] == record.user_id
            and row["originator_version"] == record.stream_version
        ):
            held.add(record.event_id)
    return held


# The next committed events (in store order) as far as every one is at or below its
# user's applied mark: the first and last of them and how many. `all_applied` holds for
# a prefix only (once false it stays false), so its last row ends the stretch.
COVERED_SQL = """
SELECT first_tx, first_position, tx, position, events
FROM (
    SELECT e.tx_id::text::bigint AS tx, e.position,
           bool_and(e.originator_version <= coalesce(a.stream_version, 0)) OVER w AS all_applied,
           row_number() OVER w AS events,
           first_value(e.tx_id::text::bigint) OVER w AS first_tx,
           first_value(e.position) OVER w AS first_position
    FROM (
        SELECT tx_id, position, originator_id, originator_version
        FROM interaction_events
        WHERE (tx_id, position) > ($1::text::xid8, $2)
          AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
        ORDER BY tx_id, position
        LIMIT $3
    ) AS e
    LEFT JOIN applied_streams AS a ON a.user_id = e.originator_id
    WINDOW w AS (ORDER BY e.tx_id, e.position)
) AS prefix
WHERE all_applied
ORDER BY tx DESC, position DESC
LIMIT 1
"""


class Stretch(NamedTuple):
    """Consecutive events of the store: the first, the last, how many."""

    first: Checkpoint
    last: Checkpoint
    events: int


async def covered_by_marks(
    conn: asyncpg.Connection, after: Checkpoint, limit: int
) -> Stretch | None:
    """The stretch past `after` (at most `limit` events) in which every committed event is
    already at or below its user's applied-stream mark; None if not even the next one is."""
    row = await conn.fetchrow(COVERED_SQL, str(after.tx_id), after.position, limit)
    if row is None:
        return None
    return Stretch(
        Checkpoint(row["first_tx"], row["first_position"]),
        Checkpoint(row["tx"], row["position"]),
        row["events"],
    )


# The audit trail's "stored" row of each event of a stretch of the store, first to last
# inclusive, copied by PostgreSQL from the store's own columns (a rebuild's shadow table:
# no row of it can conflict).
AUDIT_COPY_SQL = """
INSERT INTO {table} (event_id, stage, position, user_id, event_type, at)
SELECT event_id, 'stored', position, originator_id, event_type, recorded_at
FROM interaction_events
WHERE (tx_id, position) >= ($1::text::xid8, $2) AND (tx_id, position) <= ($3::text::xid8, $4)
"""


async def copy_audit_rows(
    conn: asyncpg.Connection, table: str, first: Checkpoint, last: Checkpoint
) -> None:
    """Insert into `table` the audit row of every event from `first` to `last`."""
    await conn.execute(
        AUDIT_COPY_SQL.format(table=table),
        str(first.tx_id),
        first.position,
        str(last.tx_id),
        last.position,
    )


# The commit listener: one LISTEN connection per process wakes every follower. Appenders
# notify the channel after their commits (append.Waker); followers also poll, so a notice
# lost while reconnecting only adds latency, never a skipped event.
CHANNEL = event_store.NAME


async def woken(wake: asyncio.Event, idle_seconds: float) -> None:
    """Until the listener says events committed, or `idle_seconds` (the poll that
    covers a lost notice); the flag is cleared for the next wait."""
    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
    # lands as the timeout fires, and the waiter would never stop.
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
                await self._conn.add_listener(CHANNEL, self._notify)
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
