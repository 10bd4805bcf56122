"""The user_features read model in PostgreSQL, with a Redis copy for hot reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from cachetools import LRUCache

from event_store import streams
from projections import user_features_fold as fold
from projections.catalog import GenreLookup
from projections.projection import Batch, Changes
from schema import topics
from schema.cache import FeatureCache

UPSERT_SQL = """
INSERT INTO {table} AS f (user_id, stream_version, position, state, doc, updated_at)
SELECT * FROM unnest($1::text[], $2::integer[], $3::bigint[], $4::json[], $5::json[],
                     $6::timestamptz[])
ON CONFLICT (user_id) DO UPDATE
SET stream_version = excluded.stream_version, position = excluded.position,
    state = excluded.state, doc = excluded.doc, updated_at = excluded.updated_at
WHERE f.stream_version <= excluded.stream_version
"""

OUTBOX_SQL = """
INSERT INTO kafka_outbox (topic, key, value)
SELECT $1, * FROM unnest($2::text[], $3::bytea[])
"""


# A folded state's memory per byte of its JSON: 4.3 (1,000 movies) to 6.8 (one movie),
# measured with a deep sys.getsizeof on CPython 3.11. Encoding with orjson takes 1-80 us,
# walking the objects 50-2,500 us, so the cache weighs states by their JSON.
MEMORY_PER_JSON_BYTE = 5


def state_bytes(state: fold.State, json_bytes: int | None = None) -> int:
    """An estimate of the memory a cached state holds (`json_bytes`: the length of its
    JSON when the caller has encoded it already)."""
    return MEMORY_PER_JSON_BYTE * (len(orjson.dumps(state)) if json_bytes is None else json_bytes)


class StateCache:
    """Recently folded states, so a busy user's state is not parsed again on every batch.

    An entry is used only when the table still holds the same stream version, so writes
    by anyone else (a refresh, another process, a rolled-back batch) are never missed.
    Least recently used states go first once the states' estimated memory would pass
    `max_bytes`; a state's weight is taken when it is put, which is after every batch
    that changed it.
    """

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes = max_bytes
        # Each entry is (state, its weight), weighed once when it is put.
        self._states: LRUCache[tuple[str, str], tuple[fold.State, int]] = LRUCache(
            max_bytes, getsizeof=lambda entry: entry[1]
        )

    def get(self, table: str, user_id: str) -> fold.State | None:
        found = self._states.get((table, user_id))
        return found[0] if found is not None else None

    def put(
        self, table: str, user_id: str, state: fold.State, json_bytes: int | None = None
    ) -> None:
        try:
            self._states[(table, user_id)] = (state, state_bytes(state, json_bytes))
        except ValueError:  # larger than the whole budget: not worth keeping
            self._states.pop((table, user_id), None)

    @property
    def held_bytes(self) -> int:
        return int(self._states.currsize)


LOAD_SQL = """
SELECT f.user_id, f.stream_version,
       CASE WHEN f.stream_version = k.version THEN NULL ELSE f.state::text END AS state
FROM {table} AS f
JOIN unnest($1::text[], $2::integer[]) AS k(user_id, version) ON k.user_id = f.user_id
"""


async def load_states(
    conn: asyncpg.Connection, table: str, user_ids: list[str], cache: StateCache
) -> dict[str, fold.State]:
    cached = [cache.get(table, user) for user in user_ids]
    versions = [state["stream_version"] if state else -1 for state in cached]
    by_user = dict(zip(user_ids, cached, strict=True))
    states: dict[str, fold.State] = {}
    for row in await conn.fetch(LOAD_SQL.format(table=table), user_ids, versions):
        if row["state"] is None:
            state = by_user[row["user_id"]]
            assert state is not None
            states[row["user_id"]] = state
        else:
            states[row["user_id"]] = orjson.loads(row["state"])
    return states


@dataclass(frozen=True, slots=True)
class Saved:
    """What `save_states` wrote, with the JSON it encoded once for every later use (the
    Redis copy, processed_features, the state cache's weights)."""

    documents: dict[str, dict[str, Any]]
    encoded: dict[str, bytes]  # each document's JSON
    state_sizes: dict[str, int]  # the length of each state's JSON


async def save_states(
    conn: asyncpg.Connection, table: str, states: Mapping[str, fold.State], now: datetime
) -> Saved:
    users = list(states)
    documents = {user: fold.document(states[user], now) for user in users}
    encoded = {user: orjson.dumps(documents[user]) for user in users}
    state_json = [orjson.dumps(states[u]).decode() for u in users]
    await conn.execute(
        UPSERT_SQL.format(table=table),
        users,
        [states[u]["stream_version"] for u in users],
        [states[u]["position"] for u in users],
        state_json,
        [encoded[u].decode() for u in users],
        [now] * len(users),
    )
    sizes = {u: len(text) for u, text in zip(users, state_json, strict=True)}
    return Saved(documents, encoded, sizes)


class UserFeaturesProjection:
    name = "user_features"
    tables: tuple[str, ...] = ("user_features",)

    def __init__(self, cache: FeatureCache, genres: GenreLookup, *, publish: bool = False) -> None:
        self.feature_cache = cache
        self.genres = genres
        # With Kafka on, each changed document also goes to processed_features, through
        # the outbox in this same transaction: published if and only if it committed.
        self.publish = publish
        self.cache = StateCache()
        self._deferred: dict[str, dict[str, fold.State]] = {}

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
        pending = self._deferred.setdefault(table, {}) if defer else {}
        users = sorted({r.user_id for r in batch.records} - pending.keys())
        states = {**await load_states(conn, table, users, self.cache), **pending}
        changed: dict[str, fold.State] = {}
        for record, event in zip(batch.records, batch.events, strict=True):
            state = states.get(record.user_id) or fold.empty_state(record.user_id)
            states[record.user_id] = changed[record.user_id] = fold.apply(
                state, event, record.position, self.genres
            )
        if defer:
            pending.update(changed)
            return Changes()
        saved = await save_states(conn, table, changed, datetime.now(UTC))
        for user, state in changed.items():
            self.cache.put(table, user, state, saved.state_sizes[user])
        if self.publish:
            await conn.execute(
                OUTBOX_SQL, topics.FEATURES, list(saved.encoded), list(saved.encoded.values())
            )
        return Changes(documents=saved.documents, encoded=saved.encoded, cache_token=token)

    async def flush(self, conn: asyncpg.Connection, tables: Mapping[str, str]) -> None:
        """A rebuild's states, written with COPY (several times faster than an upsert of
        the same rows): the shadow table has one writer, so replacing a user's row is a
        delete of what an earlier flush wrote, then the copy."""
        table = tables["user_features"]
        pending = self._deferred.pop(table, {})
        if not pending:
            return
        now = datetime.now(UTC)
        users = list(pending)
        await conn.execute(f"DELETE FROM {table} WHERE user_id = ANY($1::text[])", users)
        await conn.copy_records_to_table(
            table,
            columns=["user_id", "stream_version", "position", "state", "doc", "updated_at"],
            records=(
                (
                    user,
                    state["stream_version"],
                    state["position"],
                    orjson.dumps(state).decode(),
                    orjson.dumps(fold.document(state, now)).decode(),
                    now,
                )
                for user, state in pending.items()
            ),
        )

    def discard(self, tables: Mapping[str, str]) -> None:
        self._deferred.pop(tables["user_features"], None)

    async def after_commit(self, changes: Changes) -> None:
        await self.feature_cache.store(changes.cache_token, changes.documents, changes.encoded)

    async def after_swap(self) -> None:
        # One new epoch drops every document of the replaced table at once.
        await self.feature_cache.invalidate()


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
        saved = await save_states(conn, "user_features", {user_id: state}, datetime.now(UTC))
    await cache.store(token, saved.documents, saved.encoded)
    return saved.documents[user_id]
