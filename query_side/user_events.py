"""A user's stream, read straight from the event store and decoded (upcast) by the mapper."""

from __future__ import annotations

from typing import Any

import asyncpg

from event_store import streams
from schema import events


async def read_stream_page(
    pool: asyncpg.Pool, user_id: str, after: int, limit: int
) -> list[dict[str, Any]] | None:
    """Up to `limit` events after stream version `after`, oldest first; None if no stream."""
    async with pool.acquire() as conn:
        page = await streams.read_stream(conn, user_id, after, limit)
        if not page and not await streams.stream_exists(conn, user_id):
            return None
    return [
        {
            "event_id": str(e.event_id),
            "type": e.event_type,
            "schema_version": e.schema_version,
            "stream_version": e.stream_version,
            "position": e.position,
            "occurred_at": e.occurred_at,
            "recorded_at": e.recorded_at,
            "payload": events.payload_of(e.event),
        }
        for e in page
    ]
