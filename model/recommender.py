"""The service's recommender: training, per-user scoring, top-k and similar items.

Algorithm ("seqease"): an EASE item-item matrix over the items with enough users and a
normalised item-to-item order matrix (what is watched close after what), kept as one or
two row blocks of one matrix. A user is scored from their current history: each movie's
signal weight, raised to `value_power`, times an exponential decay in its recency rank,
with its own decay per block, so the order block can read only the newest movies while
EASE reads the whole history. Scoring is a weighted sum of matrix rows, the same
arithmetic in every artifact format. Everything the serving side needs is in
`TrainedModel`.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from model.ease import ease_from_gram, gram_matrix
from model.ids import natural_key, natural_ranks
from model.interactions import (
    Interaction,
    Interactions,
    UserItemWeights,
    implicit_weights,
)
from model.params import Params
from model.ranking import top_k
from model.sequential import transition_matrix

ALGORITHM = "seqease"
# 1: one n x n matrix read with (signal weight, recency_tau). 2: one or two stacked n x n
# blocks (EASE, order), each read with its own decay, and value_power.
ARTIFACT_VERSION = 2
SUPPORTED_ARTIFACT_VERSIONS = (1, 2)
MAX_BLOCKS = 2


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """One movie in a user's current history: its implicit weight (negative for disliked)
    and the time of the latest interaction with it. Only the order of timestamps matters
    (it sets the recency rank), so any number that grows with recency works."""

    movie_id: str
    weight: float = 1.0
    timestamp: float = 0.0


def newest_first(history: Iterable[HistoryItem], limit: int = 0) -> list[HistoryItem]:
    """One item per movie (its latest entry), newest first, at most `limit` (0 = all).

    Ties in time go to the higher natural movie id first. Training, tuning and serving
    all rank a history through this function, so the recency ranks agree everywhere.
    """
    latest: dict[str, HistoryItem] = {}
    for item in history:
        seen = latest.get(item.movie_id)
        if seen is None or item.timestamp >= seen.timestamp:
            latest[item.movie_id] = item
    key = lambda h: (h.timestamp, natural_key(h.movie_id))  # noqa: E731
    if limit > 0:
        return heapq.nlargest(limit, latest.values(), key=key)
    return sorted(latest.values(), key=key, reverse=True)


def recency_ranks(
    user_ids: np.ndarray, movie_ids: np.ndarray, timestamps: np.ndarray
) -> np.ndarray:
    """Per row, its rank in its user's `newest_first` order (0 = newest), for rows with
    one row per (user, movie), as `implicit_weights` gives them. The vectorised twin of
    `newest_first`, for scoring many users at once."""
    if len(user_ids) == 0:
        return np.zeros(0, dtype=np.int64)
    _, user_code = np.unique(user_ids, return_inverse=True)
    user_code = user_code.reshape(-1)
    order = np.lexsort((-natural_ranks(movie_ids), -np.asarray(timestamps), user_code))
    grouped = user_code[order]
    starts = np.r_[0, np.flatnonzero(grouped[1:] != grouped[:-1]) + 1]
    lengths = np.diff(np.r_[starts, len(grouped)])
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order)) - np.repeat(starts, lengths)
    return ranks


def read_weight(weight: float, power: float, rank: int, tau: float) -> float:
    """How much one history movie at recency `rank` counts in a block read with
    (power, tau): sign(w) |w|^power, decayed by exp(-rank / tau) unless tau is 0."""
    value = math.copysign(abs(weight) ** power, weight)
    return value * math.exp(-rank / tau) if tau > 0 else value


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
    """A trained item-item model. Cheap to score: O(blocks x history x n_items) per user.

    `matrix` is (blocks * n_items) x n_items: block 0 is read with the EASE history
    weights, block 1 (when present) with the order block's (`Params.history_weight`).
    """

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
        rows = matrix.shape[0] if matrix.ndim == 2 else -1
        blocks = rows // n if n else 1
        if (
            matrix.ndim != 2
            or matrix.shape[1] != n
            or rows != blocks * n
            or not 1 <= blocks <= MAX_BLOCKS
            or popularity.shape != (n,)
        ):
            raise ValueError(
                f"inconsistent model arrays: {n} items, matrix {matrix.shape}, "
                f"popularity {popularity.shape}"
            )
        self.item_ids: tuple[str, ...] = tuple(item_ids)
        self.matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        self.popularity = np.asarray(popularity, dtype=np.float32)
        self.params = params
        self.metadata = metadata
        self.blocks = blocks
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
        """(matrix row indices, weights) of the known history items, block by block.

        Unknown movies still take a recency rank: they are real, newer interactions, and
        skipping them would make older known items look more recent than they are.
        """
        newest = newest_first(history, self.params.max_history)
        known = [
            (rank, index, item.weight)
            for rank, item in enumerate(newest)
            if (index := self._index.get(item.movie_id)) is not None and item.weight != 0.0
        ]
        rows: list[int] = []
        weights: list[float] = []
        for block in range(self.blocks):
            power, tau = self.params.history_weight(block)
            offset = block * self.n_items
            for rank, index, weight in known:
                rows.append(offset + index)
                weights.append(read_weight(weight, power, rank, tau))
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
        allowed_at = None if allowed is None else self.indices(allowed)
        return self.rank(self.raw_scores(rows, weights), k, self.indices(exclude), allowed_at)

    def raw_scores(self, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The scores `recommend` ranks a user vector by, as the scorer gives them
        (popularity for an empty vector); `rank` reads them as float64."""
        if len(rows) == 0:
            return self.popularity
        return np.asarray(self.scorer(rows, weights)).reshape(-1)

    def rank(
        self,
        raw_scores: np.ndarray,
        k: int,
        excluded: np.ndarray,
        allowed: np.ndarray | None = None,
    ) -> list[tuple[str, float]]:
        """`recommend` from a user's scores already computed (`raw_scores`) and item
        indices (`indices`): the serving path keeps a user's scores per state and the
        indices of a genre, and ranks from them with exactly this arithmetic."""
        scores = raw_scores.astype(np.float64)  # a copy, masked in place below
        return self._top_at(scores, k, excluded, allowed, copied=True)

    def popular(
        self,
        k: int = 10,
        exclude: Iterable[str] = frozenset(),
        allowed: Iterable[str] | None = None,
    ) -> list[tuple[str, float]]:
        """Top-k by training popularity (the cold-start fallback)."""
        return self._top(self.popularity.astype(np.float64), k, exclude, allowed)

    def similar(self, movie_id: str, k: int = 10) -> list[tuple[str, float]]:
        """Items whose score rises most when `movie_id` is the newest history item (the
        sum of its rows over the blocks); [] if unknown."""
        index = self._index.get(movie_id)
        if index is None:
            return []
        row = self.matrix[index :: self.n_items].astype(np.float64).sum(axis=0)
        row[index] = -np.inf
        return [(self.item_ids[i], float(row[i])) for i in top_k(row, k)]

    def _top(
        self,
        scores: np.ndarray,
        k: int,
        exclude: Iterable[str],
        allowed: Iterable[str] | None,
    ) -> list[tuple[str, float]]:
        allowed_at = None if allowed is None else self.indices(allowed)
        return self._top_at(scores, k, self.indices(exclude), allowed_at)

    def _top_at(
        self,
        scores: np.ndarray,
        k: int,
        excluded: np.ndarray,
        allowed: np.ndarray | None,
        *,
        copied: bool = False,
    ) -> list[tuple[str, float]]:
        if allowed is not None:
            masked = np.full_like(scores, -np.inf)
            masked[allowed] = scores[allowed]
            scores = masked
        elif not copied:
            scores = scores.copy()
        scores[excluded] = -np.inf
        return [(self.item_ids[i], float(scores[i])) for i in top_k(scores, k).tolist()]

    def because(
        self, rows: np.ndarray, weights: np.ndarray, items: Sequence[int], k: int = 3
    ) -> list[list[str]]:
        """Per item of `items` (indices), the at most `k` history movies adding most to
        its score, largest first: see `contributions`."""
        return top_contributors(self.item_ids, contributions(self.matrix, rows, weights, items), k)

    def indices(self, movie_ids: Iterable[str]) -> np.ndarray:
        """int64 indices of the movies this model knows (the others are left out)."""
        index = self._index
        found = [i for m in movie_ids if (i := index.get(m)) is not None]
        return np.asarray(found, dtype=np.int64)


def contributions(
    matrix: np.ndarray, rows: np.ndarray, weights: np.ndarray, items: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """How much each history movie adds to each item's score: (movie indices, a movies x
    items array). A user vector is (matrix rows, weights), one row per (block, movie), so
    history movie h adds sum over its rows r of weights[r] * matrix[r, i] to item i; the
    columns sum to the items' scores (in float64, before the scorer's float32 rounding)."""
    n = matrix.shape[1]
    columns = np.asarray(items, dtype=np.int64)
    if len(rows) == 0 or len(columns) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros((0, len(columns)))
    parts = matrix[rows[:, None], columns[None, :]].astype(np.float64)
    parts *= weights.astype(np.float64)[:, None]
    movies, row_movie = np.unique(rows % n, return_inverse=True)
    per_movie = np.zeros((len(movies), len(columns)))
    np.add.at(per_movie, row_movie.reshape(-1), parts)
    return movies, per_movie


def top_contributors(
    item_ids: Sequence[str], found: tuple[np.ndarray, np.ndarray], k: int = 3
) -> list[list[str]]:
    """Per item (a column of `contributions`), the ids of the at most `k` movies adding
    most to its score, largest first, ties to the lower item index; a movie adding
    nothing or taking away (a dislike, a negative weight) explains nothing."""
    movies, per_movie = found
    if len(movies) == 0:
        return [[] for _ in range(per_movie.shape[1])]
    order = np.argsort(-per_movie, axis=0, kind="stable")[:k]
    return [
        [item_ids[movies[m]] for m in order[:, col].tolist() if per_movie[m, col] > 0]
        for col in range(per_movie.shape[1])
    ]


@dataclass(frozen=True)
class TrainingData:
    """The item vocabulary and the positive (user, movie) pairs over it, in the two forms
    the blocks are fit from: a binary users x items matrix (EASE) and the pairs in each
    user's time order (the order block). Fit once, reused by every tuning trial."""

    item_ids: list[str]
    popularity: np.ndarray
    matrix: sp.csr_matrix
    ordered_users: np.ndarray
    ordered_items: np.ndarray
    n_users: int
    n_interactions: int

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @cached_property
    def gram(self) -> np.ndarray:
        """float32 X'X, shared by the EASE blocks of every l2."""
        return gram_matrix(self.matrix, np.float32)


def training_data(weights: UserItemWeights, params: Params) -> TrainingData:
    """The vocabulary: items with at least min_item_users positive users, at most
    max_items of the busiest, in natural id order (so index order is the protocol's
    "lower movieId" tie-break)."""
    positive = weights.weights > 0
    users = weights.user_ids[positive]
    movies = weights.movie_ids[positive]
    stamps = weights.timestamps[positive]
    if len(movies) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return TrainingData([], np.zeros(0), sp.csr_matrix((0, 0)), empty, empty, 0, 0)
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
    return TrainingData(
        item_ids=[str(name) for name in names[eligible]],
        popularity=counts[eligible].astype(np.float64),
        matrix=matrix,
        ordered_users=user_code[kept][order],
        ordered_items=item_code[kept][order],
        n_users=n_users,
        n_interactions=len(movies),
    )


def _unit(matrix: np.ndarray) -> np.ndarray:
    """Scaled to unit Frobenius norm, so that a block weight means the same thing
    whatever the data size."""
    out = np.asarray(matrix, dtype=np.float32)
    norm = float(np.linalg.norm(out))
    if norm > 0:
        out *= np.float32(1.0 / norm)  # in place: the callers' arrays are fresh
    return out


# The service's inverses run on one BLAS thread. Measured on the 2-core box, n = 3,650:
# 0.45 s on one thread whether or not the cores are busy; 0.3 s on two threads when they
# are idle, 1.3-13 s when other processes (serving, a projection worker) want them too,
# because OpenBLAS threads wait on each other. Training beside serving is the normal case.
TRAIN_BLAS_THREADS = 1


def ease_block(data: TrainingData, l2: float) -> np.ndarray:
    return _unit(ease_from_gram(data.gram, l2, threads=TRAIN_BLAS_THREADS))


def order_block(data: TrainingData, params: Params) -> np.ndarray:
    return _unit(
        transition_matrix(
            data.ordered_users,
            data.ordered_items,
            data.n_items,
            window=params.sequence_window,
            decay=params.sequence_decay,
            backward=params.sequence_backward,
        )
    )


def stack(ease: np.ndarray, order: np.ndarray | None, params: Params) -> np.ndarray:
    """The model matrix: EASE alone when there is no order term, one blended block when
    both read the history alike, else the two blocks stacked (twice the size)."""
    weight = np.float32(params.sequence_weight)
    if order is None or weight == 0.0 or not np.any(order):
        return ease
    if params.sequence_tau == params.recency_tau:
        blended = ease.copy()
        blended += weight * order
        return blended
    n = ease.shape[0]
    stacked = np.empty((2 * n, n), dtype=np.float32)
    stacked[:n] = ease
    np.multiply(order, weight, out=stacked[n:])
    return stacked


def needs_order(params: Params) -> bool:
    return params.sequence_weight != 0.0


def assemble(
    data: TrainingData,
    matrix: np.ndarray,
    params: Params,
    *,
    data_position: int | None = None,
    metrics: dict[str, Any] | None = None,
    train_seconds: float | None = None,
) -> TrainedModel:
    now = datetime.now(UTC)
    digest = hashlib.sha256(np.ascontiguousarray(matrix).data).hexdigest()[:8]
    metadata: dict[str, Any] = {
        "version": f"{ALGORITHM}-{now.strftime('%Y%m%dT%H%M%SZ')}-{digest}",
        "algorithm": ALGORITHM,
        "artifact_version": ARTIFACT_VERSION,
        "trained_at": now.isoformat().replace("+00:00", "Z"),
        "params": params.to_dict(),
        "data_position": data_position,
        "metrics": dict(metrics or {}),
        "n_items": data.n_items,
        "n_users": data.n_users,
        "n_interactions": data.n_interactions,
        "train_seconds": train_seconds,
        "format": "memory",
    }
    return TrainedModel(data.item_ids, matrix, data.popularity, params, metadata)


def train_from_weights(
    weights: UserItemWeights,
    params: Params | None = None,
    *,
    data_position: int | None = None,
    metrics: dict[str, Any] | None = None,
) -> TrainedModel:
    params = params or Params()
    started = time.perf_counter()
    data = training_data(weights, params)
    order = order_block(data, params) if needs_order(params) else None
    matrix = stack(ease_block(data, params.l2), order, params)
    model = assemble(data, matrix, params, data_position=data_position, metrics=metrics)
    model.metadata["train_seconds"] = round(time.perf_counter() - started, 3)
    return model


def train(
    interactions: Interactions | Iterable[Interaction],
    params: Params | None = None,
    *,
    data_position: int | None = None,
    metrics: dict[str, Any] | None = None,
) -> TrainedModel:
    """Fit the service's model on raw interaction events (in stream order) with fixed
    params; `model.tuning.train_tuned` chooses the params first."""
    started = time.perf_counter()
    weights = implicit_weights(interactions)
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
