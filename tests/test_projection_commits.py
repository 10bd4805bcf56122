"""How a projection batch's transaction runs, on a real PostgreSQL.

A store follower's commit need not wait for the WAL flush: a batch lost in a crash is
lost with its checkpoint, and the store gives it again. A Kafka consumer's must: its
offsets go to the broker once the commit returns, and the broker would not give a lost
batch again. Both plan their statements generically (their arrays change length with
every batch) when the batch is small, and those plans find rows by key whatever size the
tables were when they were made. The settings end with the transaction; the connection
goes back to the pool as it came.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import asyncpg

from cinemate.app import Services
from command_side.new_events import new_event
from event_store.append import append_group
from projections import checkpoints
from projections.applier import GENERIC_PLANS_SQL, Applier
from projections.kafka_consumer import ProjectionConsumer
from projections.store_follower import StoreFollower, apply_next
from schema.commands import WatchCommand

SETTINGS_SQL = (
    "SELECT current_setting('synchronous_commit'), current_setting('plan_cache_mode'),"
    " current_setting('enable_hashjoin'), current_setting('enable_mergejoin')"
)


async def settings_in_a_batch(conn: asyncpg.Connection, applier: Applier) -> tuple[str, str]:
    async with conn.transaction():
        marks = await applier.begin(conn)
        await applier.apply(conn, [], marks)
        inside = await conn.fetchrow(SETTINGS_SQL)
    assert inside is not None
    assert tuple(inside[2:]) == ("off", "off")  # a small batch's joins: nested loops
    after = await conn.fetchrow(SETTINGS_SQL)
    assert after is not None and tuple(after) == ("on", "auto", "on", "on")
    return inside[0], inside[1]


async def test_a_store_followers_batch_commits_without_waiting_for_the_flush(
    services: Services, db: asyncpg.Connection
) -> None:
    follower = StoreFollower(services.pool, list(services.projections.values()))
    assert await settings_in_a_batch(db, follower.applier) == ("off", "force_generic_plan")


async def test_a_kafka_consumers_batch_commits_durably(
    services: Services, db: asyncpg.Connection
) -> None:
    # Never started: no broker is reached.
    consumer = ProjectionConsumer(services.pool, "127.0.0.1:9", list(services.projections.values()))
    assert await settings_in_a_batch(db, consumer.applier) == ("on", "force_generic_plan")


def _scans(plan: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(node type, relation) of every node of an EXPLAIN (FORMAT JSON) plan."""
    yield plan["Node Type"], plan.get("Relation Name", "")
    for child in plan.get("Plans", []):
        yield from _scans(child)


def _literal(array_type: str, size: int) -> str:
    element = "-1" if array_type == "integer[]" else "k"
    return f"'{{{','.join([element] * size)}}}'::{array_type}"


async def test_a_small_batch_finds_rows_by_key_however_small_the_tables_were_when_planned(
    settings_without_projectors: Services, db: asyncpg.Connection
) -> None:
    """A batch's statements are planned generically once per connection, for the tables
    as they are then. Planned on the near-empty tables of a fresh service, a lookup that
    hashed the batch's keys and read the whole table would read it all on every batch,
    however large it has grown since."""
    services = settings_without_projectors
    applier = StoreFollower(services.pool, list(services.projections.values())).applier
    watches = [WatchCommand(user_id=f"early{i}", movie_id=f"m{i}", progress=0.5) for i in range(3)]
    await checkpoints.ensure(db, applier.names)
    for _ in range(2):  # the second batch reads back the items the first wrote
        await append_group(db, [[new_event(command)] for command in watches])
        async with db.transaction():
            read, _ = await apply_next(db, applier, 1000)
        assert read == len(watches)
    await db.execute(
        "INSERT INTO user_features (user_id, stream_version, position, state, updated_at)"
        " SELECT 'grown' || n, 1, n, '{}', now() FROM generate_series(1, 20000) AS n;"
        "INSERT INTO user_items (user_id, movie_id, signals)"
        " SELECT 'grown' || n % 5000, 'm' || n, '{}' FROM generate_series(1, 40000) AS n"
    )
    planned = await db.fetch(
        "SELECT name, statement, parameter_types::text[] AS types FROM pg_prepared_statements"
        " WHERE statement LIKE '%JOIN unnest%'"
    )
    lookups = [
        p for p in planned if "user_items" in p["statement"] or "user_features" in p["statement"]
    ]
    assert len(lookups) >= 2, [p["statement"] for p in planned]
    async with db.transaction():
        await db.execute(GENERIC_PLANS_SQL)
        for lookup in lookups:
            arguments = ", ".join(_literal(t, 40) for t in lookup["types"])
            explained = await db.fetchval(
                f"EXPLAIN (FORMAT JSON) EXECUTE {lookup['name']}({arguments})"
            )
            nodes = list(_scans(json.loads(explained)[0]["Plan"]))
            whole = [rel for node, rel in nodes if node == "Seq Scan" and rel.startswith("user_")]
            assert not whole, (lookup["statement"], nodes)
