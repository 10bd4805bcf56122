"""Training and serving read the same history from the same events (`model.signals`).

Training turns store events into interactions (`cinemate.movielens.as_interaction`) and
reduces them (`model.interactions.implicit_weights`); serving folds the same events into
the user_features state (`projections.user_features_fold`) and reads it back
(`query_side.recommend.history_of`). For any stream, both must give the same movies with
the same weights and times, so the model scores a user online as it was trained.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cinemate.movielens import as_interaction
from model import signals
from model.interactions import Interaction, implicit_weights
from model.params import Params
from model.recommender import HistoryItem, TrainedModel, histories, train
from projections import item_stats_fold, user_features_fold
from query_side.recommend import history_of
from schema import events

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
MOVIES = [f"m{i}" for i in range(6)]
GENRES = {"m0": ("Comedy",), "m1": ("Drama", "Comedy"), "m2": ("Horror",)}


def make(kind: str, version: int, seconds: float, movie: str, value: Any) -> Any:
    common: dict[str, Any] = {
        "originator_id": "u1",
        "originator_version": version,
        # Out of time order on purpose: clients send occurred_at, and may send it late.
        "timestamp": T0 + timedelta(seconds=seconds),
        "context": None,
    }
    if kind == "watch":
        return events.Watched(**common, movie_id=movie, progress=value, watched_seconds=None)
    if kind == "rating":
        return events.Rated(**common, movie_id=movie, rating=value)
    if kind == "favorite":
        return events.Favorited(**common, movie_id=movie, action=value)
    if kind == "feedback":
        return events.FeedbackGiven(
            **common, movie_id=movie, recommendation_id="r1", action=value, rank=1
        )
    return events.Searched(**common, query="q", results=[movie], clicked_movie_id=value)


VALUES = {
    "watch": st.sampled_from([0.0, 0.1, 0.5, 0.9, 0.95, 1.0]),
    "rating": st.sampled_from([0.5, 1.0, 2.5, 3.0, 4.0, 5.0]),
    "favorite": st.sampled_from(["add", "remove"]),
    "feedback": st.sampled_from(sorted(signals.FEEDBACK_WEIGHTS)),
    "search": st.sampled_from([None, *MOVIES]),
}
EVENT = st.sampled_from(sorted(VALUES)).flatmap(
    lambda kind: st.tuples(
        st.just(kind),
        st.integers(0, 40).map(lambda s: s * 0.5),  # equal times happen too
        st.sampled_from(MOVIES),
        VALUES[kind],
    )
)


def stream_of(drawn: list[tuple[str, float, str, Any]]) -> list[Any]:
    return [make(kind, v, s, m, x) for v, (kind, s, m, x) in enumerate(drawn, start=1)]


def training_history(stream: list[Any]) -> list[HistoryItem]:
    records = [r for r in (as_interaction(e) for e in stream) if r is not None]
    return histories(implicit_weights(records)).get("u1", [])


def serving_history(stream: list[Any]) -> list[HistoryItem]:
    state = user_features_fold.empty_state("u1")
    for position, event in enumerate(stream, start=1):
        user_features_fold.apply(state, event, position, lambda m: GENRES.get(m, ()))
    return history_of(state)


def by_movie(history: list[HistoryItem]) -> list[tuple[str, float, float]]:
    return sorted((h.movie_id, h.weight, h.timestamp) for h in history)


@pytest.fixture(scope="module")
def two_block_model() -> TrainedModel:
    """A model over MOVIES whose EASE and order blocks read a history differently."""
    records = []
    for user in range(30):
        for step in range(5):
            movie = MOVIES[(user + step) % len(MOVIES)]
            records.append(Interaction(f"t{user}", movie, "rating", 4.0, float(step)))
    params = Params(
        l2=5.0,
        min_item_users=1,
        recency_tau=4.0,
        sequence_weight=1.0,
        sequence_window=2,
        sequence_tau=1.0,
        value_power=1.0,
    )
    model = train(records, params)
    assert model.blocks == 2
    return model


@settings(max_examples=300, deadline=None)
@given(st.lists(EVENT, min_size=1, max_size=25))
def test_serving_history_equals_training_history(drawn: list[Any]) -> None:
    stream = stream_of(drawn)
    assert by_movie(serving_history(stream)) == by_movie(training_history(stream))


def test_several_feedback_events_on_one_movie_agree(two_block_model: TrainedModel) -> None:
    """Watched half, clicked, liked, then disliked: the latest reaction counts, in
    training and in serving alike (a sum would say 0.4 + 0.5 + 1.0 - 1.0 = 0.9)."""
    stream = stream_of(
        [
            ("watch", 10.0, "m1", 0.5),
            ("feedback", 11.0, "m1", "click"),
            ("feedback", 12.0, "m1", "like"),
            ("rating", 13.0, "m2", 4.0),
            ("feedback", 14.0, "m1", "dislike"),
            ("search", 15.0, "m3", "m1"),  # a search click is no signal for the model
        ]
    )
    trained, served = training_history(stream), serving_history(stream)
    assert by_movie(served) == by_movie(trained)
    weights = {h.movie_id: h.weight for h in served}
    assert weights == {"m1": pytest.approx(0.4 - 1.0), "m2": pytest.approx(0.8)}
    assert {h.movie_id: h.timestamp for h in served}["m1"] == (
        T0 + timedelta(seconds=14)
    ).timestamp()
    assert (
        two_block_model.user_vector(served)[0].tolist()
        == two_block_model.user_vector(trained)[0].tolist()
    )
    assert two_block_model.recommend(served, 3) == two_block_model.recommend(trained, 3)


@settings(max_examples=100, deadline=None)
@given(st.lists(EVENT, min_size=1, max_size=25))
def test_model_scores_both_histories_alike(two_block_model: TrainedModel, drawn: list[Any]) -> None:
    stream = stream_of(drawn)
    trained, served = training_history(stream), serving_history(stream)
    rows_t, weights_t = two_block_model.user_vector(trained)
    rows_s, weights_s = two_block_model.user_vector(served)
    assert rows_s.tolist() == rows_t.tolist()
    assert weights_s.tolist() == weights_t.tolist()


def test_trending_and_genre_interest_use_the_model_weights() -> None:
    like = make("feedback", 1, 0, "m0", "like")
    half = make("watch", 2, 0, "m0", 0.5)
    assert item_stats_fold.signal_weight(like) == signals.FEEDBACK_WEIGHTS["like"]
    assert item_stats_fold.signal_weight(half) == signals.watch_weight(0.5)
    stream = stream_of(
        [
            ("watch", 0.0, "m1", 0.5),
            ("rating", 1.0, "m1", 5.0),
            ("feedback", 2.0, "m1", "dismiss"),
            ("favorite", 3.0, "m2", "add"),
            ("favorite", 4.0, "m2", "remove"),
        ]
    )
    state = user_features_fold.empty_state("u1")
    for position, event in enumerate(stream, start=1):
        user_features_fold.apply(state, event, position, lambda m: GENRES.get(m, ()))
    expected = signals.movie_weight(rating=5.0, progress=0.5, feedback="dismiss")
    assert state["genre_weights"] == {
        "Drama": pytest.approx(expected),
        "Comedy": pytest.approx(expected),
    }
