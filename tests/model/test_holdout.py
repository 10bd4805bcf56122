"""The temporal holdout behind a trained model's offline metrics."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from model.holdout import holdout_metrics, temporal_split
from model.interactions import Interaction


def test_newest_fifth_of_each_user_is_held_out() -> None:
    rows = [Interaction("u", f"m{i}", "rating", 4.0, float(i)) for i in range(10)]
    rows += [Interaction("solo", "m1", "rating", 3.0, 0.0)]
    kept, held = temporal_split(rows)
    assert held == {"u": {"m8", "m9"}}
    assert {r.movie_id for r in kept if r.user_id == "u"} == {f"m{i}" for i in range(8)}
    assert any(r.user_id == "solo" for r in kept)


def test_metrics_are_reported_for_a_learnable_pattern() -> None:
    rows = []
    for user in range(40):
        taste = "a" if user % 2 else "b"
        # Each user meets the five movies of their taste in a different order.
        movies = [f"{taste}{(user + n) % 5}" for n in range(5)]
        rows += [Interaction(f"u{user}", m, "rating", 5.0, float(n)) for n, m in enumerate(movies)]
    metrics = holdout_metrics(rows)
    assert metrics["k"] == 10 and metrics["n_users"] == 40
    assert metrics["hit_rate"] == 1.0


def _reference_split(
    rows: list[Interaction],
) -> tuple[list[Interaction], dict[str, set[str]]]:
    """The rule spelled out one user at a time."""
    by_user: dict[str, list[Interaction]] = {}
    for row in rows:
        by_user.setdefault(row.user_id, []).append(row)
    kept: list[Interaction] = []
    held: dict[str, set[str]] = {}
    for user, mine in by_user.items():
        last = {r.movie_id: r.timestamp for r in mine}  # the last event of each movie
        movies = sorted(last.items(), key=lambda m: (m[1], m[0]))
        if len(movies) < 2:
            continue
        held[user] = {m for m, _ in movies[-max(1, math.floor(0.2 * len(movies))) :]}
    kept = [r for r in rows if r.movie_id not in held.get(r.user_id, set())]
    return kept, held


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from(["1", "2", "10", "x", "m5", "20"]),
            st.integers(0, 6),
        ),
        max_size=40,
    )
)
def test_vectorised_split_is_the_rule(drawn: list[tuple[str, str, int]]) -> None:
    rows = [Interaction(u, m, "rating", 3.0, float(t)) for u, m, t in drawn]
    assert temporal_split(rows) == _reference_split(rows)
