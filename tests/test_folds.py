"""The projections' folds as pure functions."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from projections import item_stats_fold, user_features_fold
from schema import events

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
GENRES = {"m1": ("Comedy",), "m2": ("Drama", "Comedy"), "m3": ("Horror",)}


def genres_of(movie_id: str) -> tuple[str, ...]:
    return GENRES.get(movie_id, ())


def ev(cls: type[events.InteractionEvent], version: int, minutes: int = 0, **fields: Any) -> Any:
    return cls(
        originator_id="u1",
        originator_version=version,
        timestamp=T0 + timedelta(minutes=minutes),
        context=None,
        **fields,
    )


def fold_all(stream: list[events.InteractionEvent]) -> user_features_fold.State:
    state = user_features_fold.empty_state("u1")
    for position, event in enumerate(stream, start=100):
        user_features_fold.apply(state, event, position, genres_of)
    return state


STREAM = [
    ev(events.Watched, 1, 0, movie_id="m1", progress=0.95, watched_seconds=5000),
    ev(events.Searched, 2, 1, query="star wars", results=["m1"], clicked_movie_id=None),
    ev(events.Watched, 3, 2, movie_id="m2", progress=0.2, watched_seconds=400),
    ev(events.Rated, 4, 3, movie_id="m2", rating=3.0),
    ev(events.Favorited, 5, 4, movie_id="m3", action="add"),
    ev(events.Favorited, 6, 5, movie_id="m1", action="add"),
    ev(events.Rated, 7, 6, movie_id="m1", rating=4.0),
    ev(events.Searched, 8, 7, query="comedy", results=[], clicked_movie_id=None),
    ev(events.Favorited, 9, 8, movie_id="m3", action="remove"),
    ev(events.FeedbackGiven, 10, 9, movie_id="m2", recommendation_id="r1", action="click", rank=1),
]


def test_document_has_the_spec_shape_and_values() -> None:
    doc = user_features_fold.document(fold_all(STREAM), user_features_fold.iso(T0))
    assert doc["stream_version"] == 10 and doc["position"] == 109
    assert doc["event_counts"] == {
        "watch": 2,
        "search": 2,
        "rating": 2,
        "favorite": 3,
        "feedback": 1,
    }
    assert doc["watch"] == {
        "count": 2,
        "total_seconds": 5400,
        "mean_progress": 0.575,
        "completed_count": 1,
    }
    assert doc["ratings"] == {"count": 2, "mean": 3.5}
    assert doc["favorites"] == ["m1"]
    assert doc["recent_movies"] == ["m2", "m3", "m1"]
    assert doc["recent_searches"] == ["comedy", "star wars"]
    assert doc["first_event_at"] == "2026-11-26T10:00:00Z"
    assert doc["last_event_at"] == "2026-11-26T10:09:00Z"
    assert doc["top_genres"][0]["genre"] == "Comedy"
    assert math.isclose(sum(g["weight"] for g in doc["top_genres"]), 1.0, abs_tol=1e-3)
    assert "Horror" not in [g["genre"] for g in doc["top_genres"]]  # added then removed


def test_replayed_or_old_events_change_nothing() -> None:
    once = fold_all(STREAM)
    again = fold_all(STREAM)
    for position, event in enumerate(STREAM, start=100):
        user_features_fold.apply(again, event, position, genres_of)
    assert again == once


def test_recent_lists_are_bounded_and_newest_first() -> None:
    stream = [ev(events.Rated, v, v, movie_id=f"m{v}", rating=3.0) for v in range(1, 61)]
    stream += [
        ev(events.Searched, 60 + v, 60 + v, query=f"q{v}", results=[], clicked_movie_id=None)
        for v in range(1, 13)
    ]
    doc = user_features_fold.document(fold_all(stream), user_features_fold.iso(T0))
    assert doc["recent_movies"][:2] == ["m60", "m59"] and len(doc["recent_movies"]) == 50
    assert doc["recent_searches"][:2] == ["q12", "q11"] and len(doc["recent_searches"]) == 10


def test_trend_score_decays_with_half_life_and_ignores_order() -> None:
    def feed(order: list[int]) -> dict[str, Any]:
        stats = item_stats_fold.empty_stats("m1")
        for days in order:
            rating = ev(events.Rated, 1, days * 24 * 60, movie_id="m1", rating=5.0)
            item_stats_fold.apply(stats, rating)
        return stats

    forward, backward = feed([0, 7]), feed([7, 0])
    assert forward["score"] == pytest.approx(1.0 + 0.5)  # one week later, half the weight
    assert backward["score"] == pytest.approx(forward["score"])
    assert forward["interactions"] == backward["interactions"] == 2


def test_trend_key_orders_like_decayed_scores() -> None:
    week = 7 * 86_400
    recent = item_stats_fold.trend_key(1.0, 10 * week)
    older_but_bigger = item_stats_fold.trend_key(3.0, 9 * week)  # 3 * 0.5 = 1.5 > 1.0
    much_older = item_stats_fold.trend_key(3.0, 8 * week)  # 3 * 0.25 = 0.75 < 1.0
    assert older_but_bigger > recent > much_older
    assert item_stats_fold.trend_key(-1.0, week) == -math.inf


def test_first_and_last_event_times_compare_as_times_not_strings() -> None:
    # "10:00:00.500000Z" sorts before "10:00:00Z" as a string, yet is half a second later.
    whole, later = T0, T0 + timedelta(milliseconds=500)
    for order in ([whole, later], [later, whole]):
        stream: list[events.InteractionEvent] = [
            events.Watched(
                originator_id="u1",
                originator_version=version,
                timestamp=at,
                context=None,
                movie_id="m1",
                progress=0.5,
                watched_seconds=None,
            )
            for version, at in enumerate(order, start=1)
        ]
        state = fold_all(stream)
        assert datetime.fromisoformat(state["first_event_at"]) == whole
        assert datetime.fromisoformat(state["last_event_at"]) == later


def test_folding_with_only_the_touched_items_gives_the_full_fold() -> None:
    """What the adapter relies on to keep items in rows of their own: each event folds
    into a state holding only its own movie's item (as loaded from user_items), and the
    rest of the state and that item come out as from the state holding every item."""
    full = user_features_fold.empty_state("u1")
    partial = user_features_fold.empty_state("u1")
    items: dict[str, dict[str, Any]] = {}  # the item rows, as user_items keeps them
    for position, event in enumerate(STREAM, start=100):
        user_features_fold.apply(full, event, position, genres_of)
        movie = user_features_fold.movie_of(event)
        partial["items"] = {movie: items[movie]} if movie in items else {}
        user_features_fold.apply(partial, event, position, genres_of)
        items.update(partial["items"])
        assert {k: v for k, v in partial.items() if k != "items"} == {
            k: v for k, v in full.items() if k != "items"
        }
    assert items == full["items"]
    assert user_features_fold.movie_of(STREAM[1]) is None  # a search has no item


MOMENTS = st.builds(
    lambda micros, offset: (T0 + timedelta(microseconds=micros)).astimezone(
        timezone(timedelta(minutes=offset))
    ),
    st.integers(-(10**13), 10**13) | st.integers(-3, 3).map(lambda s: s * 500_000),
    st.sampled_from([0, 0, 0, 60, -330]),
)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(MOMENTS, MOMENTS)
def test_times_in_states_compare_as_the_times_they_write(a: datetime, b: datetime) -> None:
    """The string shortcut for UTC times of one length orders as the times do."""
    iso = user_features_fold.iso
    assert user_features_fold._before(iso(a), iso(b)) == (a < b)
    assert user_features_fold._before(iso(b), iso(a)) == (b < a)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(
    st.datetimes(
        timezones=st.sampled_from([UTC, timezone(timedelta(0)), timezone(timedelta(hours=5))])
    )
)
def test_times_are_written_as_isoformat_writes_them(moment: datetime) -> None:
    """The fast path for UTC times (orjson) writes what isoformat writes, `Z` for UTC."""
    assert user_features_fold.iso(moment) == moment.isoformat().replace("+00:00", "Z")


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from(["Drama", "Comedy", "Action", "Horror", "War", "IMAX", "Sci-Fi"]),
        st.one_of(
            st.floats(min_value=-5, max_value=5, allow_nan=False),
            st.sampled_from([0.0, 1.0, 0.5, 1e-12]),
        ),
    ),
    st.integers(min_value=1, max_value=8),
)
def test_top_genres_rank_by_weight_then_name_as_shares_of_all_positive_weight(
    weights: dict[str, float], limit: int
) -> None:
    # The definition, written the obvious way: what documents have always held.
    positive = {g: w for g, w in weights.items() if w > 0}
    total = sum(positive.values())
    ranked = sorted(positive.items(), key=lambda gw: (-gw[1], gw[0]))[:limit]
    expected = [{"genre": g, "weight": round(w / total, 4)} for g, w in ranked]
    assert user_features_fold.top_genres(weights, limit) == expected
