"""The user_features read model in PostgreSQL, with a Redis copy for hot reads.

A user's state is two tables: the running sums and lists in one user_features row, and
each movie's reduced signals (the state's `items`) in a user_items row of its own. A
batch reads and writes only the items of the movies its events name
(`user_features_fold.movie_of`), so an event's cost does not grow with the user's
history: one state holding every item was re-read, re-encoded and re-written whole for
each change (a user with 165 movies, MovieLens's mean, made a 12 KB row; with 2,698, 196
KB and 0.7 ms of Python per event). Readers that need the whole history (ranking)
gather the items back (query_side/recommend_http.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from cachetools import LRUCache

from event_store import columns, streams
from projections import user_features_fold as fold
from projections.bulk_load import indexes_built_after
from projections.catalog import GenreLookup
from projections.projection import Batch, Changes
from schema import topics
from schema.cache import FeatureCache

UPSERT_SQL = """
INSERT INTO {table} AS f (user_id, stream_version, position, state, updated_at)
SELECT u, v, p, s, $5::timestamptz
FROM unnest(string_to_array($1, chr(31)), string_to_array($2, chr(31))::integer[],
            string_to_array($3, chr(31))::bigint[], string_to_array($4, chr(31))::json[])
     AS x(u, v, p, s)
ON CONFLICT (user_id) DO UPDATE
SET stream_version = excluded.stream_version, position = excluded.position,
    state = excluded.state, updated_at = excluded.updated_at
WHERE f.stream_version <= excluded.stream_version
RETURNING f.user_id
"""
# A row holds the state, not the document made of it (migration 0016).
STORED_SQL = "SELECT state::text AS state, updated_at FROM user_features WHERE user_id = $1"

ITEMS_UPSERT_SQL = """
INSERT INTO {table} AS i (user_id, movie_id, signals)
SELECT * FROM unnest(string_to_array($1, chr(31)), string_to_array($2, chr(31)),
                     string_to_array($3, chr(31))::json[])
ON CONFLICT (user_id, movie_id) DO UPDATE SET signals = excluded.signals
"""

ITEMS_LOAD_SQL = """
SELECT i.user_id, i.movie_id, i.signals::text AS signals
FROM {table} AS i
JOIN unnest(string_to_array($1, chr(31)), string_to_array($2, chr(31))) AS k(user_id, movie_id)
  ON k.user_id = i.user_id AND k.movie_id = i.movie_id
"""

OUTBOX_SQL = """
INSERT INTO kafka_outbox (topic, key, value)
SELECT $1, * FROM unnest($2::text[], $3::bytea[])
"""


# Per cached state beyond its JSON: the bytes object's header, the key tuple and its two
# strings, the entry tuple, the cache's dict slot and ordering node.
ENTRY_BYTES = 400


def state_bytes(encoded: bytes, key: tuple[str, str]) -> int:
    """The memory a cached state holds: its JSON and the entry around it."""
    return len(encoded) + ENTRY_BYTES + sum(len(part) for part in key)


class StateCache:
    """Recently written states, so a busy user's state is not read back from PostgreSQL
    on every batch.

    Kept as their JSON (bytes), not as the folded dicts: the garbage collector does not
    walk bytes, and a worker holding a few hundred thousand folded states paused 0.5-0.9 s
    in each full collection (a gc callback in the worker under bench/freshness); parsing
    one back costs microseconds, and every batch folds into a fresh copy.

    An entry is used only when the table still holds the same stream version, so writes
    by anyone else (a refresh, another process, a rolled-back batch) are never missed.
    Least recently used states go first once their bytes would pass `max_bytes`.
    """

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes = max_bytes
        # (stream version, JSON, weight) per (table, user).
        self._states: LRUCache[tuple[str, str], tuple[int, bytes, int]] = LRUCache(
            max_bytes, getsizeof=lambda entry: entry[2]
        )

    def version(self, table: str, user_id: str) -> int | None:
        """The stream version of the state kept for the user, if any (no parsing)."""
        found = self._states.get((table, user_id))
        return found[0] if found is not None else None

    def get(self, table: str, user_id: str) -> fold.State | None:
        """The state kept, without items (as the user_features row holds it)."""
        found = self._states.get((table, user_id))
        if found is None:
            return None
        state: fold.State = orjson.loads(found[1])
        return state

    def put(
        self, table: str, user_id: str, state: fold.State, encoded: bytes | None = None
    ) -> None:
        """Keep `state` (`encoded`: its JSON without items, when the caller made it)."""
        key = (table, user_id)
        # A copy of exactly its length: orjson's own bytes keep the capacity it grew to
        # while encoding (16 KiB held for a 4 KiB state, measured with tracemalloc).
        data = bytes(memoryview(_without_items(state) if encoded is None else encoded))
        try:
            self._states[key] = (state["stream_version"], data, state_bytes(data, key))
        except ValueError:  # larger than the whole budget: not worth keeping
            self._states.pop(key, None)

    @property
    def held_bytes(self) -> int:
        return int(self._states.currsize)


LOAD_SQL = """
SELECT f.user_id, f.stream_version,
       CASE WHEN f.stream_version = k.version THEN NULL ELSE f.state::text END AS state
FROM {table} AS f
JOIN unnest(string_to_array($1, chr(31)), string_to_array($2, chr(31))::integer[])
     AS k(user_id, version) ON k.user_id = f.user_id
"""


def _without_items(state: fold.State) -> bytes:
    """The state's JSON as its user_features row holds it: every item has its own row."""
    items = state.pop("items")
    try:
        return orjson.dumps(state)
    finally:
        state["items"] = items


async def load_states(
    conn: asyncpg.Connection,
    tables: Mapping[str, str],
    touched: Mapping[str, set[str]],
    cache: StateCache,
) -> dict[str, fold.State]:
    """The states of the users in `touched`, each holding the items of just the movies
    given for it (`fold.movie_of` of its events): all that folding them reads."""
    table = tables["user_features"]
    user_ids = list(touched)
    versions = [cache.version(table, user) for user in user_ids]
    known = [-1 if version is None else version for version in versions]
    states: dict[str, fold.State] = {}
    for row in await conn.fetch(
        LOAD_SQL.format(table=table), columns.texts(user_ids), columns.numbers(known)
    ):
        if row["state"] is None:  # the table holds the version kept
            state = cache.get(table, row["user_id"])
            assert state is not None  # only this projection's apply changes the cache
        else:
            state = orjson.loads(row["state"])
        state["items"] = {}
        states[row["user_id"]] = state
    pairs = [(user, movie) for user in states for movie in touched[user]]
    await read_items(conn, tables["user_items"], pairs, states)
    return states


async def read_items(
    conn: asyncpg.Connection,
    table: str,
    pairs: Sequence[tuple[str, str]],
    states: Mapping[str, fold.State],
) -> None:
    """Put the stored items of these (user, movie) pairs into the users' states."""
    if not pairs:
        return
    found = await conn.fetch(
        ITEMS_LOAD_SQL.format(table=table),
        columns.texts([user for user, _ in pairs]),
        columns.texts([movie for _, movie in pairs]),
    )
    for row in found:
        states[row["user_id"]]["items"][row["movie_id"]] = orjson.loads(row["signals"])


@dataclass(frozen=True, slots=True)
class Saved:
    """What `save_states` wrote, with the JSON it encoded once for every later use (the
    Redis copy, processed_features, the state cache's weights)."""

    documents: dict[str, dict[str, Any]]
    encoded: dict[str, bytes]  # each document's JSON
    states: dict[str, bytes]  # each state's JSON, without items


def item_rows(states: Mapping[str, fold.State]) -> list[tuple[str, str, str]]:
    """(user, movie, signals JSON) of every item the states hold, in key order: writers
    lock rows in one order (a refresh beside the projector), so they never deadlock."""
    return sorted(
        (user, movie, orjson.dumps(item).decode())
        for user, state in states.items()
        for movie, item in state["items"].items()
    )


async def save_states(
    conn: asyncpg.Connection,
    tables: Mapping[str, str],
    states: Mapping[str, fold.State],
    now: datetime,
) -> Saved:
    """Write the states and the items they hold (those their batch loaded or added;
    the user's other items are unchanged). An older state never overwrites a newer one
    (a refresh racing the projector), and then neither do its items: they are written
    only for the users whose row this wrote, whose row lock this transaction holds."""
    users = list(states)
    updated_at = fold.iso(now)
    documents = {user: fold.document(states[user], updated_at) for user in users}
    encoded = {user: orjson.dumps(documents[user]) for user in users}
    state_json = {user: _without_items(states[user]) for user in users}
    written = await conn.fetch(
        UPSERT_SQL.format(table=tables["user_features"]),
        columns.texts(users),
        columns.numbers([states[u]["stream_version"] for u in users]),
        columns.numbers([states[u]["position"] for u in users]),
        columns.texts([state_json[u].decode() for u in users]),
        now,
    )
    rows = item_rows({row["user_id"]: states[row["user_id"]] for row in written})
    if rows:
        await conn.execute(
            ITEMS_UPSERT_SQL.format(table=tables["user_items"]),
            columns.texts([user for user, _, _ in rows]),
            columns.texts([movie for _, movie, _ in rows]),
            columns.texts([signals for _, _, signals in rows]),
        )
    return Saved(documents, encoded, state_json)


@dataclass(slots=True)
class Deferred:
    """A rebuild's states for one table, kept until `flush`, and whether that table was
    empty when they began (then none of them needs reading back or replacing)."""

    empty: bool
    states: dict[str, fold.State] = field(default_factory=dict)


class UserFeaturesProjection:
    name = "user_features"
    tables: tuple[str, ...] = ("user_features", "user_items")

    def __init__(self, cache: FeatureCache, genres: GenreLookup, *, publish: bool = False) -> None:
        self.feature_cache = cache
        self.genres = genres
        # With Kafka on, each changed document also goes to processed_features, through
        # the outbox in this same transaction: published if and only if it committed.
        self.publish = publish
        self.cache = StateCache()
        self._deferred: dict[str, Deferred] = {}

    async def apply(
        self,
        conn: asyncpg.Connection,
        batch: Batch,
        tables: Mapping[str, str],
        *,
        defer: bool = False,
    ) -> Changes:
        # The cache epoch before reading the states: a document computed now is never
        # cached under an epoch that began after (see schema.cache).
        token = self.feature_cache.token()
        # The batch's events are read: a catalog change made before any of them was
        # accepted is visible now (the movies PUT with them fold with their genres).
        await self.genres.refresh(conn, current=True)
        table = tables["user_features"]
        if defer:
            await self._apply_deferred(conn, batch, tables)
            return Changes()
        touched: dict[str, set[str]] = {}
        for record, event in zip(batch.records, batch.events, strict=True):
            movies = touched.setdefault(record.user_id, set())
            if (movie := fold.movie_of(event)) is not None:
                movies.add(movie)
        states = await load_states(conn, tables, touched, self.cache)
        changed: dict[str, fold.State] = {}
        for record, event in zip(batch.records, batch.events, strict=True):
            state = states.get(record.user_id) or fold.empty_state(record.user_id)
            states[record.user_id] = changed[record.user_id] = fold.apply(
                state, event, record.position, self.genres
            )
        saved = await save_states(conn, tables, changed, datetime.now(UTC))
        for user, state in changed.items():
            self.cache.put(table, user, state, saved.states[user])
        if self.publish:
            await conn.execute(
                OUTBOX_SQL, topics.FEATURES, list(saved.encoded), list(saved.encoded.values())
            )
        return Changes(documents=saved.documents, encoded=saved.encoded, cache_token=token)

    async def _apply_deferred(
        self, conn: asyncpg.Connection, batch: Batch, tables: Mapping[str, str]
    ) -> None:
        """A rebuild's batch, folded into the states kept for `flush`. Nothing is read
        back from a table that was empty when the rebuild first wrote to it and got no
        flush since (a fresh shadow: the only case until FLUSH_EVERY_EVENTS)."""
        table = tables["user_features"]
        deferred = self._deferred.get(table)
        if deferred is None:
            empty = not await conn.fetchval(f"SELECT EXISTS (SELECT FROM {table})")
            deferred = self._deferred[table] = Deferred(empty)
        pending = deferred.states
        if not deferred.empty:
            await self._read_back(conn, batch, tables, pending)
        for record, event in zip(batch.records, batch.events, strict=True):
            user = record.user_id
            state = pending.get(user)
            if state is None:
                state = pending[user] = fold.empty_state(user)
            fold.apply(state, event, record.position, self.genres)

    async def _read_back(
        self,
        conn: asyncpg.Connection,
        batch: Batch,
        tables: Mapping[str, str],
        pending: dict[str, fold.State],
    ) -> None:
        """What a flush wrote that the batch folds into: the states of users not held,
        with the items their events name, and the named items that states held lack
        (a state read back holds only the items its batches touched)."""
        new: dict[str, set[str]] = {}
        missing: set[tuple[str, str]] = set()
        for record, event in zip(batch.records, batch.events, strict=True):
            movie = fold.movie_of(event)
            held = pending.get(record.user_id)
            if held is None:
                movies = new.setdefault(record.user_id, set())
                if movie is not None:
                    movies.add(movie)
            elif movie is not None and movie not in held["items"]:
                missing.add((record.user_id, movie))
        if new:
            pending.update(await load_states(conn, tables, new, self.cache))
        await read_items(conn, tables["user_items"], sorted(missing), pending)

    async def flush(self, conn: asyncpg.Connection, tables: Mapping[str, str]) -> None:
        """A rebuild's states, written with COPY (several times faster than an upsert of
        the same rows): the shadow table has one writer, so replacing a user's row is a
        delete of what an earlier flush wrote, then the copy."""
        table, items_table = tables["user_features"], tables["user_items"]
        deferred = self._deferred.pop(table, None)
        if deferred is None or not deferred.states:
            return
        pending = deferred.states
        now = datetime.now(UTC)
        # Each item once, in no particular order (the shadow has one writer).
        rows = [
            (user, movie, orjson.dumps(item).decode())
            for user, state in pending.items()
            for movie, item in state["items"].items()
        ]
        if not deferred.empty:
            users = list(pending)
            await conn.execute(f"DELETE FROM {table} WHERE user_id = ANY($1::text[])", users)
            # A state read back after an earlier flush holds only the items its batches
            # touched: those replace their rows, the others stay.
            await conn.execute(
                f"DELETE FROM {items_table} AS i USING unnest($1::text[], $2::text[]) AS k(u, m)"
                " WHERE i.user_id = k.u AND i.movie_id = k.m",
                [user for user, _, _ in rows],
                [movie for _, movie, _ in rows],
            )
        # Into a fresh shadow, every state is new: its indexes are built after the rows.
        async with (
            indexes_built_after(conn, [table, items_table]) if deferred.empty else nullcontext()
        ):
            await conn.copy_records_to_table(
                table,
                columns=["user_id", "stream_version", "position", "state", "updated_at"],
                records=(
                    (
                        user,
                        state["stream_version"],
                        state["position"],
                        _without_items(state).decode(),
                        now,
                    )
                    for user, state in pending.items()
                ),
            )
            await conn.copy_records_to_table(
                items_table, columns=["user_id", "movie_id", "signals"], records=rows
            )

    def discard(self, tables: Mapping[str, str]) -> None:
        self._deferred.pop(tables["user_features"], None)

    async def after_commit(self, changes: Changes) -> None:
        await self.feature_cache.store(changes.cache_token, changes.documents, changes.encoded)

    async def after_swap(self) -> None:
        # One new epoch drops every document of the replaced table at once.
        await self.feature_cache.invalidate()


async def stored_document(pool: asyncpg.Pool, user_id: str) -> dict[str, Any] | None:
    """The user's feature document as the live table has it (built from the state it
    holds), or None."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(STORED_SQL, user_id)
    if row is None:
        return None
    return fold.document(orjson.loads(row["state"]), fold.iso(row["updated_at"]))


async def refresh_user(
    pool: asyncpg.Pool, cache: FeatureCache, genres: GenreLookup, user_id: str
) -> dict[str, Any] | None:
    """Fold the user's whole stream from the store, store the result and return it."""
    token = cache.token()
    async with pool.acquire() as conn:
        stream = await streams.read_stream(conn, user_id)
        if not stream:
            return None
        await genres.refresh(conn, current=True)
        state = fold.empty_state(user_id)
        for stored in stream:
            fold.apply(state, stored.event, stored.position, genres)
        live = {t: t for t in UserFeaturesProjection.tables}
        saved = await save_states(conn, live, {user_id: state}, datetime.now(UTC))
    await cache.store(token, saved.documents, saved.encoded)
    return saved.documents[user_id]
