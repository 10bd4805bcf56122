"""Events no projection could apply, in the audit trail: the store followers skip them
after they fail alone, and the Kafka consumers park them on the DLQ as well."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
import orjson

DEAD_LETTERED_SQL = """
INSERT INTO audit_events (event_id, stage, position, user_id, event_type, detail)
VALUES ($1, 'dead_lettered', $2, $3, $4, $5::jsonb)
ON CONFLICT DO NOTHING
"""


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:2000]


async def record(
    conn: asyncpg.Connection,
    event_id: UUID,
    position: int,
    user_id: str,
    event_type: str,
    detail: dict[str, Any],
) -> None:
    """One row per event (or message), however often it fails."""
    await conn.execute(
        DEAD_LETTERED_SQL, event_id, position, user_id, event_type, orjson.dumps(detail).decode()
    )
