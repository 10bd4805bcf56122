import numpy as np
import pytest

from model.interactions import Interaction, Interactions, implicit_weights


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
