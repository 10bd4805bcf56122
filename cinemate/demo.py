"""`cinemate demo`: a generated catalog and viewers with clear tastes, so a newcomer sees
real recommendations a minute after installing (no external data needed)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from command_side.catalog import upsert_movies
from command_side.new_events import new_events
from event_store.append import GroupCommitter
from schema.commands import Command, FavoriteCommand, MovieCommand, RatingCommand, WatchCommand

DEMO_NAMESPACE = uuid.UUID("1e0c7a0e-5a8f-4c55-9a6e-2b1d0f3c9d77")
GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Animation", "Thriller"]
_ADJECTIVES = [
    "Silent",
    "Last",
    "Golden",
    "Broken",
    "Hidden",
    "Electric",
    "Lonely",
    "Wild",
    "Crimson",
    "Endless",
    "Little",
    "Midnight",
]
_NOUNS = [
    "Harbor",
    "Planet",
    "Garden",
    "Signal",
    "Promise",
    "Empire",
    "Detective",
    "Summer",
    "Machine",
    "River",
    "Heart",
    "Frontier",
]


def demo_catalog(movies: int = 300, seed: int = 7) -> list[tuple[str, MovieCommand]]:
    rng = random.Random(seed)
    catalog = []
    for i in range(1, movies + 1):
        genres = rng.sample(GENRES, rng.choice([1, 2, 2, 3]))
        title = f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} ({rng.randint(1975, 2025)})"
        catalog.append(
            (f"demo{i}", MovieCommand(title=title, genres=genres, year=int(title[-5:-1])))
        )
    return catalog


def demo_events(
    catalog: list[tuple[str, MovieCommand]],
    users: int = 400,
    seed: int = 11,
    now: datetime | None = None,
) -> list[Command]:
    """Viewers who each love one or two genres: most of what they watch, rate and keep
    as favorites comes from those, the rest is curiosity. Oldest first."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    by_genre = {g: [m for m, movie in catalog if g in movie.genres] for g in GENRES}
    every = [m for m, _ in catalog]
    commands: list[tuple[datetime, Command]] = []
    for u in range(1, users + 1):
        user = f"viewer{u}"
        loves = rng.sample(GENRES, rng.choice([1, 2]))
        at = now - timedelta(days=30) + timedelta(minutes=rng.randrange(600))
        for n in range(rng.randint(12, 35)):
            liked = rng.random() < 0.8
            pool = by_genre[rng.choice(loves)] if liked else every
            movie = rng.choice(pool)
            at += timedelta(minutes=rng.randint(20, 1200))
            if at > now - timedelta(minutes=10):
                break
            event_id = uuid.uuid5(DEMO_NAMESPACE, f"{user}:{n}")
            kind = rng.random()
            command: Command
            if kind < 0.5:
                progress = round(rng.uniform(0.7, 1.0) if liked else rng.uniform(0.05, 0.5), 2)
                command = WatchCommand(
                    user_id=user,
                    movie_id=movie,
                    progress=progress,
                    watched_seconds=int(progress * 6000),
                    event_id=event_id,
                    occurred_at=at,
                )
            elif kind < 0.9:
                rating = rng.choice([4.0, 4.5, 5.0]) if liked else rng.choice([1.5, 2.0, 3.0])
                command = RatingCommand(
                    user_id=user, movie_id=movie, rating=rating, event_id=event_id, occurred_at=at
                )
            else:
                command = FavoriteCommand(
                    user_id=user,
                    movie_id=movie,
                    action="add" if liked else "remove",
                    event_id=event_id,
                    occurred_at=at,
                )
            commands.append((at, command))
    commands.sort(key=lambda pair: pair[0])
    return [command for _, command in commands]


async def load_demo(
    pool: asyncpg.Pool, committer: GroupCommitter, progress: Callable[[int], None]
) -> dict[str, int]:
    catalog = demo_catalog()
    async with pool.acquire() as conn:
        await upsert_movies(conn, catalog)
    commands = demo_events(catalog)
    counts = {"movies": len(catalog), "accepted": 0, "duplicate": 0}
    for start in range(0, len(commands), 1000):
        chunk = commands[start : start + 1000]
        for result in await committer.append(new_events(chunk)):
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
        progress(len(chunk))
    return counts
