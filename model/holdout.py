"""Offline metrics for a model trained from production events: a temporal holdout.

The same rule as EVAL.md, applied to whatever the store holds: per user, the newest
max(1, floor(0.2 n)) interactions are held out, the model is fit on the rest and must
rank the held-out movies in its top 10 (movies seen in training excluded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from model.interactions import Interaction, Interactions, implicit_weights
from model.metrics import evaluate_rankings
from model.params import Params
from model.recommender import histories, train


def holdout_split(events: Interactions) -> tuple[np.ndarray, dict[str, set[str]]]:
    """(mask of the events kept for training, each user's held-out movies).

    Per user, distinct movies ordered by the time of their last event in stream order,
    then by id; the newest max(1, floor(0.2 n)) are held out with all their events.
    Users with fewer than two movies keep everything and hold nothing out.
    """
    n = len(events)
    if n == 0:
        return np.zeros(0, dtype=bool), {}
    users, user_code = np.unique(events.user_ids, return_inverse=True)
    movies, movie_code = np.unique(events.movie_ids, return_inverse=True)
    pair_key = user_code.reshape(-1) * len(movies) + movie_code.reshape(-1)
    pairs, pair = np.unique(pair_key, return_inverse=True)
    pair = pair.reshape(-1)
    last = np.zeros(len(pairs), dtype=np.int64)
    np.maximum.at(last, pair, np.arange(n))
    pair_user, pair_movie = pairs // len(movies), pairs % len(movies)
    # np.unique codes sort ids as Python sorts str, the tie-break of the rule.
    order = np.lexsort((pair_movie, events.timestamps[last], pair_user))
    grouped = pair_user[order]
    starts = np.r_[0, np.flatnonzero(grouped[1:] != grouped[:-1]) + 1]
    counts = np.diff(np.r_[starts, len(grouped)])
    position = np.arange(len(order)) - np.repeat(starts, counts)
    size = np.repeat(counts, counts)
    test_sorted = (size >= 2) & (position >= size - np.maximum(1, size // 5))
    is_test = np.zeros(len(pairs), dtype=bool)
    is_test[order] = test_sorted
    held_out: dict[str, set[str]] = {}
    for u, m in zip(pair_user[is_test].tolist(), pair_movie[is_test].tolist(), strict=True):
        held_out.setdefault(str(users[u]), set()).add(str(movies[m]))
    return ~is_test[pair], held_out


def temporal_split(
    interactions: Sequence[Interaction],
) -> tuple[list[Interaction], dict[str, set[str]]]:
    """`holdout_split` for a list of events: (the kept events, the held-out movies)."""
    rows = list(interactions)
    kept, held_out = holdout_split(Interactions.from_records(rows))
    return [r for r, keep in zip(rows, kept.tolist(), strict=True) if keep], held_out


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
