"""bench/replay: events/s when rebuilding each read model from the event store.

Fills a fresh embedded PostgreSQL with N events (default 1,000,000: watches, ratings,
favorites, searches and feedback over 50,000 users and 5,000 movies) through the same
append path as the API, then times, in this one process:
  - the baseline: reading and decoding every event in commit-safe order, no writes;
  - `rebuild` of each projection (replay into shadow tables, then the swap);
  - `rebuild_all` of every projection in one pass, in this process (as a serving
    process would run it);
  - `cinemate replay` itself, in a process of its own against the same servers (its
    replay as it reports it, and the whole process with its start).

    python -m bench.replay [--events 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

from tqdm import tqdm

from cinemate.app import open_services
from cinemate.infrastructure import Infrastructure
from cinemate.settings import Settings
from command_side.new_events import new_event
from event_store import lag
from event_store.append import append_group
from event_store.feed import Checkpoint, read_after
from projections.rebuild import rebuild, rebuild_all
from schema.commands import (
    Command,
    FavoriteCommand,
    FeedbackCommand,
    RatingCommand,
    SearchCommand,
    WatchCommand,
)

USERS, MOVIES, GROUP = 50_000, 5_000, 5_000


def command(rng: random.Random) -> Command:
    user, movie = f"u{rng.randrange(USERS)}", f"m{rng.randrange(MOVIES)}"
    kind = rng.random()
    if kind < 0.4:
        return WatchCommand(
            user_id=user,
            movie_id=movie,
            progress=round(rng.random(), 2),
            watched_seconds=rng.randrange(7200),
        )
    if kind < 0.75:
        return RatingCommand(user_id=user, movie_id=movie, rating=rng.randrange(1, 11) / 2)
    if kind < 0.85:
        return FavoriteCommand(user_id=user, movie_id=movie, action="add")
    if kind < 0.95:
        return SearchCommand(user_id=user, query="space", clicked_movie_id=movie)
    return FeedbackCommand(user_id=user, movie_id=movie, recommendation_id="r1", action="click")


async def fill(services_pool: object, total: int) -> None:
    rng = random.Random(42)
    pool = services_pool
    with tqdm(total=total, desc="append", unit="ev", unit_scale=True) as bar:
        for start in range(0, total, GROUP):
            group = [new_event(command(rng)) for _ in range(min(GROUP, total - start))]
            async with pool.acquire() as conn:  # type: ignore[attr-defined]
                await append_group(conn, [group])
            bar.update(len(group))


async def read_all(pool: object) -> int:
    checkpoint, seen = Checkpoint(), 0
    async with pool.acquire() as conn:  # type: ignore[attr-defined]
        while records := await read_after(conn, checkpoint, GROUP):
            for record in records:
                record.decode()
            seen += len(records)
            checkpoint = records[-1].checkpoint
    return seen


async def run(total: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="cinemate-replay-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    settings = Settings.from_env({**env, "CINEMATE_DATA_DIR": str(work)})
    infra = Infrastructure.start(settings)
    try:
        async with AsyncExitStack() as stack:
            services = await open_services(
                settings, infra.database_url, infra.redis_url, stack, run_projections=False
            )
            async with services.pool.acquire() as conn:
                await conn.executemany(
                    "INSERT INTO movies (movie_id, title, genres) VALUES ($1, $2, $3)",
                    [
                        (f"m{i}", f"Movie {i}", ["Drama", "Comedy"][: 1 + i % 2])
                        for i in range(MOVIES)
                    ],
                )
            await fill(services.pool, total)
            async with services.pool.acquire() as conn:
                await lag.analyze(conn)
            started = time.perf_counter()
            seen = await read_all(services.pool)
            baseline = seen / (time.perf_counter() - started)
            print(f"{'baseline: read + decode, no writes':<36} {baseline:>10,.0f} events/s")
            for name, projection in services.projections.items():
                started = time.perf_counter()
                applied = await rebuild(services.pool, projection)
                rate = applied / (time.perf_counter() - started)
                print(
                    f"{'rebuild ' + name:<36} {rate:>10,.0f} events/s  "
                    f"{rate / baseline:.2f} x baseline  ({applied:,} events)"
                )
            started = time.perf_counter()
            applied = await rebuild_all(services.pool, list(services.projections.values()))
            rate = applied / (time.perf_counter() - started)
            print(
                f"{'rebuild all, one pass, in process':<36} {rate:>10,.0f} events/s  "
                f"{rate / baseline:.2f} x baseline  ({applied:,} events)"
            )
            replayed, own, wall = await asyncio.to_thread(
                replay_command, infra.database_url, infra.redis_url, work
            )
            print(
                f"{'cinemate replay (the command)':<36} {replayed / own:>10,.0f} events/s  "
                f"{replayed / own / baseline:.2f} x baseline  ({replayed:,} events; "
                f"{replayed / wall:,.0f} events/s over the whole process, {wall:.1f} s "
                "with its start)"
            )
            print("target: replay/rebuild >= 50,000 events/s")
    finally:
        infra.stop()
        shutil.rmtree(work, ignore_errors=True)


def replay_command(database_url: str, redis_url: str, work: Path) -> tuple[int, float, float]:
    """Run `cinemate replay` against the bench's servers: the events it replayed, the
    seconds it reports for the replay, and the wall time of the whole process."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CINEMATE_DATA_DIR": str(work),
        "LOG_LEVEL": "WARNING",
    }
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "cinemate.cli", "replay"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - started
    found = re.search(r": (\d+) store events in ([\d.]+) s", done.stdout)
    if found is None:
        raise RuntimeError(f"cinemate replay said: {done.stdout!r} {done.stderr[-2000:]!r}")
    return int(found[1]), float(found[2]), wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    import uvloop

    uvloop.run(run(args.events))


if __name__ == "__main__":
    main()
