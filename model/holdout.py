"""Offline metrics for a model trained from production events: a temporal holdout.

The same rule as EVAL.md, applied to whatever the store holds: per user, the newest
max(1, floor(0.2 n)) interactions are held out, the model is fit on the rest and must
rank the held-out movies in its top 10 (movies seen in training excluded).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from model.interactions import Interaction, implicit_weights
from model.metrics import evaluate_rankings
from model.params import Params
from model.recommender import histories, train


def temporal_split(
    interactions: Sequence[Interaction],
) -> tuple[list[Interaction], dict[str, set[str]]]:
    by_user: dict[str, list[Interaction]] = defaultdict(list)
    for interaction in interactions:
        by_user[interaction.user_id].append(interaction)
    kept: list[Interaction] = []
    held_out: dict[str, set[str]] = {}
    for user, rows in by_user.items():
        movies = sorted({r.movie_id: r.timestamp for r in rows}.items(), key=lambda m: (m[1], m[0]))
        if len(movies) < 2:
            kept.extend(rows)
            continue
        test = {movie for movie, _ in movies[-max(1, math.floor(0.2 * len(movies))) :]}
        held_out[user] = test
        kept.extend(r for r in rows if r.movie_id not in test)
    return kept, held_out


def holdout_metrics(
    interactions: Sequence[Interaction], params: Params | None = None, k: int = 10
) -> dict[str, Any]:
    """NDCG, recall, precision, hit rate, MRR and coverage at k on a temporal holdout."""
    kept, held_out = temporal_split(interactions)
    if not held_out:
        return {}
    model = train(kept, params)
    seen = histories(implicit_weights(kept))
    known = set(model.item_ids)
    truth = {user: movies & known for user, movies in held_out.items()}
    rankings = {
        user: [
            m
            for m, _ in model.recommend(
                seen.get(user, []), k, exclude={h.movie_id for h in seen.get(user, [])}
            )
        ]
        for user in truth
    }
    report = evaluate_rankings(rankings, truth, max(model.n_items, 1), k).as_dict()
    return {
        "protocol": "store-temporal-u20",
        "k": k,
        **{key: round(v, 4) if isinstance(v, float) else v for key, v in report.items()},
    }
