"""A user's stream, read straight from the event store and decoded (upcast) by the mapper."""

from __future__ import annotations

from typing import Any

import asyncpg

from schema import events

PAGE_SQL = """
SELECT event_id, event_type, topic, schema_version, originator_version, position,
       occurred_at, recorded_at, payload::text AS state
FROM interaction_events
WHERE originator_id = $1 AND originator_version > $2
ORDER BY originator_version
LIMIT $3
"""


async def read_stream_page(
    pool: asyncpg.Pool, user_id: str, after: int, limit: int
) -> list[dict[str, Any]] | None:
    """Up to `limit` events after stream version `after`, oldest first; None if no stream."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(PAGE_SQL, user_id, after, limit)
        if not rows and not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM interaction_events WHERE originator_id = $1)", user_id
        ):
            return None
    return [
        {
            "event_id": str(row["event_id"]),
            "type": row["event_type"],
            "schema_version": row["schema_version"],
            "stream_version": row["originator_version"],
            "position": row["position"],
            "occurred_at": row["occurred_at"],
            "recorded_at": row["recorded_at"],
            "payload": events.payload_of(
                events.decode(
                    user_id, row["originator_version"], row["topic"], row["state"].encode()
                )
            ),
        }
        for row in rows
    ]
