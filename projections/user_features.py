"""The user_features read model in PostgreSQL, with a Redis copy for hot reads."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis

from projections import user_features_fold as fold
from projections.catalog import GenreLookup
from projections.projection import Batch, Changes
from schema import events
from schema.cache import FEATURES_PREFIX, features_key

log = logging.getLogger("cinemate.projections")

# Writes a cached document only if it is not older than the one there: two writers can
# finish out of order (a refresh beside the projector), and the cache must not go back.
SET_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
  local version = tonumber(string.match(current, '"stream_version":(%d+)'))
  if version and version > tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""

UPSERT_SQL = """
INSERT INTO {table} AS f (user_id, stream_version, position, state, doc, updated_at)
SELECT * FROM unnest($1::text[], $2::integer[], $3::bigint[], $4::jsonb[], $5::jsonb[],
                     $6::timestamptz[])
ON CONFLICT (user_id) DO UPDATE
SET stream_version = excluded.stream_version, position = excluded.position,
    state = excluded.state, doc = excluded.doc, updated_at = excluded.updated_at
WHERE f.stream_version <= excluded.stream_version
"""


async def load_states(
    conn: asyncpg.Connection, table: str, user_ids: list[str]
) -> dict[str, fold.State]:
    rows = await conn.fetch(
        f"SELECT user_id, state::text FROM {table} WHERE user_id = ANY($1::text[])", user_ids
    )
    return {r["user_id"]: orjson.loads(r["state"]) for r in rows}


async def save_states(
    conn: asyncpg.Connection, table: str, states: Mapping[str, fold.State], now: datetime
) -> dict[str, dict[str, Any]]:
    documents = {user: fold.document(state, now) for user, state in states.items()}
    users = list(states)
    await conn.execute(
        UPSERT_SQL.format(table=table),
        users,
        [states[u]["stream_version"] for u in users],
        [states[u]["position"] for u in users],
        [orjson.dumps(states[u]).decode() for u in users],
        [orjson.dumps(documents[u]).decode() for u in users],
        [now] * len(users),
    )
    return documents


class UserFeaturesProjection:
    name = "user_features"
    tables: tuple[str, ...] = ("user_features",)

    def __init__(self, redis: aioredis.Redis, genres: GenreLookup) -> None:
        self.redis = redis
        self.genres = genres
        self._set_if_newer = redis.register_script(SET_IF_NEWER)

    async def apply(
        self, conn: asyncpg.Connection, batch: Batch, tables: Mapping[str, str]
    ) -> Changes:
        await self.genres.refresh(conn)
        table = tables["user_features"]
        users = sorted({r.user_id for r in batch.records})
        states = await load_states(conn, table, users)
        changed: dict[str, fold.State] = {}
        for record, event in zip(batch.records, batch.events, strict=True):
            state = states.get(record.user_id) or fold.empty_state(record.user_id)
            states[record.user_id] = changed[record.user_id] = fold.apply(
                state, event, record.position, self.genres
            )
        documents = await save_states(conn, table, changed, datetime.now(UTC))
        return Changes(documents=documents)

    async def after_commit(self, changes: Changes) -> None:
        await cache_documents(self.redis, self._set_if_newer, changes.documents)

    async def after_swap(self) -> None:
        try:
            async for key in self.redis.scan_iter(match=FEATURES_PREFIX + "*", count=1000):
                await self.redis.delete(key)
        except (aioredis.RedisError, OSError) as exc:
            log.warning("could not clear the features cache: %r", exc)


async def cache_documents(
    redis: aioredis.Redis, set_if_newer: Any, documents: Mapping[str, dict[str, Any]]
) -> None:
    """Best effort: PostgreSQL is the truth, and reads fall back to it."""
    if not documents:
        return
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for user, doc in documents.items():
                await set_if_newer(
                    keys=[features_key(user)],
                    args=[orjson.dumps(doc), doc["stream_version"]],
                    client=pipe,
                )
            await pipe.execute()
    except (aioredis.RedisError, OSError) as exc:
        log.warning("features cache not updated: %r", exc)


STREAM_SQL = """
SELECT position, originator_version, topic, payload::text AS state
FROM interaction_events WHERE originator_id = $1 ORDER BY originator_version
"""


async def refresh_user(
    pool: asyncpg.Pool, redis: aioredis.Redis, genres: GenreLookup, user_id: str
) -> dict[str, Any] | None:
    """Fold the user's whole stream from the store, store the result and return it."""
    async with pool.acquire() as conn:
        await genres.refresh(conn)
        rows = await conn.fetch(STREAM_SQL, user_id)
        if not rows:
            return None
        state = fold.empty_state(user_id)
        for row in rows:
            event = events.decode(
                user_id, row["originator_version"], row["topic"], row["state"].encode()
            )
            fold.apply(state, event, row["position"], genres)
        documents = await save_states(conn, "user_features", {user_id: state}, datetime.now(UTC))
    script = redis.register_script(SET_IF_NEWER)
    await cache_documents(redis, script, documents)
    return documents[user_id]
