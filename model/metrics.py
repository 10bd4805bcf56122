"""Ranking metrics at a cut-off, exactly as EVAL.md rule 5 defines them."""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TypeVar

User = TypeVar("User", bound=Hashable)
Item = TypeVar("Item", bound=Hashable)


def _hits(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> list[bool]:
    return [item in relevant for item in list(ranked)[:k]]


def ndcg_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int = 10) -> float:
    """Binary-gain NDCG with log2(rank + 1) discount; ideal over min(|relevant|, k)."""
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(r + 2) for r, hit in enumerate(_hits(ranked, relevant, k)) if hit)
    ideal = sum(1.0 / math.log2(r + 2) for r in range(min(len(relevant), k)))
    return dcg / ideal


def recall_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int = 10) -> float:
    if not relevant:
        return 0.0
    return sum(_hits(ranked, relevant, k)) / len(relevant)


def precision_at_k(
    ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int = 10
) -> float:
    # The denominator is k even for short lists: a missing slot is a miss.
    return sum(_hits(ranked, relevant, k)) / k


def hit_rate_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int = 10) -> float:
    return 1.0 if any(_hits(ranked, relevant, k)) else 0.0


def reciprocal_rank_at_k(
    ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int = 10
) -> float:
    for r, hit in enumerate(_hits(ranked, relevant, k)):
        if hit:
            return 1.0 / (r + 1)
    return 0.0


@dataclass(frozen=True)
class RankingReport:
    ndcg: float
    recall: float
    precision: float
    hit_rate: float
    mrr: float
    coverage: float
    n_users: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def evaluate_rankings(
    rankings: Mapping[User, Sequence[Item]],
    truth: Mapping[User, Collection[Item]],
    n_candidates: int,
    k: int = 10,
) -> RankingReport:
    """Average the metrics over users with at least one relevant item.

    A user in `truth` without a ranking counts as all misses, so a model cannot improve
    its averages by declining to answer.
    """
    users = [u for u, rel in truth.items() if rel]
    totals = [0.0] * 5
    recommended: set[Item] = set()
    for user in users:
        ranked = list(rankings.get(user, ()))[:k]
        relevant = truth[user]
        recommended.update(ranked)
        for j, metric in enumerate(
            (ndcg_at_k, recall_at_k, precision_at_k, hit_rate_at_k, reciprocal_rank_at_k)
        ):
            totals[j] += metric(ranked, relevant, k)
    n = max(len(users), 1)
    return RankingReport(
        ndcg=totals[0] / n,
        recall=totals[1] / n,
        precision=totals[2] / n,
        hit_rate=totals[3] / n,
        mrr=totals[4] / n,
        coverage=len(recommended) / n_candidates if n_candidates else 0.0,
        n_users=len(users),
    )
