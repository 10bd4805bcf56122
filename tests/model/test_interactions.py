import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model import signals
from model.interactions import Interaction, Interactions, implicit_weights
from model.signals import FEEDBACK_WEIGHTS


def _weights(events: list[Interaction]) -> dict[tuple[str, str], float]:
    w = implicit_weights(events)
    return {
        (u, m): round(x, 6)
        for u, m, x in zip(
            w.user_ids.tolist(), w.movie_ids.tolist(), w.weights.tolist(), strict=True
        )
    }


def test_each_kind_maps_to_a_weight() -> None:
    events = [
        Interaction("u1", "m1", "rating", 4.0, 1),
        Interaction("u1", "m1", "rating", 2.0, 3),  # a re-rating replaces the first
        Interaction("u1", "m2", "watch", 0.5, 2),
        Interaction("u1", "m2", "watch", 0.95, 5),  # the best progress counts
        Interaction("u2", "m1", "favorite", 1, 1),
        Interaction("u2", "m1", "favorite", -1, 2),  # removed again: no signal left
        Interaction("u2", "m3", "feedback", -1, 4),  # a dislike alone is negative
        Interaction("u2", "m4", "favorite", 1, 4),
        Interaction("u2", "m4", "feedback", 0.3, 6),
    ]
    assert _weights(events) == {
        ("u1", "m1"): 0.4,
        ("u1", "m2"): 0.76,
        ("u2", "m3"): -1.0,
        ("u2", "m4"): 1.3,
    }


def test_latest_timestamp_per_pair_is_kept() -> None:
    w = implicit_weights(
        [Interaction("u", "m", "watch", 1.0, 9), Interaction("u", "m", "rating", 5.0, 4)]
    )
    assert w.timestamps.tolist() == [9.0]
    assert w.weights.tolist() == [1.0]


def test_ratings_only_log_is_the_special_case() -> None:
    events = Interactions.from_ratings(
        np.array([1, 1]), np.array([10, 20]), np.array([5.0, 2.5]), np.array([1, 2])
    )
    w = implicit_weights(events)
    assert w.movie_ids.tolist() == ["10", "20"]
    assert w.weights.tolist() == [1.0, 0.5]


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown interaction kinds"):
        Interactions.from_records([Interaction("u", "m", "search", 1.0, 1)])  # type: ignore[arg-type]


def test_no_events_give_no_weights() -> None:
    assert len(implicit_weights([])) == 0


def test_latest_feedback_and_latest_rating_count_in_stream_order() -> None:
    """A reaction is the viewer's current opinion, like a rating: the latest one counts,
    and "latest" is stream order (what a projection folds last), not the timestamp."""
    events = [
        Interaction("u", "m1", "watch", 0.5, 1),
        Interaction("u", "m1", "feedback", FEEDBACK_WEIGHTS["click"], 2),
        Interaction("u", "m1", "feedback", FEEDBACK_WEIGHTS["like"], 3),
        Interaction("u", "m1", "feedback", FEEDBACK_WEIGHTS["dislike"], 4),
        Interaction("u", "m2", "rating", 5.0, 9),
        Interaction("u", "m2", "rating", 2.0, 8),  # accepted later, though it says earlier
    ]
    assert _weights(events) == {("u", "m1"): round(0.4 - 1.0, 6), ("u", "m2"): 0.4}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("rating"), st.sampled_from([0.5, 2.0, 3.5, 5.0])),
            st.tuples(st.just("watch"), st.sampled_from([0.0, 0.3, 0.9, 1.0])),
            st.tuples(st.just("favorite"), st.sampled_from([1.0, -1.0])),
            st.tuples(st.just("feedback"), st.sampled_from(sorted(FEEDBACK_WEIGHTS))),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_vectorised_reduction_is_movie_weight(drawn: list[tuple[str, object]]) -> None:
    """`implicit_weights` (training, vectorised) and `signals.movie_weight` (one movie,
    what serving uses) are the same rule."""
    events = []
    rating = progress = favorite = feedback = None
    for t, (kind, value) in enumerate(drawn):
        if kind == "feedback":
            feedback = str(value)
            events.append(Interaction("u", "m", "feedback", FEEDBACK_WEIGHTS[feedback], t))
            continue
        number = float(value)  # type: ignore[arg-type]
        events.append(Interaction("u", "m", kind, number, t))  # type: ignore[arg-type]
        if kind == "rating":
            rating = number
        elif kind == "watch":
            progress = number if progress is None else max(progress, number)
        else:
            favorite = number > 0
    expected = signals.movie_weight(rating, progress, favorite, feedback)
    w = implicit_weights(events)
    assert w.weights.tolist() == ([expected] if expected != 0.0 else [])


def test_event_weights() -> None:
    assert signals.event_weight("rating", 4.0) == 0.8
    assert signals.event_weight("watch", 0.5) == signals.WATCH_WEIGHT * 0.5
    assert signals.event_weight("favorite", False) == -signals.FAVORITE_WEIGHT
    assert signals.event_weight("feedback", "like") == FEEDBACK_WEIGHTS["like"]
    assert signals.event_weight("search_click", True) == signals.SEARCH_CLICK_WEIGHT
    with pytest.raises(ValueError, match="unknown signal kind"):
        signals.event_weight("search", 1.0)
    assert signals.is_completed(signals.COMPLETED) and not signals.is_completed(0.89)
