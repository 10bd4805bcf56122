"""The service's recommender: training, per-user scoring, top-k and similar items.

Algorithm ("seqease"): an EASE item-item matrix over the items with enough users, blended
with a normalised next-item transition matrix; a user is scored from their current
history, each item weighted by its implicit weight and by an exponential decay in its
recency rank. Everything the serving side needs is in `TrainedModel`.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from model.ease import ease_weights
from model.ids import natural_key, natural_ranks
from model.interactions import (
    Interaction,
    Interactions,
    UserItemWeights,
    WeightConfig,
    implicit_weights,
)
from model.params import Params
from model.ranking import top_k
from model.sequential import transition_matrix

ALGORITHM = "seqease"
ARTIFACT_VERSION = 1


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """One movie in a user's current history: its implicit weight (negative for disliked)
    and the time of the latest interaction with it. Only the order of timestamps matters
    (it sets the recency rank), so any number that grows with recency works."""

    movie_id: str
    weight: float = 1.0
    timestamp: float = 0.0


class Scorer(Protocol):
    """Scores of all items for the user vector given as (row indices, weights)."""

    def __call__(self, rows: np.ndarray, weights: np.ndarray) -> np.ndarray: ...


class MatrixScorer:
    """Numpy scorer: the weighted sum of the history items' matrix rows.

    The matrix is stored as float32 but summed in float64 and rounded once to float32,
    the same arithmetic the ONNX graph does, so every artifact format ranks alike.
    """

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = matrix

    def __call__(self, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
        gathered = self.matrix[rows].astype(np.float64)
        return (weights.astype(np.float64)[None, :] @ gathered)[0].astype(np.float32)


class TrainedModel:
    """A trained item-item model. Cheap to score: O(max_history x n_items) per user."""

    def __init__(
        self,
        item_ids: Sequence[str],
        matrix: np.ndarray,
        popularity: np.ndarray,
        params: Params,
        metadata: dict[str, Any],
        scorer: Scorer | None = None,
    ) -> None:
        n = len(item_ids)
        if matrix.shape != (n, n) or popularity.shape != (n,):
            raise ValueError(
                f"inconsistent model arrays: {n} items, matrix {matrix.shape}, "
                f"popularity {popularity.shape}"
            )
        self.item_ids: tuple[str, ...] = tuple(item_ids)
        self.matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        self.popularity = np.asarray(popularity, dtype=np.float32)
        self.params = params
        self.metadata = metadata
        self.scorer: Scorer = scorer or MatrixScorer(self.matrix)
        self._index = {item: i for i, item in enumerate(self.item_ids)}

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def index_of(self, movie_id: str) -> int | None:
        return self._index.get(movie_id)

    def with_scorer(self, scorer: Scorer) -> TrainedModel:
        return TrainedModel(
            self.item_ids, self.matrix, self.popularity, self.params, self.metadata, scorer
        )

    def user_vector(self, history: Iterable[HistoryItem]) -> tuple[np.ndarray, np.ndarray]:
        """(row indices, weights) of the known history items.

        Unknown movies still take a recency rank: they are real, newer interactions, and
        skipping them would make older known items look more recent than they are.
        """
        latest: dict[str, HistoryItem] = {}
        for item in history:
            seen = latest.get(item.movie_id)
            if seen is None or item.timestamp >= seen.timestamp:
                latest[item.movie_id] = item
        newest_first = heapq.nlargest(
            self.params.max_history,
            latest.values(),
            key=lambda h: (h.timestamp, natural_key(h.movie_id)),
        )
        rows: list[int] = []
        weights: list[float] = []
        for rank, item in enumerate(newest_first):
            index = self._index.get(item.movie_id)
            if index is not None and item.weight != 0.0:
                rows.append(index)
                weights.append(item.weight * math.exp(-rank / self.params.recency_tau))
        return np.asarray(rows, dtype=np.int64), np.asarray(weights, dtype=np.float64)

    def score(self, history: Iterable[HistoryItem]) -> np.ndarray:
        """float32 scores over `item_ids`; all zeros when no history item is known."""
        rows, weights = self.user_vector(history)
        if len(rows) == 0:
            return np.zeros(self.n_items, dtype=np.float32)
        return np.asarray(self.scorer(rows, weights), dtype=np.float32).reshape(-1)

    def recommend(
        self,
        history: Iterable[HistoryItem],
        k: int = 10,
        exclude: Iterable[str] = frozenset(),
        allowed: Iterable[str] | None = None,
    ) -> list[tuple[str, float]]:
        """Top-k (movie_id, score), best first, ties to the lower item index.

        Without any known history item the ranking falls back to training popularity, so
        the answer is still useful (the caller may prefer its own cold-start path).
        """
        rows, weights = self.user_vector(history)
        if len(rows) == 0:
            scores = self.popularity.astype(np.float64)
        else:
            scores = np.asarray(self.scorer(rows, weights), dtype=np.float64).reshape(-1)
        return self._top(scores, k, exclude, allowed)

    def popular(
        self,
        k: int = 10,
        exclude: Iterable[str] = frozenset(),
        allowed: Iterable[str] | None = None,
    ) -> list[tuple[str, float]]:
        """Top-k by training popularity (the cold-start fallback)."""
        return self._top(self.popularity.astype(np.float64), k, exclude, allowed)

    def similar(self, movie_id: str, k: int = 10) -> list[tuple[str, float]]:
        """Items whose score rises most when `movie_id` is in a history; [] if unknown."""
        index = self._index.get(movie_id)
        if index is None:
            return []
        row = self.matrix[index].astype(np.float64)
        row[index] = -np.inf
        return [(self.item_ids[i], float(row[i])) for i in top_k(row, k)]

    def _top(
        self,
        scores: np.ndarray,
        k: int,
        exclude: Iterable[str],
        allowed: Iterable[str] | None,
    ) -> list[tuple[str, float]]:
        scores = scores.copy()
        if allowed is not None:
            keep = self._indices(allowed)
            masked = np.full_like(scores, -np.inf)
            masked[keep] = scores[keep]
            scores = masked
        scores[self._indices(exclude)] = -np.inf
        return [(self.item_ids[i], float(scores[i])) for i in top_k(scores, k)]

    def _indices(self, movie_ids: Iterable[str]) -> np.ndarray:
        found = [self._index[m] for m in movie_ids if m in self._index]
        return np.asarray(found, dtype=np.int64)


@dataclass(frozen=True)
class ModelParts:
    """The expensive, blend-independent pieces of a model (reused when tuning)."""

    item_ids: list[str]
    popularity: np.ndarray
    ease: np.ndarray
    transitions: np.ndarray
    n_users: int
    n_interactions: int


def fit_parts(weights: UserItemWeights, params: Params) -> ModelParts:
    """Fit EASE and the transition matrix on the positive (user, movie) pairs."""
    positive = weights.weights > 0
    users = weights.user_ids[positive]
    movies = weights.movie_ids[positive]
    stamps = weights.timestamps[positive]
    if len(movies) == 0:
        empty = np.zeros((0, 0))
        return ModelParts([], np.zeros(0), empty, empty, 0, 0)
    movie_rank = natural_ranks(movies)
    names = np.empty(int(movie_rank.max()) + 1, dtype=movies.dtype)
    names[movie_rank] = movies
    counts = np.bincount(movie_rank)
    eligible = np.flatnonzero(counts >= params.min_item_users)
    if len(eligible) > params.max_items:
        busiest = np.lexsort((eligible, -counts[eligible]))[: params.max_items]
        eligible = np.sort(eligible[busiest])
    code = np.full(len(counts), -1, dtype=np.int64)
    code[eligible] = np.arange(len(eligible))
    item_code = code[movie_rank]
    kept = item_code >= 0
    _, user_code = np.unique(users, return_inverse=True)
    user_code = user_code.reshape(-1)
    n_users = int(user_code.max()) + 1
    matrix = sp.csr_matrix(
        (np.ones(int(kept.sum())), (user_code[kept], item_code[kept])),
        shape=(n_users, len(eligible)),
    )
    order = np.lexsort((movie_rank[kept], stamps[kept], user_code[kept]))
    transitions = transition_matrix(
        user_code[kept][order],
        item_code[kept][order],
        len(eligible),
        window=params.sequence_window,
        decay=params.sequence_decay,
        backward=params.sequence_backward,
    )
    return ModelParts(
        item_ids=[str(name) for name in names[eligible]],
        popularity=counts[eligible].astype(np.float64),
        ease=ease_weights(matrix, params.l2, np.float32),
        transitions=transitions,
        n_users=n_users,
        n_interactions=len(movies),
    )


def blend(parts: ModelParts, sequence_weight: float) -> np.ndarray:
    """EASE plus the transitions, each scaled to unit Frobenius norm first so that
    `sequence_weight` means the same thing whatever the data size."""
    ease_norm = float(np.linalg.norm(parts.ease))
    combined = parts.ease / ease_norm if ease_norm > 0 else parts.ease.copy()
    seq_norm = float(np.linalg.norm(parts.transitions))
    if sequence_weight and seq_norm > 0:
        combined = combined + (sequence_weight / seq_norm) * parts.transitions
    return combined.astype(np.float32)


def assemble(
    parts: ModelParts,
    params: Params,
    *,
    data_position: int | None = None,
    metrics: dict[str, Any] | None = None,
    train_seconds: float | None = None,
) -> TrainedModel:
    matrix = blend(parts, params.sequence_weight)
    now = datetime.now(UTC)
    digest = hashlib.sha256(matrix.tobytes()).hexdigest()[:8]
    metadata: dict[str, Any] = {
        "version": f"{ALGORITHM}-{now.strftime('%Y%m%dT%H%M%SZ')}-{digest}",
        "algorithm": ALGORITHM,
        "artifact_version": ARTIFACT_VERSION,
        "trained_at": now.isoformat().replace("+00:00", "Z"),
        "params": params.to_dict(),
        "data_position": data_position,
        "metrics": dict(metrics or {}),
        "n_items": len(parts.item_ids),
        "n_users": parts.n_users,
        "n_interactions": parts.n_interactions,
        "train_seconds": train_seconds,
        "format": "memory",
    }
    return TrainedModel(parts.item_ids, matrix, parts.popularity, params, metadata)


def train_from_weights(
    weights: UserItemWeights,
    params: Params | None = None,
    *,
    data_position: int | None = None,
    metrics: dict[str, Any] | None = None,
) -> TrainedModel:
    params = params or Params()
    started = time.perf_counter()
    parts = fit_parts(weights, params)
    model = assemble(parts, params, data_position=data_position, metrics=metrics)
    model.metadata["train_seconds"] = round(time.perf_counter() - started, 3)
    return model


def train(
    interactions: Interactions | Iterable[Interaction],
    params: Params | None = None,
    *,
    weight_config: WeightConfig | None = None,
    data_position: int | None = None,
    metrics: dict[str, Any] | None = None,
) -> TrainedModel:
    """Fit the service's model on raw interaction events."""
    started = time.perf_counter()
    weights = implicit_weights(interactions, weight_config)
    model = train_from_weights(weights, params, data_position=data_position, metrics=metrics)
    model.metadata["train_seconds"] = round(time.perf_counter() - started, 3)
    return model


def histories(weights: UserItemWeights) -> dict[str, list[HistoryItem]]:
    """Each user's history in the form `TrainedModel.score` reads."""
    out: dict[str, list[HistoryItem]] = {}
    for user, movie, weight, stamp in zip(
        weights.user_ids.tolist(),
        weights.movie_ids.tolist(),
        weights.weights.tolist(),
        weights.timestamps.tolist(),
        strict=True,
    ):
        out.setdefault(user, []).append(HistoryItem(movie, weight, stamp))
    return out
