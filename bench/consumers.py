"""bench/consumers: events/s applied to every read model by a Kafka consumer, against a
store follower applying the same events in the same run (the baseline).

Fills a fresh embedded PostgreSQL with N events (the generator of bench/replay), starts
a real Kafka broker and publishes them all with the outbox relay, then times, in this
one process:
  - the baseline: a store follower (`StoreFollower`) taking every projection from nothing to
    caught up;
  - the same read models emptied again, and one `ProjectionConsumer` (a consumer group
    of one, reading the interactions topic from the start) doing the same, timed from its
    first applied batch (the time to join the group is printed apart);
  - both as a `cinemate worker` runs them: on uvloop, the heap made while setting up
    frozen (out of the collector's sight);
  - `--rounds` times over (emptied again before each): one run's ratio swung from 0.71
    to 0.98 between two runs minutes apart on this host, so the median of the rounds'
    ratios is the figure, each round's follower and consumer run next to each other.

    python -m bench.consumers [--events 50000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import asyncpg

from bench.replay import MOVIES, fill
from cinemate.app import open_services
from cinemate.cli import freeze_startup_heap
from cinemate.infrastructure import Infrastructure
from cinemate.settings import Settings
from devtools.kafka_broker import KafkaBroker
from event_store.stopping import cancel_and_wait
from projections.kafka_consumer import ProjectionConsumer
from projections.outbox_relay import RELAY, OutboxRelay
from projections.status import projection_status
from projections.store_follower import StoreFollower
from schema import topics

RESET_SQL = """
TRUNCATE user_features, user_items, item_stats, audit_events, audit_batches, model_feedback,
         applied_streams, kafka_consumers;
UPDATE projection_checkpoints SET tx_id = '0', position = 0;
"""


def caught_up(pool: asyncpg.Pool, names: list[str]) -> Callable[[], Awaitable[bool]]:
    async def done() -> bool:
        async with pool.acquire() as conn:
            report = await projection_status(conn, names)
        return all(r["lag_events"] == 0 for r in report)

    return done


async def timed(done: Callable[[], Awaitable[bool]], task: asyncio.Task[None]) -> float:
    started = time.perf_counter()
    try:
        while True:
            if await done():
                return time.perf_counter() - started
            await asyncio.sleep(0.02)
    finally:
        # Once is not always enough (event_store.stopping): a caught-up follower that
        # swallowed its cancellation went on polling, and the bench waited for it forever.
        await cancel_and_wait([task])


async def run(total: int, rounds: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="cinemate-consumers-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    settings = Settings.from_env({**env, "CINEMATE_DATA_DIR": str(work)})
    infra = Infrastructure.start(settings)
    results: list[tuple[float, float, float]] = []
    projections_count = 0
    broker = KafkaBroker(work / "kafka")
    bootstrap = broker.start()
    settings = dataclasses.replace(settings, kafka_bootstrap_servers=bootstrap, enable_kafka=True)
    try:
        async with AsyncExitStack() as stack:
            services = await open_services(
                settings,
                infra.database_url,
                infra.redis_url,
                stack,
                run_projections=False,
                run_relay=False,
            )
            pool = services.pool
            async with pool.acquire() as conn:
                await conn.executemany(
                    "INSERT INTO movies (movie_id, title, genres) VALUES ($1, $2, $3)",
                    [(f"m{i}", f"Movie {i}", ["Drama"]) for i in range(MOVIES)],
                )
            await fill(pool, total)
            relay = OutboxRelay(pool, bootstrap)
            publishing = asyncio.create_task(relay.run(asyncio.Event(), idle_seconds=0.05))
            publish_seconds = await timed(caught_up(pool, [RELAY]), publishing)
            async with pool.acquire() as conn:
                await conn.execute("DELETE FROM kafka_outbox")
            names = list(services.projections)
            projections = list(services.projections.values())
            # What `cinemate worker` does once set up (its loop is uvloop too): the rounds
            # run on the heap a worker runs on, not beside the fill's and the relay's.
            freeze_startup_heap()
            projections_count = len(projections)

            async def reset() -> None:
                async with pool.acquire() as conn:
                    await conn.execute(RESET_SQL)
                await services.redis.flushall()

            async def follow() -> float:
                follower = StoreFollower(pool, projections)
                running = asyncio.create_task(follower.run(asyncio.Event(), 0.05))
                return total / await timed(caught_up(pool, names), running)

            async def consume(group: str) -> tuple[float, float]:
                """The consumer's rate from its first applied batch, and the time that
                batch took to come (joining the group, the first fetch)."""
                consumer = ProjectionConsumer(pool, bootstrap, projections, group=group)
                consuming = asyncio.create_task(consumer.run())
                started = time.perf_counter()
                while True:  # joining the group, the first fetch
                    if consumer.applied:
                        break
                    await asyncio.sleep(0.01)
                join_seconds = time.perf_counter() - started
                first_batch = consumer.applied

                async def all_applied() -> bool:
                    return consumer.applied >= total

                return (total - first_batch) / await timed(all_applied, consuming), join_seconds

            for number in range(1, rounds + 1):
                # Each round applies everything twice from empty read models: the
                # follower, then a consumer group of its own reading from the start.
                # Alternating spreads the host's swings over both.
                if number > 1:
                    await reset()
                store_rate = await follow()
                await reset()
                kafka_rate, join_seconds = await consume(f"bench-{number}")
                results.append((store_rate, kafka_rate, join_seconds))
    finally:
        broker.stop()
        infra.stop()
        shutil.rmtree(work, ignore_errors=True)
    relay_name = f"relay: store -> {topics.INTERACTIONS}"
    print(f"{relay_name:<40} {total / publish_seconds:>10,.0f} events/s")
    ratios = []
    for number, (store_rate, kafka_rate, join_seconds) in enumerate(results, 1):
        ratios.append(kafka_rate / store_rate)
        print(f"round {number}")
        follower_name = f"  baseline: store follower, {projections_count} projections"
        print(f"{follower_name:<40} {store_rate:>10,.0f} events/s")
        consumer_name = f"  kafka consumer (group of 1), {projections_count} proj."
        print(
            f"{consumer_name:<40} {kafka_rate:>10,.0f} events/s  "
            f"{ratios[-1]:.2f} x baseline  (after {join_seconds:.1f} s joining "
            "the group and fetching its first batch)"
        )
    print(
        f"{'consumer / follower, median of rounds':<40} {statistics.median(ratios):>10.2f} x"
        f"  (rounds: {', '.join(f'{r:.2f}' for r in ratios)}; target >= 0.9)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3, help="follower then consumer, each round")
    args = parser.parse_args()
    import uvloop

    uvloop.run(run(args.events, args.rounds))


if __name__ == "__main__":
    main()
