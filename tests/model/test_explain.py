"""Explanations: how much each history movie adds to an item's score (pure functions)."""

import numpy as np

from model.params import Params
from model.recommender import (
    HistoryItem,
    TrainedModel,
    contributions,
    top_contributors,
)


def two_block_model(seed: int = 5, n: int = 12) -> TrainedModel:
    """A random model of two blocks read with different decays, as a trained one is."""
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(2 * n, n)).astype(np.float32)
    params = Params(recency_tau=3.0, sequence_tau=1.5, value_power=1.0, max_history=5)
    ids = [f"m{i}" for i in range(n)]
    return TrainedModel(ids, matrix, np.arange(n, dtype=np.float32), params, {"version": "t"})


def test_contributions_add_up_to_the_scores() -> None:
    model = two_block_model()
    history = [HistoryItem(f"m{i}", w, t) for i, w, t in [(0, 1.0, 1), (3, 2.5, 2), (7, -1.0, 3)]]
    history += [HistoryItem("unknown", 1.0, 4), *(HistoryItem(f"m{i}", 1.0, 5 + i) for i in (8, 9))]
    rows, weights = model.user_vector(history)
    items = list(range(model.n_items))
    movies, per_movie = contributions(model.matrix, rows, weights, items)
    # max_history 5: the oldest (m0) is not read; "unknown" takes a rank but no row.
    assert [model.item_ids[m] for m in movies] == ["m3", "m7", "m8", "m9"]
    np.testing.assert_allclose(per_movie.sum(axis=0), model.score(history), rtol=1e-5, atol=1e-6)
    # One movie's part: its rows in both blocks, each times its weight.
    m3 = model.index_of("m3")
    assert m3 is not None
    at = [r for r in range(len(rows)) if rows[r] % model.n_items == m3]
    assert len(at) == 2
    expected = sum(weights[r] * model.matrix[rows[r]].astype(np.float64) for r in at)
    np.testing.assert_allclose(per_movie[list(movies).index(m3)], expected)


def test_the_top_contributors_are_the_largest_positive_parts_first() -> None:
    ids = ["a", "b", "c", "d", "e"]
    movies = np.array([0, 1, 2, 3])
    per_movie = np.array(
        [
            [0.1, -1.0, 0.0],
            [0.5, -2.0, 0.0],
            [0.3, 0.2, 0.0],
            [0.5, 0.1, 0.0],
        ]
    )
    # Ties to the lower index (b before d); negative and zero parts explain nothing.
    assert top_contributors(ids, (movies, per_movie)) == [["b", "d", "c"], ["c", "d"], []]
    assert top_contributors(ids, (movies, per_movie), k=1) == [["b"], ["c"], []]
    empty = (np.zeros(0, dtype=np.int64), np.zeros((0, 2)))
    assert top_contributors(ids, empty) == [[], []]


def test_because_explains_a_ranking_from_the_history() -> None:
    model = two_block_model()
    history = [HistoryItem(f"m{i}", 1.0, float(i)) for i in (2, 4, 6, 8)]
    rows, weights = model.user_vector(history)
    ranked = model.recommend(history, k=5)
    items = [model.index_of(m) or 0 for m, _ in ranked]
    because = model.because(rows, weights, items)
    assert len(because) == 5 and all(because)
    for movie, reasons in zip((m for m, _ in ranked), because, strict=True):
        assert len(reasons) <= 3
        assert set(reasons) <= {h.movie_id for h in history}
        index = model.index_of(movie)
        assert index is not None
        totals = _parts_by_loop(rows, weights, model, index)
        expected = [m for m in sorted(totals, key=lambda m: -totals[m]) if totals[m] > 0][:3]
        assert reasons == [model.item_ids[m] for m in expected]
    assert model.because(rows[:0], weights[:0], items) == [[], [], [], [], []]


def _parts_by_loop(
    rows: np.ndarray, weights: np.ndarray, model: TrainedModel, item: int
) -> dict[int, float]:
    """Each history movie's part of `item`'s score, by a plain loop over the rows."""
    totals: dict[int, float] = {}
    for row, weight in zip(rows.tolist(), weights.tolist(), strict=True):
        movie = row % model.n_items
        totals[movie] = totals.get(movie, 0.0) + weight * float(model.matrix[row, item])
    return totals
