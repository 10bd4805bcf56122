import math

import numpy as np
import pytest

from model.metrics import (
    evaluate_rankings,
    hit_rate_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank_at_k,
)
from model.ranking import top_k


def test_single_hit_at_rank_two() -> None:
    ranked, relevant = [5, 3, 9], {3, 7}
    ideal = 1.0 + 1.0 / math.log2(3)
    assert ndcg_at_k(ranked, relevant) == pytest.approx((1.0 / math.log2(3)) / ideal)
    assert recall_at_k(ranked, relevant) == pytest.approx(0.5)
    assert precision_at_k(ranked, relevant) == pytest.approx(0.1)
    assert hit_rate_at_k(ranked, relevant) == 1.0
    assert reciprocal_rank_at_k(ranked, relevant) == pytest.approx(0.5)


def test_ideal_dcg_is_capped_at_k() -> None:
    relevant = set(range(12))
    assert ndcg_at_k(list(range(10)), relevant) == pytest.approx(1.0)
    assert recall_at_k(list(range(10)), relevant) == pytest.approx(10 / 12)


def test_hits_beyond_the_cutoff_do_not_count() -> None:
    ranked = [*range(100, 110), 1]
    assert ndcg_at_k(ranked, {1}) == 0.0
    assert reciprocal_rank_at_k(ranked, {1}) == 0.0
    assert hit_rate_at_k(ranked, {1}) == 0.0


def test_two_hits_ndcg_and_mrr() -> None:
    ranked, relevant = [1, 2, 3, 4], {1, 4}
    dcg = 1.0 + 1.0 / math.log2(5)
    ideal = 1.0 + 1.0 / math.log2(3)
    assert ndcg_at_k(ranked, relevant) == pytest.approx(dcg / ideal)
    assert reciprocal_rank_at_k(ranked, relevant) == 1.0


def test_average_over_users_with_truth_and_coverage() -> None:
    rankings = {"a": [1, 2], "b": [3, 4], "c": [1, 9]}
    truth: dict[str, set[int]] = {"a": {2}, "b": {7}, "c": set(), "d": {1}}
    report = evaluate_rankings(rankings, truth, n_candidates=10, k=10)
    # c has no test item: not averaged; d has no ranking: counted as all misses.
    assert report.n_users == 3
    assert report.hit_rate == pytest.approx(1 / 3)
    assert report.mrr == pytest.approx(0.5 / 3)
    assert report.recall == pytest.approx(1 / 3)
    assert report.precision == pytest.approx(0.1 / 3)
    assert report.coverage == pytest.approx(4 / 10)


def test_top_k_breaks_ties_towards_lower_index() -> None:
    scores = np.array([1.0, 3.0, 3.0, 2.0, 3.0])
    assert top_k(scores, 2).tolist() == [1, 2]
    assert top_k(scores, 4).tolist() == [1, 2, 4, 3]


def test_top_k_skips_excluded_items() -> None:
    scores = np.array([-np.inf, 1.0, -np.inf, 0.0])
    assert top_k(scores, 3).tolist() == [1, 3]
    assert top_k(scores, 0).tolist() == []
