"""Recommendation records, written in batches by one background writer.

Every answer of GET /recommend is recorded (`recommendations`: its id, user, model
version, strategy and the movies shown) so that feedback naming the id is credited to the
model that produced it: the model_feedback projection joins each feedback event to the
record when it folds the event.

When: a record is committed *before* its answer is sent. The request hands its row to the
writers and waits for the commit of the batch holding it; a writer inserts everything
queued in one multi-row statement as soon as its previous one is done (group commit, no
timer: when the server is idle a batch is one row and waits for nobody, under load a
batch holds whatever arrived during the last insert). `writers` (2) insert at once, each
on its own connection, so a request arriving while one insert runs need not wait for it,
and one insert slowed down (a page split, a relation extension, a WAL buffer) does not
hold every request of the next batches. Writing after the answer would be
cheaper still, but then a client quick enough (a script, a test, a busy front end
batching its clicks) could post feedback that the projection folds before the record
exists, and that feedback would stay unattributed: the record and the feedback come from
different processes, and nothing orders them but this wait.

Bounded: at most `max_pending` rows wait (the requests beyond wait for room, so memory
stays bounded however slow PostgreSQL gets) and a batch is at most `max_batch` rows. The
insert does not wait for the WAL flush (synchronous_commit off): a crash may lose the last
records, which only loses the attribution of their feedback, never an acknowledged event.
A failed insert fails the requests of that batch (503 through the caller's handler of
store errors); the writer itself goes on with the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from event_store.stopping import cancel_and_wait

log = logging.getLogger("cinemate.recommendations")

INSERT_SQL = """
WITH quick AS (SELECT set_config('synchronous_commit', 'off', true))
INSERT INTO recommendations (recommendation_id, user_id, model_version, strategy, items)
SELECT x.r, x.u, x.v, x.s, ARRAY(SELECT json_array_elements_text(x.i::json))
FROM quick, unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
    AS x(r, u, v, s, i)
"""


@dataclass(frozen=True, slots=True)
class Record:
    recommendation_id: str
    user_id: str
    model_version: str
    strategy: str
    items: Sequence[str]


class RecommendationLog:
    """Group-committed recommendation records (see the module docstring)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_batch: int = 1000,
        max_pending: int = 10_000,
        writers: int = 2,
    ) -> None:
        self.pool = pool
        self.max_batch = max_batch
        self.writers = writers
        self._queue: asyncio.Queue[tuple[Record, asyncio.Future[None]]] = asyncio.Queue(max_pending)
        self._tasks: list[asyncio.Task[None]] = []
        # Each writer keeps its connection (no pool round trip and reset query per batch);
        # after a failure it is given back and a fresh one taken for the next batch.
        self._conns: dict[int, Any] = {}
        self.batches = 0
        self.rows = 0

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._run(i), name=f"recommendation-log-{i}")
                for i in range(self.writers)
            ]

    async def stop(self) -> None:
        """Write what is queued, then end the writers."""
        if not self._tasks:
            return
        # The writers write it (a flush beside them would share a writer's connection);
        # they never end by themselves, a failed insert only fails its batch.
        await self._queue.join()
        await cancel_and_wait(self._tasks)
        self._tasks = []
        for writer in list(self._conns):
            await self._give_back(writer)

    async def _give_back(self, writer: int) -> None:
        conn = self._conns.pop(writer, None)
        if conn is not None:
            with contextlib.suppress(Exception):  # a broken one is closed by the pool
                await self.pool.release(conn)

    async def record(self, record: Record) -> None:
        """Returns once the record is committed; raises what the insert raised."""
        if not self._tasks or all(task.done() for task in self._tasks):
            # Not started (a test app, a tool) or stopped: write it directly.
            await self._insert([record])
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((record, done))
        await done

    def _take(self, most: int) -> list[tuple[Record, asyncio.Future[None]]]:
        batch: list[tuple[Record, asyncio.Future[None]]] = []
        while len(batch) < most and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _run(self, writer: int) -> None:
        while True:
            first = await self._queue.get()
            batch = [first, *self._take(self.max_batch - 1)]
            try:
                await self._flush(writer, batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _flush(self, writer: int, batch: list[tuple[Record, asyncio.Future[None]]]) -> None:
        if not batch:
            return
        try:
            conn = self._conns.get(writer)
            if conn is None:
                conn = self._conns[writer] = await self.pool.acquire()
            await self._write(conn, [record for record, _ in batch])
        except Exception as exc:
            await self._give_back(writer)
            log.warning("recommendation records not written", extra={"error": repr(exc)})
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            return
        self.batches += 1
        self.rows += len(batch)
        for _, done in batch:
            if not done.done():  # a request cancelled meanwhile (client gone)
                done.set_result(None)

    async def _insert(self, records: list[Record]) -> None:
        async with self.pool.acquire() as conn:
            await self._write(conn, records)

    @staticmethod
    async def _write(conn: asyncpg.Connection, records: list[Record]) -> None:
        await conn.execute(
            INSERT_SQL,
            [r.recommendation_id for r in records],
            [r.user_id for r in records],
            [r.model_version for r in records],
            [r.strategy for r in records],
            [orjson.dumps(list(r.items)).decode() for r in records],
        )
