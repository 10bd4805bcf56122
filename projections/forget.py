"""Forget a user: their events, read-model rows and cache entries go in one transaction.

The store erases the stream under the stream's lock (no append to it is in flight), and
the projections' locks are held meanwhile, so no batch in flight can write the user's
rows back. The audit trail keeps that an erasure
happened and how many events it removed, but not whose.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from event_store import locks, streams
from projections.rebuild import RebuildInProgress, running_rebuilds
from schema import topics
from schema.cache import FeatureCache

TOMBSTONE_TOPICS = (topics.INTERACTIONS, topics.FEATURES)
READ_MODEL_DELETES = (
    "DELETE FROM user_features WHERE user_id = $1",
    "DELETE FROM user_items WHERE user_id = $1",
    # The audit rows of the erased events go by their ids (in forget_user); this finds
    # the user's dead letters of messages that named no stored event.
    "DELETE FROM audit_events WHERE user_id = $1 AND stage = 'dead_lettered'",
    "DELETE FROM model_feedback WHERE user_id = $1",
    "DELETE FROM recommendation_outcomes WHERE user_id = $1",
    "DELETE FROM recommendations WHERE user_id = $1",
    # The user's next events start a new stream at version 1.
    "DELETE FROM applied_streams WHERE user_id = $1",
)


async def forget_user(
    pool: asyncpg.Pool,
    cache: FeatureCache,
    user_id: str,
    projections: Sequence[str],
    *,
    tombstones: bool = False,
) -> int:
    """Erase everything about `user_id`; returns how many events were removed."""
    token = cache.token()
    async with pool.acquire() as conn:
        async with conn.transaction():
            # A rebuild's replay may already hold this user's events (in memory, in
            # shadow tables) and would swap them back in: forgetting waits for a rebuild
            # to begin or refuses while one runs; the rebuild locks order the two.
            await locks.lock_rebuilds(conn, projections)
            if rebuilding := await running_rebuilds(conn, projections):
                raise RebuildInProgress(", ".join(rebuilding))
            # Not lock_projections: an erasure is answered once durable, like an append.
            await locks.take(conn, locks.LockClass.PROJECTION, projections)
            erased_events = await streams.erase_stream(conn, user_id)
            erased = len(erased_events)
            # By primary key: the audit trail keeps no index by user (migration 0014).
            await conn.execute(
                "DELETE FROM audit_events WHERE event_id = ANY($1::uuid[])",
                [e.event_id for e in erased_events],
            )
            for sql in READ_MODEL_DELETES:
                await conn.execute(sql, user_id)
            # Compacted consumers drop the user's key on a null value: a tombstone per topic
            # keyed by user, published by the relay when Kafka is on.
            if tombstones:
                await conn.execute(
                    "INSERT INTO kafka_outbox (topic, key, value)"
                    " SELECT t, $1, NULL FROM unnest($2::text[]) AS t",
                    user_id,
                    list(TOMBSTONE_TOPICS),
                )
            await conn.execute(
                "INSERT INTO audit_events (event_id, stage, position, user_id, event_type, detail)"
                " VALUES ($1, 'erased', 0, '', 'forget', $2::jsonb)",
                uuid.uuid4(),
                f'{{"events": {erased}}}',
            )
    # A tombstone, not a delete: a projector's write of the old stream may still be on its
    # way. If Redis cannot take it, the cache is suspect and its next epoch drops the
    # user's document with every other.
    if erased_events:
        await cache.erase(token, user_id, max(e.position for e in erased_events))
    return erased
