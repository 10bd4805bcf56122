"""Appending to the event store: a whole group of requests in one call, one transaction.

The decisions (stream versions, duplicates, conflicts) are made inside PostgreSQL by
`append_interaction_events` (schema/migrations/0001_event_store.sql), after it holds a
lock per stream: one round trip per group, and correct across processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from command_side.new_events import NewEvent

APPEND_SQL = "SELECT * FROM append_interaction_events($1, $2, $3, $4, $5, $6, $7, $8, $9)"


@dataclass(frozen=True, slots=True)
class AppendResult:
    event_id: UUID
    position: int | None
    stream_version: int | None
    outcome: str  # accepted | duplicate | conflict | rejected


async def append_group(
    conn: asyncpg.Connection, requests: Sequence[Sequence[NewEvent]]
) -> list[list[AppendResult]]:
    """Append the requests' events (event ids unique across the group); answers come
    back after the commit. A request with an event id already used for another body is
    refused whole."""
    rows = [(number, event) for number, events in enumerate(requests) for event in events]
    records = await conn.fetch(
        APPEND_SQL,
        [number for number, _ in rows],
        [e.event_id for _, e in rows],
        [e.user_id for _, e in rows],
        [e.event_type for _, e in rows],
        [e.topic for _, e in rows],
        [e.schema_version for _, e in rows],
        [e.state for _, e in rows],
        [e.body_hash for _, e in rows],
        [e.occurred_at for _, e in rows],
    )
    answers: list[list[AppendResult]] = [[] for _ in requests]
    for (number, event), record in zip(rows, records, strict=True):
        answers[number].append(
            AppendResult(
                event.event_id, record["position"], record["stream_version"], record["outcome"]
            )
        )
    return answers
