"""How a projection batch's transaction runs, on a real PostgreSQL.

A store follower's commit need not wait for the WAL flush: a batch lost in a crash is
lost with its checkpoint, and the store gives it again. A Kafka consumer's must: its
offsets go to the broker once the commit returns, and the broker would not give a lost
batch again. Both plan their statements generically (their arrays change length with
every batch) when the batch is small. The settings end with the transaction; the
connection goes back to the pool as it came.
"""

from __future__ import annotations

import asyncpg

from cinemate.app import Services
from projections.applier import Applier
from projections.kafka_consumer import ProjectionConsumer
from projections.store_follower import StoreFollower

SETTINGS_SQL = "SELECT current_setting('synchronous_commit'), current_setting('plan_cache_mode')"


async def settings_in_a_batch(conn: asyncpg.Connection, applier: Applier) -> tuple[str, str]:
    async with conn.transaction():
        marks = await applier.begin(conn)
        await applier.apply(conn, [], marks)
        inside = await conn.fetchrow(SETTINGS_SQL)
    assert inside is not None
    after = await conn.fetchrow(SETTINGS_SQL)
    assert after is not None and tuple(after) == ("on", "auto")
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
    consumer = ProjectionConsumer(
        services.pool, "127.0.0.1:9", list(services.projections.values())
    )
    assert await settings_in_a_batch(db, consumer.applier) == ("on", "force_generic_plan")
