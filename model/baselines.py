"""Reference models of the protocol: popularity and EASE (lambda = 200)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from model.ease import ease_weights
from model.movielens import Ratings
from model.protocol import train_items_by_user
from model.ranking import top_k


class PopularityRanker:
    """Most interacted-with TRAIN items, the same list for everyone."""

    name = "popularity"

    def __init__(self) -> None:
        self.candidates = np.empty(0, dtype=np.int64)
        self.scores = np.empty(0)
        self.seen: dict[int, np.ndarray] = {}

    def fit(self, train: Ratings) -> None:
        self.candidates, codes = np.unique(train.items, return_inverse=True)
        self.scores = np.bincount(codes.reshape(-1), minlength=len(self.candidates)).astype(
            np.float64
        )
        self.seen = train_items_by_user(train)

    def recommend(self, users: Sequence[int], k: int) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for user in users:
            scores = self.scores.copy()
            scores[np.searchsorted(self.candidates, self.seen.get(user, []))] = -np.inf
            out[user] = self.candidates[top_k(scores, k)].tolist()
        return out


class EaseRanker:
    """EASE over every TRAIN item with a binary user-item matrix."""

    name = "ease"

    def __init__(self, l2: float = 200.0) -> None:
        self.l2 = l2
        self.candidates = np.empty(0, dtype=np.int64)
        self.users = np.empty(0, dtype=np.int64)
        self.matrix = sp.csr_matrix((0, 0))
        self.weights = np.empty((0, 0))

    def fit(self, train: Ratings) -> None:
        self.candidates, item_codes = np.unique(train.items, return_inverse=True)
        self.users, user_codes = np.unique(train.users, return_inverse=True)
        self.matrix = sp.csr_matrix(
            (np.ones(len(train)), (user_codes.reshape(-1), item_codes.reshape(-1))),
            shape=(len(self.users), len(self.candidates)),
        )
        self.matrix.data[:] = 1.0  # duplicates of a (user, item) pair still count once
        self.weights = ease_weights(self.matrix, self.l2)

    def recommend(self, users: Sequence[int], k: int) -> dict[int, list[int]]:
        rows = np.searchsorted(self.users, np.asarray(users, dtype=np.int64))
        history = self.matrix[rows]
        scores = np.asarray(history @ self.weights)
        out: dict[int, list[int]] = {}
        for j, user in enumerate(users):
            user_scores = scores[j]
            user_scores[history[j].indices] = -np.inf
            out[user] = self.candidates[top_k(user_scores, k)].tolist()
        return out
