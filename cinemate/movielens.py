"""MovieLens-format data in and out of the service: import into the store, train from it."""

from __future__ import annotations

import csv
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from command_side.catalog import upsert_movies
from command_side.new_events import new_events
from event_store import streams
from event_store.append import GroupCommitter
from model.interactions import FEEDBACK_WEIGHTS, Interaction
from schema import events
from schema.commands import MovieCommand, RatingCommand

# Fixed forever: the same rating row always gets the same event id, which makes an
# import idempotent and resumable (a repeat is answered "duplicate" and stored once).
MOVIELENS_NAMESPACE = uuid.UUID("6f1c1e52-3a55-4c36-9a2b-2c7d1b0f8e41")
CHUNK = 1000
_YEAR = re.compile(r"\((\d{4})\)\s*$")

Progress = Callable[[int], None]


def rating_event_id(user_id: str, movie_id: str, timestamp: str) -> uuid.UUID:
    return uuid.uuid5(MOVIELENS_NAMESPACE, f"movielens:{user_id}:{movie_id}:{timestamp}")


def read_movies(path: Path) -> Iterator[tuple[str, MovieCommand]]:
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            genres = [g for g in row["genres"].split("|") if g and g != "(no genres listed)"]
            year = _YEAR.search(row["title"])
            yield (
                row["movieId"],
                MovieCommand(
                    title=row["title"].strip(),
                    genres=genres,
                    year=int(year.group(1)) if year else None,
                ),
            )


def read_ratings(path: Path) -> list[RatingCommand]:
    """Every rating as the command a client would send, oldest first, so each user's
    stream is in time order."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = sorted(
            csv.DictReader(handle),
            key=lambda r: (int(r["timestamp"]), int(r["userId"]), int(r["movieId"])),
        )
    return [
        RatingCommand(
            user_id=row["userId"],
            movie_id=row["movieId"],
            rating=float(row["rating"]),
            event_id=rating_event_id(row["userId"], row["movieId"], row["timestamp"]),
            occurred_at=datetime.fromtimestamp(int(row["timestamp"]), UTC),
        )
        for row in rows
    ]


async def import_movielens(
    pool: asyncpg.Pool, committer: GroupCommitter, data_dir: Path, progress: Progress
) -> dict[str, int]:
    """Catalog from movies.csv, then ratings.csv as rating events through the same append
    path as POST /api/v1/events/batch, 1,000 per batch."""
    movies = list(read_movies(data_dir / "movies.csv"))
    async with pool.acquire() as conn:
        for start in range(0, len(movies), CHUNK):
            await upsert_movies(conn, movies[start : start + CHUNK])
    counts = {"movies": len(movies), "accepted": 0, "duplicate": 0}
    ratings = read_ratings(data_dir / "ratings.csv")
    for start in range(0, len(ratings), CHUNK):
        chunk = ratings[start : start + CHUNK]
        for result in await committer.append(new_events(chunk)):
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
        progress(len(chunk))
    return counts


def as_interaction(event: events.InteractionEvent) -> Interaction | None:
    """What the model learns from an event; searches carry no item preference."""
    at = event.timestamp.timestamp()
    user = event.originator_id
    if isinstance(event, events.Watched):
        return Interaction(user, event.movie_id, "watch", event.progress, at)
    if isinstance(event, events.Rated):
        return Interaction(user, event.movie_id, "rating", event.rating, at)
    if isinstance(event, events.Favorited):
        return Interaction(
            user, event.movie_id, "favorite", 1.0 if event.action == "add" else -1.0, at
        )
    if isinstance(event, events.FeedbackGiven):
        return Interaction(user, event.movie_id, "feedback", FEEDBACK_WEIGHTS[event.action], at)
    return None


async def read_interactions(
    pool: asyncpg.Pool, progress: Progress
) -> tuple[list[Interaction], int]:
    """Every interaction in the store, in position order, and the last position read."""
    interactions: list[Interaction] = []
    last = rows = 0
    async with pool.acquire() as conn:
        async with conn.transaction():
            async for position, event in streams.every_event(conn, skip_types=["search"]):
                interaction = as_interaction(event)
                if interaction is not None:
                    interactions.append(interaction)
                last = position
                rows += 1
                if rows % 10_000 == 0:
                    progress(10_000)
    progress(rows % 10_000)
    return interactions, last
