"""Rebuilding a read model by replay, beside the live one, then swapping it in.

1. Shadow tables `<table>__rebuild` are created like the live ones.
2. The whole store is replayed into them from position 0, in large batches, while the
   live projector keeps serving and following new events.
3. Once the shadow has nearly caught up, one transaction takes the projection's lock
   (the live projector waits), applies the last events, renames the shadow tables over
   the live ones and moves the live checkpoint to the shadow's. Readers see either the
   old table or the new one, never a half-built one.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import asyncpg

from event_store import feed, lag, locks
from event_store.feed import Checkpoint
from projections import checkpoints
from projections.applier import Applier, Target
from projections.projection import Batch, Changes, Projection
from projections.status import REBUILD_BEATS_SECONDS
from projections.store_follower import apply_next
from schema import events

log = logging.getLogger("cinemate.projections")

Progress = Callable[[int, int], None]  # (events applied so far, events in the store)
CATCH_UP_MARGIN = 2000
# Deferred changes are written at least this often, to bound a rebuild's memory.
FLUSH_EVERY_EVENTS = 500_000
# Batches read ahead of the slowest lane (bounds the memory they hold).
LANE_QUEUE_BATCHES = 4
# Shadow tables nobody reads yet: a crash loses the rebuild anyway (see locks).
NO_FLUSH_WAIT_SQL = "SELECT set_config('synchronous_commit', 'off', true)"
# gc's third threshold while a replay runs: collections of the young generations between
# full collections (about 400 in a replay of 200,000 events).
POSTPONED_FULL_COLLECTIONS = 1_000_000


class RebuildInProgress(RuntimeError):
    pass


async def remaining(conn: asyncpg.Connection, target: Target) -> int:
    return await lag.count_after(conn, await checkpoints.load_one(conn, target.checkpoint))


RUNNING_SQL = f"""
SELECT name FROM projection_checkpoints
WHERE name = ANY($1::text[]) AND state = 'rebuilding'
  AND heartbeat_at > now() - interval '{REBUILD_BEATS_SECONDS} seconds'
"""


async def running_rebuilds(conn: asyncpg.Connection, names: Sequence[str]) -> list[str]:
    """The shadow checkpoints of these projections' rebuilds still beating."""
    rows = await conn.fetch(RUNNING_SQL, [Target.shadow_name(name) for name in names])
    return [row["name"] for row in rows]


OPTIONS_SQL = "SELECT array_to_string(reloptions, ', ') FROM pg_class WHERE oid = $1::regclass"


async def begin_rebuild(conn: asyncpg.Connection, projection: Projection) -> None:
    """Start a rebuild: from here on, until it swaps in or is abandoned, every process
    sees `projection` as rebuilding (its shadow checkpoint beats) and refuses a second
    one. Raises RebuildInProgress if one runs already. `rebuild(..., begun=True)` goes on."""
    await _begin(conn, projection, Target.shadow_of(projection))


async def _begin(conn: asyncpg.Connection, projection: Projection, shadow: Target) -> None:
    async with conn.transaction():
        await locks.lock_rebuilds(conn, [projection.name])
        if await running_rebuilds(conn, [projection.name]):
            raise RebuildInProgress(f"{projection.name} is being rebuilt already")
        for live, table in shadow.tables.items():
            await conn.execute(f"DROP TABLE IF EXISTS {table}")
            await conn.execute(f"CREATE TABLE {table} (LIKE {live} INCLUDING ALL)")
            # LIKE copies no storage parameters (user_features' fillfactor, migration 0011):
            # the shadow swapped in must keep them.
            options = await conn.fetchval(OPTIONS_SQL, live)
            if options:
                await conn.execute(f"ALTER TABLE {table} SET ({options})")
        await conn.execute("DELETE FROM projection_checkpoints WHERE name = $1", shadow.checkpoint)
        await checkpoints.ensure(conn, [shadow.checkpoint], "rebuilding")
        await checkpoints.ensure(conn, [projection.name])
        await conn.execute(
            "UPDATE projection_checkpoints SET state = 'rebuilding' WHERE name = $1",
            projection.name,
        )


async def _swap(
    conn: asyncpg.Connection, projections: Sequence[Projection], shadows: Sequence[Target]
) -> int:
    """One transaction holding the live projections' locks (their followers wait): the
    last events, then each shadow renamed over its live table and its checkpoint moved."""
    applied = 0
    applier = Applier(projections, shadows)
    async with conn.transaction():
        await locks.lock_projections(conn, [p.name for p in projections])
        while True:
            count, _ = await apply_next(conn, applier, 5000)
            applied += count
            if not count:
                break
        for projection, shadow in zip(projections, shadows, strict=True):
            await projection.flush(conn, shadow.tables)
            for live, table in shadow.tables.items():
                await conn.execute(f"ALTER TABLE {live} RENAME TO {live}__old")
                await conn.execute(f"ALTER TABLE {table} RENAME TO {live}")
                await conn.execute(f"DROP TABLE {live}__old")
            await conn.execute(
                """
                UPDATE projection_checkpoints AS live
                SET tx_id = s.tx_id, position = s.position, state = 'running',
                    updated_at = now(), heartbeat_at = now()
                FROM projection_checkpoints AS s
                WHERE live.name = $1 AND s.name = $2
                """,
                projection.name,
                shadow.checkpoint,
            )
            await conn.execute(
                "DELETE FROM projection_checkpoints WHERE name = $1", shadow.checkpoint
            )
    return applied


async def rebuild(
    pool: asyncpg.Pool,
    projection: Projection,
    *,
    batch_size: int = 5000,
    progress: Progress | None = None,
    begun: bool = False,
) -> int:
    """Replay the whole store into a fresh copy of the projection's tables and swap it in
    (`begun`: begin_rebuild was called already). Returns how many events were applied.
    """
    return await rebuild_all(
        pool, [projection], batch_size=batch_size, progress=progress, begun=begun
    )


class _Lane:
    """One projection's share of a replay: its own connection and transactions, fed the
    batches the one reader read and decoded. Lanes run side by side on the event loop,
    so while one folds in Python the statements of another (and the next read) run in
    PostgreSQL, on the other core. A lane that falls behind applies what waits for it
    in one go."""

    def __init__(self, projection: Projection, shadow: Target) -> None:
        self.projection = projection
        self.shadow = shadow
        self.inbox: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=LANE_QUEUE_BATCHES)
        self.applied = 0

    async def run(self, pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            flushed, done = 0, False
            while not done:
                batch = await self.inbox.get()
                if batch is None:
                    break
                waiting = [batch]
                while not self.inbox.empty():
                    more = self.inbox.get_nowait()
                    if more is None:
                        done = True
                        break
                    waiting.append(more)
                if len(waiting) > 1:
                    batch = Batch(
                        [r for b in waiting for r in b.records],
                        [e for b in waiting for e in b.events],
                    )
                if batch.records:
                    await self._apply(conn, batch)
                if self.applied - flushed >= FLUSH_EVERY_EVENTS:
                    await self._flush(conn)
                    flushed = self.applied
            # Written now, not in the swap: the swap holds the live projection's lock,
            # and then has only the last events' changes to write.
            await self._flush(conn)

    async def _apply(self, conn: asyncpg.Connection, batch: Batch) -> None:
        """The shadow's only writer, fed the store in order from its start: every record
        is past the shadow's checkpoint, and no applied-stream marks apply."""
        async with conn.transaction():
            await conn.execute(NO_FLUSH_WAIT_SQL)
            await self.projection.apply(conn, batch, self.shadow.tables, defer=True)
            await checkpoints.save(conn, self.shadow.checkpoint, batch.records[-1].checkpoint)
        self.applied += len(batch.records)

    async def _flush(self, conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await conn.execute(NO_FLUSH_WAIT_SQL)
            await self.projection.flush(conn, self.shadow.tables)
            await checkpoints.heartbeat(conn, [self.shadow.checkpoint])


async def _read_ahead(conn: asyncpg.Connection, after: Checkpoint, limit: int) -> Batch:
    """The next batch and its events, decoded once for every lane (straight from the
    rows: each is read once, so the decoded-event cache would only churn)."""
    records = await feed.read_after(conn, after, limit)
    decode = events.decode
    return Batch(records, [decode(r.user_id, r.stream_version, r.topic, r.state) for r in records])


async def _replay(
    pool: asyncpg.Pool,
    conn: asyncpg.Connection,
    lanes: Sequence[_Lane],
    batch_size: int,
    progress: Progress | None,
) -> int:
    """Read the store once, from the start, into every lane, until it is nearly caught
    up; return how many events were read. The next batch is read (on a connection of its
    own) while the lanes take this one."""
    total = await lag.store_size(conn)
    names = [lane.shadow.checkpoint for lane in lanes]
    read = 0
    async with pool.acquire() as reader, asyncio.TaskGroup() as group:
        for lane in lanes:
            group.create_task(lane.run(pool))
        after = min(await checkpoints.load(conn, names))
        ahead = group.create_task(_read_ahead(reader, after, batch_size))
        beat = asyncio.get_running_loop().time()
        while True:
            batch = await ahead
            count = len(batch.records)
            if count:
                after = batch.records[-1].checkpoint
                ahead = group.create_task(_read_ahead(reader, after, batch_size))
            for lane in lanes:
                await lane.inbox.put(batch)
            read += count
            if progress is not None:
                progress(min(lane.applied for lane in lanes), max(total, read))
            now = asyncio.get_running_loop().time()
            if now - beat >= 1.0:
                await checkpoints.heartbeat(conn, names)
                beat = now
            if count < batch_size and await lag.count_after(conn, after) < CATCH_UP_MARGIN:
                break
        if count:
            await ahead  # nothing past the end: the swap reads whatever came since
        for lane in lanes:
            await lane.inbox.put(None)
    return read


_postponing = 0
_thresholds = gc.get_threshold()


@contextmanager
def _full_collections_postponed() -> Iterator[None]:
    """While a replay runs, the garbage collector's full collections wait (young ones go
    on). A replay keeps a state per user and moves batches of records through its lanes;
    each full collection walked all of them, and there were dozens per replay (half of
    its time, measured with gc.callbacks in bench/replay). Nothing a replay makes needs
    the cycle collector; cycles others make meanwhile are collected once it ends."""
    global _postponing, _thresholds
    if not _postponing:
        _thresholds = gc.get_threshold()
        gc.set_threshold(_thresholds[0], _thresholds[1], POSTPONED_FULL_COLLECTIONS)
    _postponing += 1
    try:
        yield
    finally:
        _postponing -= 1
        if not _postponing:
            gc.set_threshold(*_thresholds)


async def rebuild_all(
    pool: asyncpg.Pool,
    projections: Sequence[Projection],
    *,
    batch_size: int = 5000,
    progress: Progress | None = None,
    begun: bool = False,
) -> int:
    """Rebuild several projections in one pass over the store: each batch is read and
    decoded once and applied to every shadow. Returns how many store events were
    replayed."""
    shadows = [Target.shadow_of(p) for p in projections]
    started: list[tuple[Projection, Target]] = []
    async with pool.acquire() as conn:
        try:
            for projection, shadow in zip(projections, shadows, strict=True):
                if not begun:
                    await _begin(conn, projection, shadow)
                started.append((projection, shadow))
            lanes = [_Lane(p, s) for p, s in started]
            with _full_collections_postponed():
                try:
                    applied = await _replay(pool, conn, lanes, batch_size, progress)
                except BaseExceptionGroup as failed:
                    # The lane (or read) that failed first; the others were cancelled.
                    raise failed.exceptions[0] from None
                applied += await _swap(conn, projections, shadows)
        except BaseException:
            for projection, shadow in started:
                await _abandon(conn, projection, shadow)
            raise
    for projection in projections:
        await projection.after_swap()
        await projection.after_commit(Changes())
    if progress is not None:
        progress(applied, applied)
    log.info(
        "rebuilt projections",
        extra={"projections": [p.name for p in projections], "events": applied},
    )
    return applied


async def _abandon(conn: asyncpg.Connection, projection: Projection, shadow: Target) -> None:
    projection.discard(shadow.tables)
    try:
        async with conn.transaction():
            for table in shadow.tables.values():
                await conn.execute(f"DROP TABLE IF EXISTS {table}")
            await conn.execute(
                "DELETE FROM projection_checkpoints WHERE name = $1", shadow.checkpoint
            )
            await conn.execute(
                "UPDATE projection_checkpoints SET state = 'running' WHERE name = $1",
                projection.name,
            )
    except Exception as exc:
        log.warning("could not clean up an abandoned rebuild", extra={"error": repr(exc)})
