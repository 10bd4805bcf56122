"""Store followers: keep projections up to date by reading the store itself.

Each batch is one transaction holding the projections' locks: it reads their
checkpoints, the next committed events after the lowest of them, applies them through the
one applier, moves the checkpoints and commits. A crash anywhere leaves either all of a
batch's effects or none, so a restarted follower neither loses nor doubles anything.
Several processes may follow at once (the locks make them take turns), and Kafka
consumers may run beside them (the applier skips what their marks say is in already).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import asyncpg

from event_store import feed
from event_store.errors import UNAVAILABLE_ERRORS
from projections import checkpoints, dead_letters, retry
from projections.applier import Applied, Applier, raise_marks
from projections.projection import Projection

log = logging.getLogger("cinemate.projections")

# A batch failing this often for a reason other than an unreachable database is
# searched for the event that fails alone.
POISON_AFTER_FAILURES = 3


async def apply_next(conn: asyncpg.Connection, applier: Applier, limit: int) -> tuple[int, Applied]:
    """Inside the caller's transaction: the next stretch of the store (how many events
    it read), applied and checkpointed for every target of the applier."""
    marks = await applier.begin(conn)
    records = await feed.read_after(conn, min(marks), limit)
    applied = await applier.apply(conn, records, marks)
    await applier.advance(conn, records, marks)
    return len(records), applied


class StoreFollower:
    """One read of the store per batch serves every projection it runs."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        projections: Sequence[Projection],
        *,
        batch_size: int = 1000,
        min_interval: float = 0.02,
    ) -> None:
        self.pool = pool
        self.applier = Applier(projections)
        self.batch_size = batch_size
        # Under a steady stream, waking for every commit would make many tiny batches;
        # waiting a little between them makes fewer, larger ones at a small cost in lag.
        self.min_interval = min_interval

    @property
    def projections(self) -> list[Projection]:
        return self.applier.projections

    async def step(self, limit: int | None = None) -> int:
        """One batch, committed. Returns how many events it read."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                read, applied = await apply_next(conn, self.applier, limit or self.batch_size)
                if not read:
                    await checkpoints.heartbeat(conn, self.applier.names)
            await self.applier.after_commit(applied)
        return read

    async def isolate(self) -> None:
        """A batch keeps failing, and not for want of a database: go through it one event
        at a time, and dead-letter the first event that fails alone. One bad event (say,
        stored before validation got stricter) must not stop every read model."""
        for _ in range(self.batch_size):
            try:
                if not await self.step(limit=1):
                    return
            except UNAVAILABLE_ERRORS:
                raise
            except Exception as exc:
                await self.skip_next(exc)
                return

    async def skip_next(self, error: Exception) -> None:
        """Move every checkpoint past the next event, applied by none of the projections
        (so they stay consistent with each other), and say so in the audit trail; but
        only together with the event after it applying cleanly. When that one fails as
        well the fault is not in the event (a bug, a broken table), and skipping would
        eat the stream one event at a time: nothing is skipped then."""
        try:
            async with self.pool.acquire() as conn:
                async with conn.transaction():
                    marks = await self.applier.begin(conn)
                    records = await feed.read_after(conn, min(marks), 2)
                    if len(records) < 2:
                        return  # nothing to tell a bad event from a broken projection
                    poison = records[0]
                    for target, mark in zip(self.applier.targets, marks, strict=True):
                        if poison.checkpoint > mark:
                            await checkpoints.save(conn, target.checkpoint, poison.checkpoint)
                    await raise_marks(conn, [poison])  # consumers skip it too
                    detail = {"applier": "store", "error": dead_letters.describe(error)}
                    await dead_letters.record(
                        conn,
                        poison.event_id,
                        poison.position,
                        poison.user_id,
                        poison.event_type,
                        detail,
                    )
                    _, following = await apply_next(conn, self.applier, 1)
                await self.applier.after_commit(following)
        except UNAVAILABLE_ERRORS:
            raise
        except Exception as exc:
            log.error(
                "projections fail on consecutive events; not skipping any",
                extra={"error": repr(exc), "first_error": repr(error)},
            )
            return
        log.error(
            "event dead-lettered: it fails alone",
            extra={"event_id": str(poison.event_id), "position": poison.position, **detail},
        )

    async def run(self, wake: asyncio.Event, idle_seconds: float = 1.0) -> None:
        async with self.pool.acquire() as conn:
            await checkpoints.ensure(conn, self.applier.names)
        failures = 0
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                while await self.step() >= self.batch_size:
                    started = loop.time()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning(
                    "projection batch failed; retrying",
                    extra={"projections": self.applier.names, "error": repr(exc)},
                )
                await asyncio.sleep(retry.wait_after(failures))
                if failures >= POISON_AFTER_FAILURES and not isinstance(exc, UNAVAILABLE_ERRORS):
                    try:
                        await self.isolate()
                    except Exception as isolating:
                        log.warning("isolating a failing batch failed: %r", isolating)
                continue
            await asyncio.sleep(max(0.0, started + self.min_interval - loop.time()))
            if wake.is_set():
                wake.clear()
                continue
            await feed.woken(wake, idle_seconds)
