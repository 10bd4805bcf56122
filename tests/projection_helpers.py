"""Shared by the projection tests: random traffic, waiting for projections, snapshots."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg
import orjson

from command_side.new_events import new_event
from event_store.append import GroupCommitter
from projections import user_features_fold
from projections.projection import Batch, Changes
from projections.simple_projections import NoSideEffects
from projections.status import projection_status
from schema import events
from schema.commands import (
    Command,
    FavoriteCommand,
    FeedbackCommand,
    RatingCommand,
    SearchCommand,
    WatchCommand,
)

PROJECTIONS = [
    "user_features",
    "item_stats",
    "audit",
    "model_feedback",
    "recommendation_outcomes",
]
GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]


async def add_catalog(conn: asyncpg.Connection, movies: int = 80) -> None:
    rng = random.Random(7)
    await conn.executemany(
        "INSERT INTO movies (movie_id, title, genres) VALUES ($1, $2, $3)",
        [(f"m{i}", f"Movie {i}", rng.sample(GENRES, 2)) for i in range(movies)],
    )


def random_command(rng: random.Random, users: int, movies: int = 80) -> Command:
    user = f"user{rng.randrange(users)}"
    movie = f"m{rng.randrange(movies)}"
    kind = rng.random()
    if kind < 0.35:
        return WatchCommand(
            user_id=user,
            movie_id=movie,
            progress=round(rng.random(), 3),
            watched_seconds=rng.randrange(7200),
        )
    if kind < 0.6:
        return RatingCommand(user_id=user, movie_id=movie, rating=rng.randrange(1, 11) / 2)
    if kind < 0.75:
        return FavoriteCommand(user_id=user, movie_id=movie, action=rng.choice(["add", "remove"]))
    if kind < 0.9:
        return SearchCommand(
            user_id=user,
            query=rng.choice(["star", "love", "space", "cat"]),
            clicked_movie_id=rng.choice([None, movie]),
        )
    return FeedbackCommand(
        user_id=user,
        movie_id=movie,
        recommendation_id=f"r{rng.randrange(20)}",
        action=rng.choice(["click", "like", "dismiss"]),
        rank=rng.randrange(1, 11),
    )


async def append_random(
    committer: GroupCommitter, total: int, users: int, seed: int = 1, writers: int = 8
) -> int:
    """Append `total` random events from concurrent writers in small groups."""
    per_writer = total // writers

    async def writer(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        left = per_writer
        while left:
            size = min(left, rng.choice([1, 2, 5, 20]))
            results = await committer.append(
                [new_event(random_command(rng, users)) for _ in range(size)]
            )
            assert all(r.outcome == "accepted" for r in results)
            left -= size

    await asyncio.gather(*(writer(i) for i in range(writers)))
    return per_writer * writers


async def wait_caught_up(
    pool: asyncpg.Pool, names: list[str] = PROJECTIONS, within: float = 120
) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        async with pool.acquire() as conn:
            report = await projection_status(conn, names)
        if all(p["lag_events"] == 0 and p["state"] == "running" for p in report):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"projections did not catch up: {report}")


async def snapshot(conn: asyncpg.Connection) -> dict[str, Any]:
    """Every read-model row, minus wall-clock fields that differ between runs."""
    features = []
    for row in await conn.fetch(
        "SELECT user_id, stream_version, position, state::text FROM user_features ORDER BY user_id"
    ):
        state = orjson.loads(row["state"])
        # What clients read, made of the state as the service makes it.
        doc = user_features_fold.document(state, "")
        doc.pop("updated_at")
        features.append((row["user_id"], row["stream_version"], row["position"], state, doc))
    user_items = [
        (r["user_id"], r["movie_id"], orjson.loads(r["signals"]))
        for r in await conn.fetch(
            "SELECT user_id, movie_id, signals::text FROM user_items ORDER BY 1, 2"
        )
    ]
    items = [
        tuple(r)
        for r in await conn.fetch(
            "SELECT movie_id, interactions, score, score_at, trend_key FROM item_stats ORDER BY 1"
        )
    ]
    feedback = [tuple(r) for r in await conn.fetch("SELECT * FROM model_feedback ORDER BY 1")]
    outcomes = [
        tuple(r) for r in await conn.fetch("SELECT * FROM recommendation_outcomes ORDER BY 1, 2, 3")
    ]
    stored = [
        tuple(r)
        for r in await conn.fetch(
            "SELECT event_id, position, user_id, event_type, at FROM audit_events "
            "WHERE stage = 'stored' ORDER BY position"
        )
    ]
    return {
        "user_features": features,
        "user_items": user_items,
        "item_stats": items,
        "model_feedback": feedback,
        "recommendation_outcomes": outcomes,
        "audit": stored,
    }


async def features_at(http: Any, user_id: str, version: int, within: float = 10) -> dict[str, Any]:
    """The user's feature document once it reflects `version` (the cache follows PostgreSQL
    by a moment: it is written right after the projection's transaction commits)."""
    deadline = time.monotonic() + within
    while True:
        answer = await http.get(f"/api/v1/features/{user_id}")
        if answer.status_code == 200 and answer.json()["stream_version"] >= version:
            document: dict[str, Any] = answer.json()
            return document
        if time.monotonic() > deadline:
            raise AssertionError(f"features of {user_id} not at version {version}: {answer.text}")
        await asyncio.sleep(0.02)


class FailingProjection(NoSideEffects):
    """A projection with a bug: it raises on every batch holding an event `fails_on` picks."""

    tables: tuple[str, ...] = ()

    def __init__(self, name: str, fails_on: Callable[[events.InteractionEvent], bool]) -> None:
        self.name = name
        self.fails_on = fails_on

    async def apply(
        self,
        conn: asyncpg.Connection,
        batch: Batch,
        tables: Mapping[str, str],
        *,
        defer: bool = False,
    ) -> Changes:
        if any(self.fails_on(event) for event in batch.events):
            raise RuntimeError(f"{self.name} cannot project this")
        return Changes()
