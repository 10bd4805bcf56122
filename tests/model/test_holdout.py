"""The temporal holdout behind a trained model's offline metrics."""

from __future__ import annotations

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
