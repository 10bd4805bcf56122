"""Where each follower stands in the store: one row per projection (and per rebuild's
shadow, and for the Kafka relay) in projection_checkpoints, written in the same
transaction as the effects it covers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import asyncpg

from event_store.feed import Checkpoint

LOAD_SQL = """
SELECT name, tx_id::text::bigint AS tx, position FROM projection_checkpoints
WHERE name = ANY($1::text[])
"""
ENSURE_SQL = """
INSERT INTO projection_checkpoints (name, state) SELECT unnest($1::text[]), $2
ON CONFLICT (name) DO NOTHING
"""
SAVE_SQL = """
UPDATE projection_checkpoints AS c
SET tx_id = m.tx_id::xid8, position = m.position, updated_at = now(), heartbeat_at = now()
FROM unnest($1::text[], $2::text[], $3::bigint[]) AS m(name, tx_id, position)
WHERE c.name = m.name
"""
HEARTBEAT_SQL = "UPDATE projection_checkpoints SET heartbeat_at = now() WHERE name = ANY($1)"
STATE_SQL = "UPDATE projection_checkpoints SET state = $2, heartbeat_at = now() WHERE name = $1"


async def load(conn: asyncpg.Connection, names: Sequence[str]) -> list[Checkpoint]:
    """The checkpoints of these names, in order (the start of the store for a new one)."""
    rows = {r["name"]: r for r in await conn.fetch(LOAD_SQL, list(names))}
    return [
        Checkpoint(rows[n]["tx"], rows[n]["position"]) if n in rows else Checkpoint() for n in names
    ]


async def load_one(conn: asyncpg.Connection, name: str) -> Checkpoint:
    return (await load(conn, [name]))[0]


async def save(conn: asyncpg.Connection, name: str, checkpoint: Checkpoint) -> None:
    await save_all(conn, {name: checkpoint})


async def save_all(conn: asyncpg.Connection, moved: Mapping[str, Checkpoint]) -> None:
    """Every checkpoint a batch moved, in one statement (a follower moves one per
    projection after each batch)."""
    if moved:
        await conn.execute(
            SAVE_SQL,
            list(moved),
            [str(c.tx_id) for c in moved.values()],
            [c.position for c in moved.values()],
        )


async def ensure(conn: asyncpg.Connection, names: Sequence[str], state: str = "running") -> None:
    """A row for each name, left as it is when it exists."""
    await conn.execute(ENSURE_SQL, list(names), state)


async def heartbeat(conn: asyncpg.Connection, names: Sequence[str]) -> None:
    await conn.execute(HEARTBEAT_SQL, list(names))


async def set_state(conn: asyncpg.Connection, name: str, state: str) -> None:
    await conn.execute(STATE_SQL, name, state)
