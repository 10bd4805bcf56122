"""Small synthetic data sets; no test needs the MovieLens files."""

from __future__ import annotations

import numpy as np

from model.interactions import Interaction, Interactions
from model.params import Params
from model.recommender import HistoryItem

CLUSTER_A = [str(i) for i in range(1, 21)]
CLUSTER_B = [str(i) for i in range(101, 121)]
SMALL_PARAMS = Params(l2=10.0, min_item_users=1)


def two_cluster_events(seed: int = 7) -> list[Interaction]:
    """20 users who only rate cluster A movies, 20 who only rate cluster B movies."""
    rng = np.random.default_rng(seed)
    events: list[Interaction] = []
    for u in range(40):
        cluster = CLUSTER_A if u < 20 else CLUSTER_B
        chosen = rng.choice(len(cluster), size=12, replace=False)
        for t, j in enumerate(chosen.tolist()):
            rating = float(rng.choice([3.5, 4.0, 4.5, 5.0]))
            events.append(Interaction(f"u{u}", cluster[j], "rating", rating, 1000.0 + t))
    return events


def random_events(seed: int = 3, n_users: int = 80, n_items: int = 60) -> Interactions:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, size=int(rng.integers(5, 25)), replace=False)
        for t, item in enumerate(items.tolist()):
            rows.append((f"u{u}", f"m{item}", float(rng.integers(1, 11)) / 2, 100.0 * u + t))
    users, movies, ratings, stamps = zip(*rows, strict=True)
    return Interactions.from_ratings(
        np.asarray(users), np.asarray(movies), np.asarray(ratings), np.asarray(stamps)
    )


def history_of(movie_ids: list[str], weight: float = 1.0) -> list[HistoryItem]:
    return [HistoryItem(m, weight, float(t)) for t, m in enumerate(movie_ids)]
