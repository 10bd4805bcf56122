"""Where each projection stands: position, lag in events and seconds, state; and the
Kafka consumers and dead letters, as recorded in PostgreSQL by whichever process ran them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from event_store import lag
from event_store.feed import Checkpoint

STALE_AFTER_SECONDS = 15.0

# `rebuilding` means what a rebuild's refusal checks (projections.rebuild.running_rebuilds):
# its shadow checkpoint beat lately. A rebuild that died without cleaning up leaves the
# live row saying `rebuilding`; that alone no longer counts.
REBUILD_BEATS_SECONDS = 30

STATUS_SQL = f"""
SELECT c.name, c.tx_id::text::bigint AS tx, c.position, c.state, c.heartbeat_at,
       EXISTS (SELECT 1 FROM projection_checkpoints AS s
               WHERE s.name = c.name || '__rebuild' AND s.state = 'rebuilding'
                 AND s.heartbeat_at > now() - interval '{REBUILD_BEATS_SECONDS} seconds')
         AS rebuild_beating
FROM projection_checkpoints AS c
WHERE c.name = ANY($1::text[])
"""


async def projection_status(conn: asyncpg.Connection, names: list[str]) -> list[dict[str, Any]]:
    found = await conn.fetch(STATUS_SQL, names)
    lags = await lag.lag(conn, [Checkpoint(r["tx"], r["position"]) for r in found])
    rows = {
        r["name"]: {**dict(r), "lag_events": events, "oldest_pending": oldest}
        for r, (events, oldest) in zip(found, lags, strict=True)
    }
    now = datetime.now(UTC)
    report = []
    for name in names:
        row = rows.get(name)
        if row is None:
            report.append(
                {
                    "name": name,
                    "position": 0,
                    "lag_events": None,
                    "lag_seconds": None,
                    "state": "stopped",
                }
            )
            continue
        state = row["state"]
        if row["rebuild_beating"]:
            state = "rebuilding"
        elif state == "rebuilding":
            state = "running"
        if (now - row["heartbeat_at"]).total_seconds() > STALE_AFTER_SECONDS and state == "running":
            state = "stopped"
        pending = row["oldest_pending"]
        report.append(
            {
                "name": name,
                "position": row["position"],
                "lag_events": row["lag_events"],
                "lag_seconds": round((now - pending).total_seconds(), 3) if pending else 0.0,
                "state": state,
            }
        )
    return report


CONSUMERS_SQL = f"""
SELECT member, group_id, partitions, lag_messages, state, error, heartbeat_at
FROM kafka_consumers
WHERE heartbeat_at > now() - interval '{STALE_AFTER_SECONDS} seconds'
ORDER BY member
"""


async def live_consumers(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Kafka consumers that reported recently (a killed one drops out after a while)."""
    return [
        {**dict(row), "heartbeat_at": row["heartbeat_at"].isoformat()}
        for row in await conn.fetch(CONSUMERS_SQL)
    ]


async def dead_letter_count(conn: asyncpg.Connection) -> int:
    return int(
        await conn.fetchval("SELECT count(*) FROM audit_events WHERE stage = 'dead_lettered'")
    )
