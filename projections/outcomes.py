"""Online outcomes of recommendations: clicks and conversions, per recommendation.

What was shown is not in the event store: the query side records each served
recommendation (`recommendations`, see query_side.recommend_http.RECORD_SQL) before it
answers. This projection folds the events that can credit one (feedback clicks; watches,
ratings, favorites) and reads that table to find what they credit:

- a click: a "click" feedback event naming a recommendation of the same user that showed
  the movie;
- a conversion: a watch with progress >= 0.5, a rating >= 4 or a favorite "add" of a
  movie that one of the user's recommendations showed in the 24 h before the event's
  `occurred_at` (shown_at <= occurred_at < shown_at + 24 h).

Invariant: a recommendation row commits before its answer leaves the service, so any
event its viewer sends after seeing it is projected after the row is visible. Both times
compared are stored (`created_at` of the row, `occurred_at` of the event), so a rebuild,
which replays the whole store against the recommendations kept, recomputes the same
rows. What a rebuild cannot give back: credits of recommendation rows lost (recorded
without waiting for the WAL flush, so a crash may drop the latest) or erased with their
user; and a live fold never credits a recommendation recorded after it ran, while a
rebuild would if its `created_at` is not after the event's `occurred_at` (a client clock
ahead of the server's).
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

from event_store import columns
from projections.projection import Batch, Changes
from projections.simple_projections import NoSideEffects
from schema import events

CONVERSION_WINDOW = "24 hours"
MIN_PROGRESS = 0.5
MIN_RATING = 4.0

# Grouped before inserting: one row per key in the statement, the earliest event time;
# an existing row keeps the earlier of the two (a batch boundary changes nothing).
CLICKS_SQL = """
INSERT INTO {table} AS o (recommendation_id, movie_id, outcome, model_version, user_id,
                          shown_at, first_at)
SELECT r.recommendation_id, x.m, 'click', r.model_version, r.user_id, r.created_at, min(x.o)
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS x(rid, u, m, o)
JOIN recommendations AS r
  ON r.recommendation_id = x.rid AND r.user_id = x.u AND x.m = ANY(r.items)
GROUP BY r.recommendation_id, x.m, r.model_version, r.user_id, r.created_at
ON CONFLICT (recommendation_id, movie_id, outcome)
DO UPDATE SET first_at = LEAST(o.first_at, excluded.first_at)
"""

CONVERSIONS_SQL = f"""
INSERT INTO {{table}} AS o (recommendation_id, movie_id, outcome, model_version, user_id,
                          shown_at, first_at)
SELECT r.recommendation_id, x.m, 'conversion', r.model_version, r.user_id, r.created_at,
       min(x.o)
FROM unnest(string_to_array($1, chr(31)), string_to_array($2, chr(31)), $3::timestamptz[])
     AS x(u, m, o)
JOIN recommendations AS r
  ON r.user_id = x.u AND r.created_at <= x.o
 AND r.created_at > x.o - interval '{CONVERSION_WINDOW}' AND x.m = ANY(r.items)
GROUP BY r.recommendation_id, x.m, r.model_version, r.user_id, r.created_at
ON CONFLICT (recommendation_id, movie_id, outcome)
DO UPDATE SET first_at = LEAST(o.first_at, excluded.first_at)
"""


def converts(event: events.InteractionEvent) -> str | None:
    """The movie this event converts, if it is a conversion signal."""
    match event:
        case events.Watched() if event.progress >= MIN_PROGRESS:
            return event.movie_id
        case events.Rated() if event.rating >= MIN_RATING:
            return event.movie_id
        case events.Favorited() if event.action == "add":
            return event.movie_id
    return None


class OutcomesProjection(NoSideEffects):
    name = "recommendation_outcomes"
    tables: tuple[str, ...] = ("recommendation_outcomes",)

    async def apply(
        self,
        conn: asyncpg.Connection,
        batch: Batch,
        tables: Mapping[str, str],
        *,
        defer: bool = False,
    ) -> Changes:
        table = tables["recommendation_outcomes"]
        clicks = [
            e for e in batch.events if isinstance(e, events.FeedbackGiven) and e.action == "click"
        ]
        if clicks:
            await conn.execute(
                CLICKS_SQL.format(table=table),
                [e.recommendation_id for e in clicks],
                [e.originator_id for e in clicks],
                [e.movie_id for e in clicks],
                [e.timestamp for e in clicks],
            )
        conversions = [(e, m) for e in batch.events if (m := converts(e)) is not None]
        if conversions:
            await conn.execute(
                CONVERSIONS_SQL.format(table=table),
                columns.texts([e.originator_id for e, _ in conversions]),
                columns.texts([m for _, m in conversions]),
                [e.timestamp for e, _ in conversions],
            )
        return Changes()
