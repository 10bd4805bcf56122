"""Client ids never reach an internal lock: a user named like a projection's, the relay's
or a rebuild's lock behaves like any other user, and a deadlock met by an append is
retried inside, never shown to a client."""

from __future__ import annotations

import asyncio
import random
import time

import asyncpg
import httpx

from cinemate.app import Services
from event_store import locks
from tests.projection_helpers import PROJECTIONS, wait_caught_up

# Every name an internal lock has had, and some it might: all valid user ids.
INTERNAL_NAMES = [
    *(f"projection:{name}" for name in PROJECTIONS),
    *(f"rebuild:{name}" for name in PROJECTIONS),
    *(f"{name}__rebuild" for name in PROJECTIONS),
    "kafka_relay",
    "schema",
    "migrations",
]


def rating(user: str, movie: str) -> dict[str, object]:
    return {"type": "rating", "user_id": user, "movie_id": movie, "rating": 4}


async def deadlocks(conn: asyncpg.Connection) -> int:
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    return int(
        await conn.fetchval(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        )
    )


async def test_users_named_like_internal_locks_never_wait_for_them(
    services: Services, client: httpx.AsyncClient, database_url: str
) -> None:
    """Hold every internal lock as its owners do (a projector mid-batch, a rebuild
    beginning, the relay's turn): appends for users of those names still go through."""
    holder = await asyncpg.connect(database_url)
    try:
        async with holder.transaction():
            await locks.lock_projections(holder, PROJECTIONS)
            await locks.lock_rebuilds(holder, PROJECTIONS)
            assert await locks.take_relay_turn(holder)
            batch = {"events": [rating(user, "m1") for user in INTERNAL_NAMES]}
            answer = await asyncio.wait_for(client.post("/api/v1/events/batch", json=batch), 30)
            assert answer.status_code == 202, answer.text
            single = await asyncio.wait_for(
                client.post("/api/v1/events/rating", json=rating("kafka_relay", "m2")), 30
            )
            assert single.status_code == 202 and single.json()["stream_version"] == 2
    finally:
        await holder.close()
    assert [r["stream_version"] for r in answer.json()["results"]] == [1] * len(INTERNAL_NAMES)


async def test_batches_of_internal_names_under_load_all_go_through(
    services: Services, client: httpx.AsyncClient, db: asyncpg.Connection, database_url: str
) -> None:
    """Several clients post batches mixing internal names with ordinary users while the
    projections run and a relay-like holder keeps taking its locks: every request is
    accepted, PostgreSQL sees no deadlock, and the read models catch up."""
    deadlocks_before = await deadlocks(db)
    stop = asyncio.Event()
    statuses: dict[int, int] = {}
    holder_turns = 0

    async def relay_like() -> None:
        # What a relay, a rebuild and a projector in another process hold while they
        # work, over and over.
        nonlocal holder_turns
        conn = await asyncpg.connect(database_url)
        try:
            while not stop.is_set():
                async with conn.transaction():
                    await locks.take_relay_turn(conn)
                    await locks.lock_rebuilds(conn, PROJECTIONS)
                    await locks.lock_projections(conn, PROJECTIONS)
                    await asyncio.sleep(0.03)
                holder_turns += 1
        finally:
            await conn.close()

    async def poster(n: int) -> None:
        rng = random.Random(n)
        for i in range(12):
            users = [*INTERNAL_NAMES, *(f"plain{rng.randrange(40)}" for _ in range(150))]
            rng.shuffle(users)
            batch = {"events": [rating(u, f"m{n}-{i}-{j}") for j, u in enumerate(users)]}
            answer = await client.post("/api/v1/events/batch", json=batch, timeout=60)
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
            assert answer.status_code == 202, answer.text

    holder = asyncio.create_task(relay_like())
    started = time.monotonic()
    try:
        await asyncio.wait_for(asyncio.gather(*(poster(n) for n in range(6))), 120)
    finally:
        stop.set()
        await holder
    elapsed = time.monotonic() - started
    await wait_caught_up(services.pool)
    posted = 6 * 12 * (len(INTERNAL_NAMES) + 150)
    assert statuses == {202: 72}
    assert await db.fetchval("SELECT count(*) FROM interaction_events") == posted
    counts = await db.fetch(
        "SELECT user_id, (state->'counts'->>'rating')::int AS ratings FROM user_features"
        " WHERE user_id = ANY($1::text[])",
        INTERNAL_NAMES,
    )
    assert {r["user_id"]: r["ratings"] for r in counts} == dict.fromkeys(INTERNAL_NAMES, 72)
    # Statistics reach pg_stat_database when a backend goes idle, within about a second.
    await asyncio.sleep(2.5)
    assert await deadlocks(db) == deadlocks_before, "PostgreSQL detected a deadlock"
    print(f"{posted} events in 72 batches in {elapsed:.1f} s; relay-like holder: {holder_turns}")


async def test_a_deadlock_met_by_an_append_is_retried_inside(
    services: Services, client: httpx.AsyncClient, db: asyncpg.Connection, database_url: str
) -> None:
    """Another transaction takes two user streams' locks in the opposite order to the
    append's: PostgreSQL breaks the deadlock by failing the append's transaction, and the
    store runs it again; the client only sees its events accepted."""
    users = ["alice", "bob"]
    keys = {u: await db.fetchval("SELECT hashtext($1)", u) for u in users}
    first, second = sorted(users, key=keys.__getitem__)  # the append locks in key order
    deadlocks_before = await deadlocks(db)
    other = await asyncpg.connect(database_url)
    try:
        # The other side waits long before looking for deadlocks: the append is the victim.
        await other.execute("SET deadlock_timeout = '60s'")
        transaction = other.transaction()
        await transaction.start()
        await locks.take(other, locks.LockClass.USER_STREAM, [second])
        batch = {"events": [rating(first, "m1"), rating(second, "m2")]}
        posting = asyncio.create_task(client.post("/api/v1/events/batch", json=batch, timeout=60))
        await _until_an_advisory_lock_is_awaited(db)
        await locks.take(other, locks.LockClass.USER_STREAM, [first])  # closes the cycle
        await asyncio.sleep(0.2)
        await transaction.commit()
        answer = await asyncio.wait_for(posting, 60)
    finally:
        await other.close()
    assert answer.status_code == 202, answer.text
    assert [r["stream_version"] for r in answer.json()["results"]] == [1, 1]
    assert await db.fetchval("SELECT count(*) FROM interaction_events") == 2
    deadline = time.monotonic() + 15
    while await deadlocks(db) == deadlocks_before:
        assert time.monotonic() < deadline, "no deadlock happened: the test proves nothing"
        await asyncio.sleep(0.2)


async def _until_an_advisory_lock_is_awaited(db: asyncpg.Connection) -> None:
    deadline = time.monotonic() + 15
    while not await db.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ):
        assert time.monotonic() < deadline, "the append never waited for the lock"
        await asyncio.sleep(0.01)
