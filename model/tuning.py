"""Choosing the service model's hyper-parameters on the validation split (rule 6)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace

from model.interactions import implicit_weights
from model.metrics import evaluate_rankings
from model.params import Params
from model.protocol import CUTOFF, ProtocolSplit
from model.recommender import assemble, fit_parts
from model.service_ranker import ratings_to_interactions, recommend_users, user_histories


@dataclass(frozen=True)
class Grid:
    """A small grid: the expensive inverse is computed once per l2 value, the blend and
    the recency decay are cheap to vary on top of it."""

    l2: tuple[float, ...] = (100.0, 250.0, 500.0, 1000.0)
    sequence_weight: tuple[float, ...] = (0.3, 0.6, 1.0, 1.5)
    recency_tau: tuple[float, ...] = (3.0, 5.0, 8.0)

    def size(self) -> int:
        return len(self.l2) * len(self.sequence_weight) * len(self.recency_tau)


@dataclass(frozen=True)
class Trial:
    params: Params
    ndcg: float


def tune(
    validation: ProtocolSplit,
    base: Params,
    grid: Grid,
    log: Callable[[str], None] = lambda _: None,
) -> tuple[Params, list[Trial]]:
    """Best params by validation NDCG@10; ties keep the earlier grid point."""
    weights = implicit_weights(ratings_to_interactions(validation.train))
    user_history = user_histories(validation.train)
    users = sorted(validation.truth)
    trials: list[Trial] = []
    best: Trial | None = None
    for l2 in grid.l2:
        fitted = replace(base, l2=l2)
        parts = fit_parts(weights, fitted)
        for seq_weight, tau in itertools.product(grid.sequence_weight, grid.recency_tau):
            params = replace(fitted, sequence_weight=seq_weight, recency_tau=tau)
            model = assemble(parts, params)
            rankings = recommend_users(model, user_history, users, CUTOFF)
            report = evaluate_rankings(
                rankings, validation.truth, len(validation.candidates), CUTOFF
            )
            trial = Trial(params, report.ndcg)
            trials.append(trial)
            if best is None or trial.ndcg > best.ndcg:
                best = trial
            log(
                f"  trial {len(trials)}/{grid.size()}: l2={l2:g} seq={seq_weight:g} "
                f"tau={tau:g} -> val NDCG@10 {report.ndcg:.4f}"
            )
    if best is None:
        return base, trials
    return best.params, trials
