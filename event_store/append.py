"""Appending: concurrent requests share one transaction, and so one fsync (group commit).

Each request waits on a future resolved only after the transaction holding its events
has committed; while one group commits, the next one gathers. One writer commits whatever
waits; more writers (up to `concurrency`) join only while a large backlog waits (batch
ingest), see GroupCommitter. A group is one call to
`append_interaction_events` (schema/migrations): it takes a lock per stream, dedupes by
event id, detects conflicts and inserts, in one round trip, correct across processes.

After a commit the `Waker` notifies the store's channel (followers LISTEN on it), from its
own connection and outside the appending transaction: a NOTIFY inside it would hold
PostgreSQL's notify lock through the commit's fsync and make concurrent appends commit one
at a time (schema/migrations/0009).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

import asyncpg
import numpy as np
from asyncpg.pgproto.pgproto import UUID as FastUUID

from event_store import columns
from event_store.errors import TRANSIENT_ERRORS, UNAVAILABLE_ERRORS, StoreUnavailable
from event_store.feed import CHANNEL
from event_store.stopping import cancel_and_wait
from schema import events

log = logging.getLogger("cinemate.event_store")

APPEND_SQL = """
SELECT * FROM append_interaction_events(
    string_to_array($1, chr(31))::integer[], $2, string_to_array($3, chr(31)),
    string_to_array($4, chr(31)), string_to_array($5, chr(31)),
    string_to_array($6, chr(31))::integer[], string_to_array($7, chr(31))::json[], $8, $9)
"""
# A deadlock, serialization failure or a unique violation raced by another process is
# retried this often inside, never shown to a client.
ATTEMPTS = 5


# Ids the service makes (of events whose client gave none, of served recommendations):
# time-ordered (version 7, RFC 9562) UUIDs, cheaply. Several B-trees are keyed by them
# (the store's unique index, the audit trail's and the feedback's primary keys, the
# recommendations'): random ids put each insert on a random leaf page, which after a
# checkpoint costs a full-page image in the WAL. Timed alone on the 2-core machine
# (batches of 1,000 into a table of a million rows, after a checkpoint), an insert cost
# 52-59 us with random ids and 14-16 us with these; a recommendation row (its id as
# hex, 500,000 rows) 71-80 us against 14-22. The first 48 bits are
# the time in milliseconds; the other 74 come from the operating system's CSPRNG (ids
# must not be guessable: a guessed id, sent first with another body, would turn a
# stranger's event into a conflict), 4 KiB at a time, with the version and variant bits
# set for the whole chunk at once. `uuid.uuid4()` made one system call per id and built
# it in Python (1.1-1.6 us an id on the ingest path). Each id is asyncpg's own UUID (a
# `uuid.UUID`, equal and hashing alike, what the driver returns for uuid columns), built
# in C.
_CHUNK = 4096
_buffer = b""
_offset = _CHUNK


def _forget_buffer() -> None:
    # A forked child must not hand out the ids its parent will hand out too.
    global _offset
    _offset = _CHUNK


os.register_at_fork(after_in_child=_forget_buffer)


def _random_v7_ids(size: int) -> bytes:
    """`size` bytes of version-7 RFC 9562 UUIDs back to back, their time bits random too
    (`time_ordered_id` puts the time in)."""
    ids = np.frombuffer(os.urandom(size), dtype=np.uint8).reshape(-1, 16).copy()
    ids[:, 6] = (ids[:, 6] & 0x0F) | 0x70
    ids[:, 8] = (ids[:, 8] & 0x3F) | 0x80
    return ids.tobytes()


def time_ordered_id() -> UUID:
    global _buffer, _offset
    if _offset >= _CHUNK:
        _buffer, _offset = _random_v7_ids(_CHUNK), 0
    millis = time.time_ns() // 1_000_000
    raw = millis.to_bytes(6, "big") + _buffer[_offset + 6 : _offset + 16]
    _offset += 16
    return FastUUID(raw)


class NewEvent(NamedTuple):
    """One row for the event store; the store assigns its position and stream version.
    (A named tuple: as immutable as a frozen dataclass, and a third of its cost to build,
    once per event of every batch.)"""

    event_id: UUID
    user_id: str
    event_type: str
    topic: str
    schema_version: int
    state: str
    body_hash: bytes
    occurred_at: datetime


def encode(event: events.InteractionEvent, event_id: UUID, fingerprint: bytes) -> NewEvent:
    """The domain event encoded by eventsourcing's mapper; `fingerprint` identifies the
    client's request body, so the same event id with another body is a conflict."""
    stored = events.encode(event)
    return NewEvent(
        event_id=event_id,
        user_id=event.originator_id,
        event_type=event.event_type,
        topic=stored.topic,
        schema_version=events.schema_version(event),
        state=stored.state.decode(),
        body_hash=hashlib.sha256(fingerprint).digest(),
        occurred_at=event.timestamp,
    )


class AppendResult(NamedTuple):
    event_id: UUID
    position: int | None
    stream_version: int | None
    outcome: str  # accepted | duplicate | conflict | rejected


async def append_group(
    conn: asyncpg.Connection, requests: Sequence[Sequence[NewEvent]]
) -> list[list[AppendResult]]:
    """Append the requests' events (event ids unique across the group); answers come
    back after the commit. A request with an event id already used for another body is
    refused whole."""
    numbers = [number for number, events_ in enumerate(requests) for _ in events_]
    rows = [event for events_ in requests for event in events_]
    if not rows:
        return [[] for _ in requests]
    # One column per field, transposed in C (rows are tuples).
    column = dict(zip(NewEvent._fields, zip(*rows, strict=True), strict=True))
    records = await conn.fetch(
        APPEND_SQL,
        columns.numbers(numbers),
        column["event_id"],
        columns.texts(column["user_id"]),
        columns.texts(column["event_type"]),
        columns.texts(column["topic"]),
        columns.numbers(column["schema_version"]),
        columns.texts(column["state"]),
        column["body_hash"],
        column["occurred_at"],
    )
    answers: list[list[AppendResult]] = [[] for _ in requests]
    for number, event, record in zip(numbers, rows, records, strict=True):
        answers[number].append(
            AppendResult(
                event.event_id, record["position"], record["stream_version"], record["outcome"]
            )
        )
    return answers


# Its own transaction, which need not wait for a flush: a notice lost in a crash only
# delays followers until their next poll.
WAKE_SQL = f"SELECT set_config('synchronous_commit', 'off', true), pg_notify('{CHANNEL}', '')"


# Commits landing this soon after a notice share the next one: a follower waits longer
# than that between its batches anyway (StoreFollower.min_interval), and a notice per
# commit cost the API process 6% of its CPU under load (py-spy, 6,000 POSTs/s).
NOTICE_GAP = 0.005


class Waker:
    """Notifies the store's channel after appends commit: commits that land while a
    notice is on its way, or within NOTICE_GAP of it, are covered by one more notice, so
    under load there are far fewer notices than commits, and the last commit is always
    followed by one. A commit after a quiet spell is noticed at once."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._due = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def committed(self) -> None:
        self._due.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="store-waker")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None

    async def _run(self) -> None:
        # Checked again once the connection is given back: a commit landing while it
        # was being released finds this task not done yet and starts no other one.
        while self._due.is_set():
            async with self._pool.acquire() as conn:
                while self._due.is_set():
                    self._due.clear()
                    try:
                        await conn.execute(WAKE_SQL)
                    except UNAVAILABLE_ERRORS as exc:  # followers poll meanwhile
                        log.debug("no wake-up notice: %r", exc)
                        return
                    await asyncio.sleep(NOTICE_GAP)


class Overloaded(RuntimeError):
    """Too many events wait for a commit already: the client should retry shortly."""


@dataclass
class _Pending:
    events: Sequence[NewEvent]
    future: asyncio.Future[list[AppendResult]] = field(repr=False)


class GroupCommitter:
    """Writers take waiting requests as groups and commit them. The first writer commits
    whatever waits. The others join only while at least `helper_min_events` events wait
    for a writer, which is what batch requests make: a second writer then keeps
    PostgreSQL's second core busy.

    For single POSTs the others stay out, so each group gathers what arrived during the
    last commit. Two writers taking turns at small groups cost PostgreSQL 2-3x the CPU per
    event of one writer (104-122 against 36-50 us, wrk -c64 on 2 cores, 3 of 4 runs), and
    they answered fewer POSTs (4,000-5,400 against 4,800-6,500 a second).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        concurrency: int = 2,
        max_group_events: int = 5000,
        helper_min_events: int = 1000,
        max_pending_events: int = 50_000,
        on_committed: Callable[[list[str]], None] | None = None,
    ) -> None:
        self._pool = pool
        self._waker = Waker(pool)
        self._on_committed = on_committed
        self._concurrency = concurrency
        self._max_group_events = max_group_events
        self._helper_min_events = helper_min_events
        self._max_pending_events = max_pending_events
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._pending_events = 0
        # Events in the queue (not yet taken by a writer); `_backlog` is set while they
        # are at least helper_min_events.
        self._queued_events = 0
        self._backlog = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._workers: list[asyncio.Task[None]] = []
        # Requests whose event id is already being written by another request of the
        # same group: they wait for the next group, where the store answers them.
        self._deferred: list[_Pending] = []

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._work(helper=i > 0), name=f"group-commit-{i}")
            for i in range(self._concurrency)
        ]

    async def stop(self) -> None:
        """Let queued requests commit, then stop the writers."""
        if self._workers:
            await self._idle.wait()
        await cancel_and_wait(self._workers)
        self._workers = []
        await self._waker.stop()

    @property
    def pending_events(self) -> int:
        return self._pending_events

    async def append(self, events_: Sequence[NewEvent]) -> list[AppendResult]:
        if self._pending_events + len(events_) > self._max_pending_events:
            raise Overloaded(f"{self._pending_events} events are waiting to be committed")
        future: asyncio.Future[list[AppendResult]] = asyncio.get_running_loop().create_future()
        self._pending_events += len(events_)
        self._idle.clear()
        try:
            self._queue.put_nowait(_Pending(events_, future))
            self._queued_events += len(events_)
            if self._queued_events >= self._helper_min_events:
                self._backlog.set()
            # Not shielded: a client that goes away cancels only its wait; the events are
            # committed all the same, and the writer skips a future already done.
            return await future
        finally:
            self._pending_events -= len(events_)
            if not self._pending_events:
                self._idle.set()

    async def _work(self, helper: bool) -> None:
        """One writer: it keeps its connection between groups (no pool round trip, no
        reset query per commit) and takes a fresh one after the store was unreachable.
        A helper writes only while a backlog waits."""
        conn: asyncpg.Connection | None = None
        try:
            while True:
                group = await (self._gather_backlog() if helper else self._gather())
                try:
                    if conn is None:
                        conn = await self._pool.acquire()
                    await self._commit(conn, group)
                except asyncio.CancelledError:
                    self._fail(group, StoreUnavailable("the service is shutting down"))
                    raise
                except UNAVAILABLE_ERRORS as exc:
                    log.warning("event store unavailable: %r", exc)
                    self._fail(group, StoreUnavailable(f"event store unavailable: {exc}"))
                    await self._release(conn)
                    conn = None
                except Exception as exc:
                    log.exception("append failed")
                    self._fail(group, exc)
                    await self._release(conn)
                    conn = None
        finally:
            await self._release(conn)

    async def _release(self, conn: asyncpg.Connection | None) -> None:
        if conn is not None:
            try:
                await self._pool.release(conn, timeout=5)
            except Exception as exc:  # a broken connection: the pool replaces it
                log.debug("append connection not released cleanly: %r", exc)
                conn.terminate()

    async def _gather(self) -> list[_Pending]:
        group = self._deferred
        self._deferred = []
        if not group:
            group.append(self._took(await self._queue.get()))
        return self._fill(group)

    async def _gather_backlog(self) -> list[_Pending]:
        while True:
            await self._backlog.wait()
            if self._queued_events >= self._helper_min_events:
                return self._fill([])
            self._backlog.clear()

    def _fill(self, group: list[_Pending]) -> list[_Pending]:
        """The group with more waiting requests, up to max_group_events."""
        size = sum(len(p.events) for p in group)
        while size < self._max_group_events and not self._queue.empty():
            pending = self._took(self._queue.get_nowait())
            group.append(pending)
            size += len(pending.events)
        return group

    def _took(self, pending: _Pending) -> _Pending:
        self._queued_events -= len(pending.events)
        if self._queued_events < self._helper_min_events:
            self._backlog.clear()
        return pending

    async def _commit(self, conn: asyncpg.Connection, group: list[_Pending]) -> None:
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
        for attempt in range(1, ATTEMPTS + 1):
            try:
                results = await append_group(conn, requests)
                break
            except (asyncpg.UniqueViolationError, *TRANSIENT_ERRORS) as exc:
                # Another process stored one of these event ids at the same moment for
                # another stream (retrying reads it back as a conflict), or the group
                # met another transaction in a deadlock: nothing of it was stored.
                if attempt == ATTEMPTS:
                    raise
                log.info("append retried", extra={"error": repr(exc), "attempt": attempt})
                await asyncio.sleep(0.005 * attempt)
        for pending, answers in zip(batch, results, strict=True):
            if not pending.future.done():
                pending.future.set_result(answers)
        self._waker.committed()
        if self._on_committed is not None:
            self._on_committed([r.outcome for answers in results for r in answers])

    def _fail(self, group: list[_Pending], exc: BaseException) -> None:
        for pending in group:
            if not pending.future.done():
                pending.future.set_exception(exc)
