"""Advisory-lock namespaces: one lock class per use, none reachable from a client id.

PostgreSQL's one-argument advisory locks share a single 64-bit key space; a user id
hashed into it could equal the hash of an internal name (`projection:audit`, say) and
deadlock with a projector. The two-argument form `(class int4, key int4)` keeps each use in
a class of its own: user streams, projections, the Kafka relay, rebuilds and migrations.

Keys within a class are hashes, so two names may share a key; locks are therefore always
taken in the order of their keys (never of their names), so holders of several never
deadlock, and sharing a key only makes two holders take turns.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

import asyncpg


class LockClass(IntEnum):
    USER_STREAM = 1
    PROJECTION = 2
    RELAY = 3
    REBUILD = 4
    MIGRATIONS = 5


_TAKE_SQL = """
SELECT pg_advisory_xact_lock($1::int4, k)
FROM (SELECT DISTINCT hashtext(n) AS k FROM unnest($2::text[]) AS n) AS keys
ORDER BY k
"""
_PROJECTIONS_SQL = """
SELECT set_config('synchronous_commit', $3, true), pg_advisory_xact_lock($1::int4, k)
FROM (SELECT DISTINCT hashtext(n) AS k FROM unnest($2::text[]) AS n) AS keys
ORDER BY k
"""
_TRY_SQL = "SELECT pg_try_advisory_xact_lock($1::int4, hashtext($2))"


async def take(conn: asyncpg.Connection, lock_class: LockClass, names: Iterable[str]) -> None:
    """Hold these locks until the caller's transaction ends, taken in one order."""
    await conn.execute(_TAKE_SQL, int(lock_class), sorted(set(names)))


async def try_take(conn: asyncpg.Connection, lock_class: LockClass, name: str) -> bool:
    """Hold this lock until the transaction ends if nobody else does; never waits."""
    return bool(await conn.fetchval(_TRY_SQL, int(lock_class), name))


async def lock_projections(
    conn: asyncpg.Connection, names: Iterable[str], *, durable: bool = False
) -> None:
    """Take the projections' turn for this transaction. Its commit waits for the WAL
    flush only if `durable`: a read model and its checkpoint are lost or kept together,
    so after a crash a store follower projects the events again; only acknowledged
    events need synchronous durability, and those live in the store. A caller that tells
    something outside PostgreSQL about the commit once it returns passes `durable`: a
    Kafka consumer commits its offsets to the broker then, and the broker would not
    deliver a lost batch again."""
    await conn.execute(
        _PROJECTIONS_SQL,
        int(LockClass.PROJECTION),
        sorted(set(names)),
        "on" if durable else "off",
    )


async def lock_rebuilds(conn: asyncpg.Connection, names: Iterable[str]) -> None:
    """Held while a rebuild of these projections begins; whoever must not overlap a
    rebuild's replay (a user being forgotten) takes them too."""
    await take(conn, LockClass.REBUILD, names)


async def take_relay_turn(conn: asyncpg.Connection) -> bool:
    """Several relays may run; one publishes at a time, so no two send the same batch."""
    return await try_take(conn, LockClass.RELAY, "kafka_relay")


async def lock_migrations(conn: asyncpg.Connection) -> None:
    await take(conn, LockClass.MIGRATIONS, ["schema"])
