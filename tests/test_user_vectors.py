"""The serving path's user vectors rank exactly as the reference scoring does.

Reference: `recommend.personal(model, history_of(state), k, exclude | seen_movies(state),
allowed)`, which reads the whole state per request. Serving: `user_vectors.read` once per
state, then `TrainedModel.rank` per request. Same items, same scores, same order, for
many users folded from random streams (times out of order, equal seconds with and without
fractions, times with other UTC offsets, movies the model does not know, zero weights),
for one- and two-block models and several history lengths.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cinemate.app import Services, build_app
from model import signals
from model.interactions import Interaction
from model.params import Params
from model.recommender import TrainedModel, train
from projections import user_features_fold
from query_side import recommend, user_vectors
from schema import events
from tests.projection_helpers import wait_caught_up

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
KNOWN = [str(i) for i in range(1, 61)]
MOVIES = [*KNOWN, "x1", "x2", "new:3"]  # the last three unknown to every model
PLUS_TWO = timezone(timedelta(hours=2))


def trained(params: Params) -> TrainedModel:
    rng = random.Random(7)
    records = []
    for user in range(80):
        for step in range(rng.randint(3, 20)):
            movie = rng.choice(KNOWN[: 20 + user % 40])
            records.append(Interaction(f"t{user}", movie, "rating", rng.randint(1, 10) / 2, step))
    return train(records, params)


MODELS = {
    "two blocks, 8 newest": Params(
        l2=5.0, min_item_users=1, max_history=8, sequence_weight=1.0, sequence_tau=2.0
    ),
    "one block, 50 newest": Params(l2=5.0, min_item_users=1, sequence_weight=0.0),
    "two blocks, all history": Params(
        l2=5.0, min_item_users=1, max_history=0, sequence_weight=1.0, value_power=0.5
    ),
    "plain EASE corner": Params(
        l2=5.0,
        min_item_users=1,
        value_power=0.0,
        recency_tau=0.0,
        max_history=3,
        sequence_weight=0.0,
    ),
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request: pytest.FixtureRequest) -> TrainedModel:
    return trained(MODELS[request.param])


def event(kind: str, version: int, at: datetime, movie: str, value: Any) -> Any:
    common: dict[str, Any] = {
        "originator_id": "u",
        "originator_version": version,
        "timestamp": at,
        "context": None,
    }
    if kind == "watch":
        return events.Watched(**common, movie_id=movie, progress=value, watched_seconds=None)
    if kind == "rating":
        return events.Rated(**common, movie_id=movie, rating=value)
    if kind == "favorite":
        return events.Favorited(**common, movie_id=movie, action=value)
    return events.FeedbackGiven(
        **common, movie_id=movie, recommendation_id="r", action=value, rank=None
    )


def random_state(rng: random.Random, size: int, offsets: bool) -> dict[str, Any]:
    state = user_features_fold.empty_state("u")
    for version in range(1, size + 1):
        kind = rng.choice(["watch", "watch", "rating", "favorite", "feedback"])
        value: Any = {
            "watch": rng.choice([0.0, 0.2, 0.5, 0.9, 1.0]),
            "rating": rng.randint(1, 10) / 2,
            "favorite": rng.choice(["add", "remove"]),
            "feedback": rng.choice(sorted(signals.FEEDBACK_WEIGHTS)),
        }[kind]
        # Seconds repeat often, some with a fraction: "…:05Z" and "…:05.25Z" in one state.
        at = T0 + timedelta(seconds=rng.randint(0, size // 2), milliseconds=rng.choice([0, 250]))
        if offsets and rng.random() < 0.1:
            at = at.astimezone(PLUS_TWO)
        user_features_fold.apply(
            state, event(kind, version, at, rng.choice(MOVIES), value), version, lambda m: ()
        )
    return state


def reference(
    model: TrainedModel,
    state: dict[str, Any],
    k: int,
    exclude: set[str],
    allowed: frozenset[str] | None,
) -> list[tuple[str, float]] | None:
    seen = recommend.seen_movies(state)
    return recommend.personal(model, recommend.history_of(state), k, exclude | seen, allowed)


def served(
    model: TrainedModel,
    state: dict[str, Any],
    k: int,
    exclude: set[str],
    allowed: frozenset[str] | None,
) -> list[tuple[str, float]] | None:
    vector = user_vectors.read(model, state)
    if vector is None:
        return None
    excluded = np.concatenate([vector.seen, model.indices(exclude)])
    allowed_at = None if allowed is None else model.indices(allowed)
    ranked = model.rank(vector.scores, k, excluded, allowed_at)
    return [(m, round(s, 6)) for m, s in ranked]


def test_many_users_rank_alike(model: TrainedModel) -> None:
    rng = random.Random(12)
    compared = personal = 0
    for user in range(400):
        state = random_state(rng, rng.choice([1, 3, 10, 40, 120, 300]), offsets=user % 3 == 0)
        for _ in range(3):
            k = rng.randint(1, 70)
            exclude = set(rng.sample(MOVIES, rng.randint(0, 5)))
            allowed = frozenset(rng.sample(MOVIES, 30)) if rng.random() < 0.3 else None
            want = reference(model, state, k, exclude, allowed)
            assert served(model, state, k, exclude, allowed) == want
            compared += 1
            personal += want is not None
    assert personal > compared / 2  # most of them are personal rankings, not cold starts


def test_only_unknown_movies_is_a_cold_start(model: TrainedModel) -> None:
    state = user_features_fold.empty_state("u")
    for version, movie in enumerate(["x1", "x2"], start=1):
        user_features_fold.apply(
            state, event("rating", version, T0, movie, 4.0), version, lambda m: ()
        )
    assert recommend.personal(model, recommend.history_of(state), 5, set(), None) is None
    assert user_vectors.read(model, state) is None


def test_old_known_movie_behind_many_unknown_ones_is_personal() -> None:
    """The newest `max_history` are all unknown, an older one is known: personal, from
    popularity (what the reference does), not a cold start."""
    model = trained(MODELS["plain EASE corner"])  # reads the 3 newest
    state = user_features_fold.empty_state("u")
    stream = [("5", 0), ("x1", 10), ("x2", 20), ("new:3", 30)]
    for version, (movie, seconds) in enumerate(stream, start=1):
        at = T0 + timedelta(seconds=seconds)
        user_features_fold.apply(
            state, event("rating", version, at, movie, 4.0), version, lambda m: ()
        )
    want = reference(model, state, 10, set(), None)
    assert (
        want is not None
        and [m for m, _ in want] == [m for m, _ in model.popular(11) if m != "5"][:10]
    )
    assert served(model, state, 10, set(), None) == want


def test_newest_part_falls_back_when_times_have_offsets() -> None:
    items = {
        "1": {"rating": 4.0, "at": "2026-11-26T10:00:00+02:00"},
        "2": {"rating": 4.0, "at": "2026-11-26T09:00:00Z"},
    }
    assert user_vectors.newest_part(items, 1) is None


def test_newest_part_orders_fractions_as_times() -> None:
    """ "…:05.5Z" is newer than "…:05Z" though it sorts before it as a string."""
    items = {
        "1": {"rating": 4.0, "at": "2026-11-26T10:00:05Z"},
        "2": {"rating": 4.0, "at": "2026-11-26T10:00:05.500000Z"},
        "3": {"rating": 4.0, "at": "2026-11-26T10:00:04.900000Z"},
    }
    part = user_vectors.newest_part(items, 1)
    assert part is not None and {h.movie_id for h in part} == {"1", "2"}


def test_newest_part_reads_on_past_movies_without_weight() -> None:
    """The newest movies have no weight (a watch at 0 %): not enough of the newest part
    counts, so the whole history is read."""
    items = {
        "1": {"progress": 0.0, "at": "2026-11-26T10:00:09Z"},
        "2": {"progress": 0.0, "at": "2026-11-26T10:00:08Z"},
        "3": {"rating": 4.0, "at": "2026-11-26T10:00:01Z"},
    }
    assert user_vectors.newest_part(items, 2) is None


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 80), st.integers(1, 30))
def test_random_streams_rank_alike(seed: int, size: int, k: int) -> None:
    model = trained(MODELS["two blocks, 8 newest"])
    state = random_state(random.Random(seed), size, offsets=seed % 2 == 0)
    assert served(model, state, k, set(), None) == reference(model, state, k, set(), None)


def test_cache_is_bounded_in_bytes_and_keyed_by_position() -> None:
    cache = user_vectors.UserVectorCache(max_bytes=50_000)
    vector = user_vectors.UserVector(np.ones(100, dtype=np.float32), np.arange(200))
    for user in range(200):
        cache.put((f"u{user}", "sha"), 7, vector)
    assert cache.held_bytes <= 50_000
    assert cache.get(("u199", "sha"), 7) is vector
    assert cache.get(("u199", "sha"), 8) is None  # a new event: another position
    assert cache.get(("u0", "sha"), 7) is None  # least recently used: gone
    assert cache.position(("u199", "sha")) == 7


async def test_large_models_read_states_in_a_thread_and_answer_alike(
    services: Services, db: asyncpg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past THREAD_ITEMS items a state is read in a worker thread: same answer."""
    from tests.test_recommend import COMEDIES, planted_model

    await services.models.load(planted_model(tmp_path / "planted.npz"))
    events = [
        {"type": "rating", "user_id": f"t{i}", "movie_id": COMEDIES[i], "rating": 5}
        for i in range(4)
    ]
    transport = httpx.ASGITransport(app=build_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://c") as http:
        assert (await http.post("/api/v1/events/batch", json={"events": events})).status_code == 202
        await wait_caught_up(services.pool)
        inline = [(await http.get(f"/api/v1/recommend/t{i}?limit=7")).json() for i in range(4)]
    monkeypatch.setattr(user_vectors, "THREAD_ITEMS", 1)
    transport = httpx.ASGITransport(app=build_app(services))  # new caches: read again
    async with httpx.AsyncClient(transport=transport, base_url="http://c") as http:
        threaded = [(await http.get(f"/api/v1/recommend/t{i}?limit=7")).json() for i in range(4)]
    assert [a["items"] for a in threaded] == [a["items"] for a in inline]
    assert {a["strategy"] for a in threaded} == {"personalized"}
