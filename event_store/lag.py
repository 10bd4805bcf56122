"""How far behind the store a follower is: events after its checkpoint, and how long the
oldest of them has waited."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from event_store.feed import Checkpoint

LAG_SQL = """
SELECT c.i,
       (SELECT count(*) FROM interaction_events AS e
        WHERE (e.tx_id, e.position) > (c.tx::text::xid8, c.pos)) AS events,
       (SELECT e.recorded_at FROM interaction_events AS e
        WHERE (e.tx_id, e.position) > (c.tx::text::xid8, c.pos)
        ORDER BY e.tx_id, e.position LIMIT 1) AS oldest
FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY AS c(tx, pos, i)
ORDER BY c.i
"""


async def lag(
    conn: asyncpg.Connection, checkpoints: Sequence[Checkpoint]
) -> list[tuple[int, datetime | None]]:
    """For each checkpoint, in order: the events past it, and when the oldest of them
    was recorded (None when there are none)."""
    rows = await conn.fetch(
        LAG_SQL, [c.tx_id for c in checkpoints], [c.position for c in checkpoints]
    )
    return [(row["events"], row["oldest"]) for row in rows]


async def store_size(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM interaction_events"))


async def count_after(conn: asyncpg.Connection, after: Checkpoint) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM interaction_events"
            " WHERE (tx_id, position) > ($1::text::xid8, $2)",
            str(after.tx_id),
            after.position,
        )
    )


async def analyze(conn: asyncpg.Connection) -> None:
    """Fresh planner statistics (after a bulk load)."""
    await conn.execute("VACUUM ANALYZE interaction_events")
