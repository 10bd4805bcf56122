"""Many concurrent writers, one follower: nothing missed, every stream gapless."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

import asyncpg

from command_side.new_events import new_event
from event_store import locks
from event_store.append import GroupCommitter, NewEvent
from event_store.feed import Checkpoint, StoreListener, read_after
from schema.commands import RatingCommand, WatchCommand

WRITERS = 16
USERS = [f"user{i}" for i in range(12)]  # fewer users than writers: streams overlap
APPENDS_PER_WRITER = 60


async def _writer(committer: GroupCommitter, rng: random.Random) -> list[int]:
    positions: list[int] = []
    for _ in range(APPENDS_PER_WRITER):
        size = rng.choice([1, 1, 1, 3, 10])
        commands = [
            WatchCommand(
                user_id=rng.choice(USERS), movie_id=f"m{rng.randrange(50)}", progress=rng.random()
            )
            if rng.random() < 0.5
            else RatingCommand(
                user_id=rng.choice(USERS),
                movie_id=f"m{rng.randrange(50)}",
                rating=rng.randrange(1, 11) / 2,
            )
            for _ in range(size)
        ]
        results = await committer.append([new_event(c) for c in commands])
        assert all(r.outcome == "accepted" for r in results)
        positions.extend(r.position for r in results if r.position is not None)
        await asyncio.sleep(rng.random() / 500)
    return positions


async def test_follower_misses_nothing_under_concurrent_writers(database_url: str) -> None:
    pools = [
        await asyncpg.create_pool(database_url, min_size=1, max_size=2) for _ in range(WRITERS)
    ]
    # Both writers of each committer take every group (no backlog needed): more
    # transactions side by side.
    committers = [GroupCommitter(pool, concurrency=2, helper_min_events=1) for pool in pools]
    for committer in committers:
        committer.start()
    follower = await asyncpg.connect(database_url)
    seen: list[tuple[int, str, int]] = []
    done = asyncio.Event()

    async def follow() -> None:
        checkpoint = Checkpoint()
        while True:
            finished = done.is_set()  # read before the batch, so the last read sees all
            batch = await read_after(follower, checkpoint, 200)
            for record in batch:
                seen.append((record.position, record.user_id, record.stream_version))
                checkpoint = record.checkpoint
            if finished and not batch:
                return
            if not batch:
                await asyncio.sleep(0.001)

    reader = asyncio.create_task(follow())
    try:
        acknowledged = await asyncio.gather(
            *(_writer(c, random.Random(seed)) for seed, c in enumerate(committers))
        )
    finally:
        done.set()
        await reader
        for committer in committers:
            await committer.stop()
        for pool in pools:
            await pool.close()
    stored = await follower.fetch(
        "SELECT position, originator_id, originator_version FROM interaction_events"
    )
    await follower.close()

    all_acknowledged = sorted(p for positions in acknowledged for p in positions)
    assert len(all_acknowledged) == len(set(all_acknowledged)) > WRITERS * APPENDS_PER_WRITER
    assert (
        sorted(p for p, _, _ in seen) == all_acknowledged == sorted(r["position"] for r in stored)
    )

    versions_as_followed: dict[str, list[int]] = defaultdict(list)
    for _, user, version in seen:
        versions_as_followed[user].append(version)
    for user, versions in versions_as_followed.items():
        # Gapless, and the follower met each stream in version order.
        assert versions == list(range(1, len(versions) + 1)), user


async def test_a_commit_wakes_listeners_after_it_and_appends_commit_side_by_side(
    database_url: str,
) -> None:
    """The wake-up notice comes from the committer after the commit (no trigger inside the
    appending transaction, where PostgreSQL's notify lock would serialize commits)."""
    listener = StoreListener(database_url)
    woken = listener.subscribe()
    listening = asyncio.create_task(listener.run())
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    committer = GroupCommitter(pool, concurrency=2)
    committer.start()
    try:
        await asyncio.wait_for(woken.wait(), 30)  # set once when it starts listening
        woken.clear()
        async with pool.acquire() as conn:
            assert not await conn.fetchval(
                "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'interaction_events'::regclass"
                " AND tgfoid = ANY (SELECT oid FROM pg_proc WHERE prosrc LIKE '%pg_notify%')"
            )
        [result] = await committer.append(
            [new_event(WatchCommand(user_id="w1", movie_id="m1", progress=0.5))]
        )
        assert result.outcome == "accepted"
        await asyncio.wait_for(woken.wait(), 30)
        # A commit right after a notice (within its NOTICE_GAP) is still followed by one.
        woken.clear()
        [result] = await committer.append(
            [new_event(WatchCommand(user_id="w1", movie_id="m2", progress=0.5))]
        )
        assert result.outcome == "accepted"
        await asyncio.wait_for(woken.wait(), 30)
    finally:
        await committer.stop()
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await pool.close()


def _watch(user: str) -> NewEvent:
    return new_event(WatchCommand(user_id=user, movie_id="m1", progress=0.5))


async def test_a_second_writer_takes_only_a_backlog(database_url: str) -> None:
    """The first writer commits small requests; the second joins only while a backlog of
    helper_min_events waits (batch ingest). Seen with the first writer held up: its group
    waits for a stream lock that another transaction holds."""
    pool = await asyncpg.create_pool(database_url, min_size=2, max_size=4)
    committer = GroupCommitter(pool, concurrency=2, helper_min_events=100)
    committer.start()
    holder = await asyncpg.connect(database_url)
    try:
        async with holder.transaction():
            await locks.take(holder, locks.LockClass.USER_STREAM, ["held-user"])
            held = asyncio.create_task(committer.append([_watch("held-user")]))
            await asyncio.sleep(0.2)
            small = asyncio.create_task(committer.append([_watch("small-user")]))
            await asyncio.sleep(0.5)
            assert not held.done() and not small.done()
            backlog = await asyncio.wait_for(
                committer.append([_watch(f"bulk-{i}") for i in range(150)]), 30
            )
            assert {r.outcome for r in backlog} == {"accepted"}
            # The helper took what waited with the backlog; the held group still waits.
            [answer] = await asyncio.wait_for(small, 30)
            assert answer.outcome == "accepted"
            assert not held.done()
        [answer] = await asyncio.wait_for(held, 30)
        assert answer.outcome == "accepted"
    finally:
        await holder.close()
        await committer.stop()
        await pool.close()
