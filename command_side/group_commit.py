"""Group commit: concurrent requests share one transaction, and so one fsync.

Each request waits on a future that is resolved only after the transaction holding its
events has committed. While one group commits, the next one gathers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg

from command_side.event_store import AppendResult, append_group
from command_side.new_events import NewEvent
from projections.store_feed import UNAVAILABLE_ERRORS

log = logging.getLogger("cinemate.command_side")


class StoreUnavailable(RuntimeError):
    """The event store could not be reached: nothing of the request was stored."""


class Overloaded(RuntimeError):
    """Too many events wait for a commit already: the client should retry shortly."""


@dataclass
class _Pending:
    events: Sequence[NewEvent]
    future: asyncio.Future[list[AppendResult]] = field(repr=False)


class GroupCommitter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        concurrency: int = 2,
        max_group_events: int = 5000,
        max_pending_events: int = 50_000,
        on_committed: Callable[[list[str]], None] | None = None,
    ) -> None:
        self._pool = pool
        self._on_committed = on_committed
        self._concurrency = concurrency
        self._max_group_events = max_group_events
        self._max_pending_events = max_pending_events
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._pending_events = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._workers: list[asyncio.Task[None]] = []
        # Requests whose event id is already being written by another request of the
        # same group: they wait for the next group, where the store answers them.
        self._deferred: list[_Pending] = []

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._work(), name=f"group-commit-{i}")
            for i in range(self._concurrency)
        ]

    async def stop(self) -> None:
        """Let queued requests commit, then stop the writers."""
        if self._workers:
            await self._idle.wait()
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    @property
    def pending_events(self) -> int:
        return self._pending_events

    async def append(self, events: Sequence[NewEvent]) -> list[AppendResult]:
        if self._pending_events + len(events) > self._max_pending_events:
            raise Overloaded(f"{self._pending_events} events are waiting to be committed")
        future: asyncio.Future[list[AppendResult]] = asyncio.get_running_loop().create_future()
        self._pending_events += len(events)
        self._idle.clear()
        try:
            self._queue.put_nowait(_Pending(events, future))
            return await asyncio.shield(future)
        finally:
            self._pending_events -= len(events)
            if not self._pending_events:
                self._idle.set()

    async def _work(self) -> None:
        while True:
            group = await self._gather()
            try:
                await self._commit(group)
            except asyncio.CancelledError:
                self._fail(group, StoreUnavailable("the service is shutting down"))
                raise
            except UNAVAILABLE_ERRORS as exc:
                log.warning("event store unavailable: %r", exc)
                self._fail(group, StoreUnavailable(f"event store unavailable: {exc}"))
            except Exception as exc:
                log.exception("append failed")
                self._fail(group, exc)

    async def _gather(self) -> list[_Pending]:
        group = self._deferred
        self._deferred = []
        if not group:
            group.append(await self._queue.get())
        size = sum(len(p.events) for p in group)
        while size < self._max_group_events and not self._queue.empty():
            pending = self._queue.get_nowait()
            group.append(pending)
            size += len(pending.events)
        return group

    async def _commit(self, group: list[_Pending]) -> None:
        batch: list[_Pending] = []
        seen: set[UUID] = set()
        for pending in group:
            ids = {event.event_id for event in pending.events}
            if ids & seen:
                self._deferred.append(pending)
            else:
                seen |= ids
                batch.append(pending)
        requests = [pending.events for pending in batch]
        for attempt in range(3):
            try:
                async with self._pool.acquire() as conn:
                    results = await append_group(conn, requests)
                break
            except asyncpg.UniqueViolationError:
                # Another process stored one of these event ids at the same moment for
                # another stream; retrying reads it back as a conflict.
                if attempt == 2:
                    raise
        for pending, answers in zip(batch, results, strict=True):
            if not pending.future.done():
                pending.future.set_result(answers)
        if self._on_committed is not None:
            self._on_committed([r.outcome for answers in results for r in answers])

    def _fail(self, group: list[_Pending], exc: BaseException) -> None:
        for pending in group:
            if not pending.future.done():
                pending.future.set_exception(exc)
