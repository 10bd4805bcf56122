"""The in-process caches are bounded by the memory their entries hold, least recently
used first out; the weights are estimates checked against tracemalloc here."""

from __future__ import annotations

import tracemalloc

import numpy as np
import orjson

from projections import user_features_fold as fold
from projections.user_features import StateCache, state_bytes
from query_side.user_vectors import UserVector, UserVectorCache


def vector(n: int, items: int = 3650, seen: int = 120) -> UserVector:
    return UserVector(np.full(items, n, dtype=np.float32), np.arange(seen, dtype=np.int64))


def state(n: int, movies: int) -> fold.State:
    folded = fold.empty_state(f"user-{n}")
    for i in range(movies):
        folded["items"][f"movie-{n}-{i}"] = {"progress": 0.95, "rating": 4.0, "at": f"2024-{n}"}
        folded["recent_movies"].append(f"movie-{n}-{i}")
    folded["genre_weights"] = {f"genre-{n}-{g}": g / 7 for g in range(18)}
    return folded


def test_user_vectors_go_least_recently_used_first_once_over_the_byte_budget() -> None:
    one = UserVectorCache(max_bytes=2**40)
    one.put(("user-0", "f" * 64), 1, vector(0))
    cache = UserVectorCache(max_bytes=3 * one.held_bytes + one.held_bytes // 2)
    for n in range(3):
        cache.put((f"user-{n}", "f" * 64), 1, vector(n))
    assert cache.get(("user-0", "f" * 64), 1) is not None  # now the most recently used
    cache.put(("user-3", "f" * 64), 1, vector(3))
    assert cache.get(("user-1", "f" * 64), 1) is None
    assert [cache.get((f"user-{n}", "f" * 64), 1) is not None for n in (0, 2, 3)] == [True] * 3
    assert cache.held_bytes <= cache.max_bytes
    cache.put(("huge", "f" * 64), 1, vector(9, items=10**6))  # over the whole budget
    assert cache.get(("huge", "f" * 64), 1) is None


def without_items(folded: fold.State) -> fold.State:
    return {k: v for k, v in folded.items() if k != "items"}


def weight(folded: fold.State, user: str) -> int:
    return state_bytes(orjson.dumps(without_items(folded)), ("user_features", user))


def test_states_are_bounded_by_their_estimated_memory() -> None:
    small, large = state(0, 2), state(1, 400)
    assert weight(large, "large") > 4 * weight(small, "small-a")
    cache = StateCache(max_bytes=weight(large, "large") + weight(small, "small-a") * 3 // 2)
    cache.put("user_features", "small-a", small)
    cache.put("user_features", "small-b", state(2, 2))
    cache.put("user_features", "large", large)
    assert cache.get("user_features", "small-a") is None  # the oldest made room
    # Kept as the user_features row holds it: the items live in user_items rows.
    assert cache.get("user_features", "large") == without_items(large)
    assert large["items"]  # putting it left the caller's state whole
    assert cache.version("user_features", "large") == large["stream_version"]
    assert cache.held_bytes <= cache.max_bytes
    # What get returns is a copy: folding into it leaves the kept state as it was.
    copy = cache.get("user_features", "large")
    assert copy is not None and copy is not large
    copy["recent_movies"].append("another")
    assert "another" not in (cache.get("user_features", "large") or {})["recent_movies"]
    # A state that grew is weighed again when put back; one over the budget is dropped.
    large["recent_movies"] += [f"movie-1-{i}" for i in range(400, 4000)]
    cache.put("user_features", "large", large)
    assert cache.get("user_features", "large") is None and cache.held_bytes <= cache.max_bytes


def test_the_estimates_are_close_to_what_the_entries_really_hold() -> None:
    vectors, states = UserVectorCache(max_bytes=2**40), StateCache(max_bytes=2**40)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(300):
            vectors.put((f"user-{n}", "f" * 64), n, vector(n))
        held = tracemalloc.get_traced_memory()[0] - before
        assert 0.8 * held <= vectors.held_bytes <= 1.6 * held
        before = tracemalloc.get_traced_memory()[0]
        for n in range(200):
            states.put("user_features", f"user-{n}", state(n, 50))
        held = tracemalloc.get_traced_memory()[0] - before
        assert 0.8 * held <= states.held_bytes <= 1.6 * held
    finally:
        tracemalloc.stop()
