"""The in-process caches are bounded by the memory their entries hold, least recently
used first out; the weights are estimates checked against tracemalloc here."""

from __future__ import annotations

import tracemalloc

from projections import user_features_fold as fold
from projections.user_features import StateCache, state_bytes
from query_side.recommend_http import RankingCache, ranking_bytes


def ranking(n: int, movies: int = 10) -> tuple[str, list[tuple[str, float]]]:
    return "personalized", [(f"movie-{n}-{i}", i / 3) for i in range(movies)]


def key(n: int, exclude: frozenset[str] = frozenset()) -> tuple[object, ...]:
    return (f"user-{n}", 3, "f" * 64, 10, None, exclude)


def state(n: int, movies: int) -> fold.State:
    folded = fold.empty_state(f"user-{n}")
    for i in range(movies):
        folded["items"][f"movie-{n}-{i}"] = {"progress": 0.95, "rating": 4.0, "at": f"2024-{n}"}
        folded["recent_movies"].append(f"movie-{n}-{i}")
    folded["genre_weights"] = {f"genre-{n}-{g}": g / 7 for g in range(18)}
    return folded


def test_rankings_go_least_recently_used_first_once_over_the_byte_budget() -> None:
    one = ranking_bytes(key(0), ranking(0))
    cache = RankingCache(max_bytes=3 * one + one // 2)
    for n in range(3):
        cache.put(key(n), ranking(n))
    assert cache.get(key(0)) == ranking(0)  # now the most recently used
    cache.put(key(3), ranking(3))
    assert cache.get(key(1)) is None
    assert [cache.get(key(n)) is not None for n in (0, 2, 3)] == [True, True, True]
    assert cache.held_bytes <= cache.max_bytes


def test_a_ranking_weighs_its_key_too() -> None:
    excluded = frozenset(f"movie-{i:04d}" for i in range(500))
    assert (
        ranking_bytes(key(0, excluded), ranking(0)) > ranking_bytes(key(0), ranking(0)) + 500 * 40
    )
    cache = RankingCache(max_bytes=ranking_bytes(key(0), ranking(0)) * 4)
    cache.put(key(0, excluded), ranking(0))  # larger than the whole budget: not kept
    assert cache.get(key(0, excluded)) is None and cache.held_bytes == 0


def test_states_are_bounded_by_their_estimated_memory() -> None:
    small, large = state(0, 2), state(1, 400)
    assert state_bytes(large) > 20 * state_bytes(small)
    cache = StateCache(max_bytes=state_bytes(large) + state_bytes(small) * 3 // 2)
    cache.put("user_features", "small-a", small)
    cache.put("user_features", "small-b", state(2, 2))
    cache.put("user_features", "large", large)
    assert cache.get("user_features", "small-a") is None  # the oldest made room
    assert cache.get("user_features", "large") is large
    assert cache.held_bytes <= cache.max_bytes
    # A state that grew is weighed again when put back; one over the budget is dropped.
    for i in range(400, 2000):
        large["items"][f"movie-1-{i}"] = {"progress": 0.5, "at": "2024"}
    cache.put("user_features", "large", large)
    assert cache.get("user_features", "large") is None and cache.held_bytes <= cache.max_bytes


def test_the_estimates_are_close_to_what_the_entries_really_hold() -> None:
    rankings, states = RankingCache(max_bytes=2**40), StateCache(max_bytes=2**40)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(1000):
            rankings.put(key(n), ranking(n))
        held = tracemalloc.get_traced_memory()[0] - before
        assert 0.8 * held <= rankings.held_bytes <= 1.6 * held
        before = tracemalloc.get_traced_memory()[0]
        for n in range(200):
            states.put("user_features", f"user-{n}", state(n, 50))
        held = tracemalloc.get_traced_memory()[0] - before
        assert 0.8 * held <= states.held_bytes <= 1.6 * held
    finally:
        tracemalloc.stop()
