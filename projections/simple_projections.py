"""The projections without caches: item statistics, the audit trail, model feedback."""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

from event_store import columns, feed
from projections import item_stats_fold
from projections.projection import Batch, Changes
from schema import events

ITEM_UPSERT_SQL = """
INSERT INTO {table} AS s (movie_id, interactions, score, score_at, trend_key)
SELECT * FROM unnest(string_to_array($1, chr(31)), string_to_array($2, chr(31))::bigint[],
                     string_to_array($3, chr(31))::float8[], string_to_array($4, chr(31))::float8[],
                     string_to_array($5, chr(31))::float8[])
ON CONFLICT (movie_id) DO UPDATE
SET interactions = excluded.interactions, score = excluded.score,
    score_at = excluded.score_at, trend_key = excluded.trend_key
"""

AUDIT_STORED_SQL = """
INSERT INTO {table} (event_id, stage, position, user_id, event_type, at)
SELECT e, 'stored', p, u, t, r
FROM unnest($1::uuid[], string_to_array($2, chr(31))::bigint[], string_to_array($3, chr(31)),
            string_to_array($4, chr(31)), $5::timestamptz[]) AS x(e, p, u, t, r)
ON CONFLICT DO NOTHING
"""

FEEDBACK_SQL = """
INSERT INTO {table} (event_id, position, recommendation_id, user_id, movie_id, action, rank,
                     model_version, strategy, shown, occurred_at)
SELECT x.e, x.p, x.rid, x.u, x.m, x.a, x.rk, r.model_version, r.strategy,
       COALESCE(x.m = ANY(r.items), false), x.o
FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::integer[], $8::timestamptz[]) AS x(e, p, rid, u, m, a, rk, o)
LEFT JOIN recommendations AS r ON r.recommendation_id = x.rid
ON CONFLICT (event_id) DO NOTHING
"""


class NoSideEffects:
    async def flush(self, conn: asyncpg.Connection, tables: Mapping[str, str]) -> None:
        return None

    def discard(self, tables: Mapping[str, str]) -> None:
        return None

    async def after_commit(self, changes: Changes) -> None:
        return None

    async def after_swap(self) -> None:
        return None


class ItemStatsProjection(NoSideEffects):
    name = "item_stats"
    tables: tuple[str, ...] = ("item_stats",)

    def __init__(self) -> None:
        # A rebuild's statistics per shadow table, and whether that table was empty when
        # they began (then none needs reading back).
        self._deferred: dict[str, tuple[bool, dict[str, item_stats_fold.Stats]]] = {}

    async def apply(
        self,
        conn: asyncpg.Connection,
        batch: Batch,
        tables: Mapping[str, str],
        *,
        defer: bool = False,
    ) -> Changes:
        table = tables["item_stats"]
        touched = [
            (movie, event)
            for event in batch.events
            if (movie := item_stats_fold.movie_of(event)) is not None
        ]
        if defer:
            await self._apply_deferred(conn, touched, table)
            return Changes()
        stats = await self._load(conn, table, {m for m, _ in touched})
        changed: dict[str, item_stats_fold.Stats] = {}
        for movie, event in touched:
            current = stats.get(movie) or item_stats_fold.empty_stats(movie)
            stats[movie] = changed[movie] = item_stats_fold.apply(current, event)
        await self._write(conn, table, changed)
        return Changes()

    async def _apply_deferred(
        self,
        conn: asyncpg.Connection,
        touched: list[tuple[str, events.InteractionEvent]],
        table: str,
    ) -> None:
        """A rebuild's batch, folded into the statistics kept for `flush`."""
        if table not in self._deferred:
            empty = not await conn.fetchval(f"SELECT EXISTS (SELECT FROM {table})")
            self._deferred[table] = (empty, {})
        empty, pending = self._deferred[table]
        loaded = (
            {} if empty else await self._load(conn, table, {m for m, _ in touched} - pending.keys())
        )
        for movie, event in touched:
            current = pending.get(movie)
            if current is None:
                current = pending[movie] = loaded.get(movie) or item_stats_fold.empty_stats(movie)
            item_stats_fold.apply(current, event)

    @staticmethod
    async def _load(
        conn: asyncpg.Connection, table: str, movies: set[str]
    ) -> dict[str, item_stats_fold.Stats]:
        rows = await conn.fetch(
            f"SELECT movie_id, interactions, score, score_at FROM {table} "
            "WHERE movie_id = ANY(string_to_array($1, chr(31)))",
            columns.texts(sorted(movies)),
        )
        # By position: dict(record) took 2.5 times as long, for each movie of each batch.
        return {
            m: {"movie_id": m, "interactions": n, "score": score, "score_at": at}
            for m, n, score, at in rows
        }

    async def flush(self, conn: asyncpg.Connection, tables: Mapping[str, str]) -> None:
        table = tables["item_stats"]
        _, pending = self._deferred.pop(table, (True, {}))
        await self._write(conn, table, pending)

    def discard(self, tables: Mapping[str, str]) -> None:
        self._deferred.pop(tables["item_stats"], None)

    @staticmethod
    async def _write(
        conn: asyncpg.Connection, table: str, stats: Mapping[str, item_stats_fold.Stats]
    ) -> None:
        if not stats:
            return
        movies = sorted(stats)
        await conn.execute(
            ITEM_UPSERT_SQL.format(table=table),
            columns.texts(movies),
            columns.numbers([stats[m]["interactions"] for m in movies]),
            columns.numbers([stats[m]["score"] for m in movies]),
            columns.numbers([stats[m]["score_at"] for m in movies]),
            columns.numbers(
                [item_stats_fold.trend_key(stats[m]["score"], stats[m]["score_at"]) for m in movies]
            ),
        )


class AuditProjection(NoSideEffects):
    """Each event's trail starts with its "stored" row; see audit_batches for the rest."""

    name = "audit"
    tables: tuple[str, ...] = ("audit_events",)

    async def flush(self, conn: asyncpg.Connection, tables: Mapping[str, str]) -> None:
        """A rebuild replays only what the store knows: the rows recorded by others
        (erasures, dead letters, Kafka consumption) are carried over to the new table."""
        table = tables["audit_events"]
        if table != "audit_events":
            await conn.execute(
                f"INSERT INTO {table} SELECT * FROM audit_events WHERE stage <> 'stored'"
                " ON CONFLICT DO NOTHING"
            )

    async def apply(
        self,
        conn: asyncpg.Connection,
        batch: Batch,
        tables: Mapping[str, str],
        *,
        defer: bool = False,
    ) -> Changes:
        records = batch.records
        if defer:
            # A rebuild's shadow table: each event is replayed once into a table only the
            # rebuild writes ("stored" rows; the carried-over stages are others), so no
            # row can conflict. The batch is a stretch of the store in its order, and
            # each row is the store row's own columns: PostgreSQL copies them itself
            # (on its core, while the replay folds the other projections in Python).
            await feed.copy_audit_rows(
                conn, tables["audit_events"], records[0].checkpoint, records[-1].checkpoint
            )
            return Changes()
        await conn.execute(
            AUDIT_STORED_SQL.format(table=tables["audit_events"]),
            [r.event_id for r in records],
            columns.numbers([r.position for r in records]),
            columns.texts([r.user_id for r in records]),
            columns.texts([r.event_type for r in records]),
            [r.recorded_at for r in records],
        )
        return Changes()


class ModelFeedbackProjection(NoSideEffects):
    """Feedback joined to what the recommendation showed and which model made it."""

    name = "model_feedback"
    tables: tuple[str, ...] = ("model_feedback",)

    async def apply(
        self,
        conn: asyncpg.Connection,
        batch: Batch,
        tables: Mapping[str, str],
        *,
        defer: bool = False,
    ) -> Changes:
        pairs = [
            (record, event)
            for record, event in zip(batch.records, batch.events, strict=True)
            if isinstance(event, events.FeedbackGiven)
        ]
        if pairs:
            await conn.execute(
                FEEDBACK_SQL.format(table=tables["model_feedback"]),
                [r.event_id for r, _ in pairs],
                [r.position for r, _ in pairs],
                [e.recommendation_id for _, e in pairs],
                [r.user_id for r, _ in pairs],
                [e.movie_id for _, e in pairs],
                [e.action for _, e in pairs],
                [e.rank for _, e in pairs],
                [e.timestamp for _, e in pairs],
            )
        return Changes()
