"""Interaction events and their reduction to one implicit weight per (user, movie)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

InteractionKind = Literal["watch", "rating", "favorite", "feedback"]
KINDS: tuple[str, ...] = ("watch", "rating", "favorite", "feedback")
# The implicit value of each reaction to a recommendation, as a "feedback" interaction.
FEEDBACK_WEIGHTS: dict[str, float] = {
    "like": 1.0,
    "watch": 0.8,
    "click": 0.5,
    "dismiss": -0.5,
    "dislike": -1.0,
}


@dataclass(frozen=True, slots=True)
class Interaction:
    """One event. `value` is the watch progress (0..1), the rating (0.5..5), +1/-1 for a
    favorite add/remove, or the feedback weight (positive for like/click, negative for
    dislike/dismiss)."""

    user_id: str
    movie_id: str
    kind: InteractionKind
    value: float
    timestamp: float


@dataclass(frozen=True)
class Interactions:
    """The same events as column arrays, the form training consumes."""

    user_ids: np.ndarray
    movie_ids: np.ndarray
    kinds: np.ndarray
    values: np.ndarray
    timestamps: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.user_ids)
        columns = (self.movie_ids, self.kinds, self.values, self.timestamps)
        if any(len(column) != n for column in columns):
            raise ValueError("interaction columns must have equal lengths")
        unknown = set(np.unique(self.kinds).tolist()) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown interaction kinds: {sorted(unknown)}")

    def __len__(self) -> int:
        return len(self.user_ids)

    @classmethod
    def from_records(cls, records: Iterable[Interaction]) -> Interactions:
        rows = list(records)
        return cls(
            user_ids=np.asarray([r.user_id for r in rows], dtype=str),
            movie_ids=np.asarray([r.movie_id for r in rows], dtype=str),
            kinds=np.asarray([r.kind for r in rows], dtype=str),
            values=np.asarray([r.value for r in rows], dtype=np.float64),
            timestamps=np.asarray([r.timestamp for r in rows], dtype=np.float64),
        )

    @classmethod
    def from_ratings(
        cls, users: np.ndarray, movies: np.ndarray, ratings: np.ndarray, timestamps: np.ndarray
    ) -> Interactions:
        """A ratings-only log (MovieLens) is the case where every event is a rating."""
        return cls(
            user_ids=np.asarray(users).astype(str),
            movie_ids=np.asarray(movies).astype(str),
            kinds=np.full(len(users), "rating"),
            values=np.asarray(ratings, dtype=np.float64),
            timestamps=np.asarray(timestamps, dtype=np.float64),
        )


def as_interactions(data: Interactions | Iterable[Interaction]) -> Interactions:
    return data if isinstance(data, Interactions) else Interactions.from_records(data)


@dataclass(frozen=True)
class WeightConfig:
    """How each kind of signal maps to an implicit weight.

    A rating of 5 and a favorite are the strongest positives (1.0). A full watch counts a
    little less than a top rating because finishing a film is weaker evidence of liking
    it. Feedback is added on top, so a dislike can turn a watched film negative.
    """

    rating_scale: float = 5.0
    watch_weight: float = 0.8
    favorite_weight: float = 1.0
    min_weight: float = -1.0
    max_weight: float = 1.5


@dataclass(frozen=True)
class UserItemWeights:
    """One row per (user, movie): the implicit weight and the latest event time."""

    user_ids: np.ndarray
    movie_ids: np.ndarray
    weights: np.ndarray
    timestamps: np.ndarray

    def __len__(self) -> int:
        return len(self.user_ids)


def _last_per_pair(pair: np.ndarray, values: np.ndarray, n_pairs: int) -> np.ndarray:
    """Value of the last row per pair (rows already in time order); NaN where none."""
    out = np.full(n_pairs, np.nan)
    if len(pair):
        is_last = np.r_[pair[1:] != pair[:-1], True]
        out[pair[is_last]] = values[is_last]
    return out


def implicit_weights(
    data: Interactions | Iterable[Interaction], config: WeightConfig | None = None
) -> UserItemWeights:
    """Reduce events to one weight per (user, movie).

    Rules: the latest rating counts (re-rating replaces), the best watch progress counts,
    the latest favorite action decides the favorite state; the strongest of these
    positives is the base weight, and feedback weights are summed on top. Pairs whose
    weight ends at exactly zero (e.g. a favorite added then removed) are dropped.
    """
    cfg = config or WeightConfig()
    events = as_interactions(data)
    if len(events) == 0:
        empty = np.empty(0)
        return UserItemWeights(empty.astype(str), empty.astype(str), empty, empty)
    users, user_code = np.unique(events.user_ids, return_inverse=True)
    movies, movie_code = np.unique(events.movie_ids, return_inverse=True)
    pairs, pair = np.unique(
        user_code.reshape(-1) * len(movies) + movie_code.reshape(-1), return_inverse=True
    )
    pair = pair.reshape(-1)
    n_pairs = len(pairs)
    # Stable sort keeps input order for equal timestamps, so "latest" is well defined.
    order = np.lexsort((events.timestamps, pair))
    pair_sorted, kinds, values = pair[order], events.kinds[order], events.values[order]

    def last_of(kind: str) -> np.ndarray:
        mask = kinds == kind
        return _last_per_pair(pair_sorted[mask], values[mask], n_pairs)

    rating = last_of("rating") / cfg.rating_scale
    favorite = np.where(last_of("favorite") > 0, cfg.favorite_weight, np.nan)
    watch = np.full(n_pairs, np.nan)
    is_watch = events.kinds == "watch"
    np.fmax.at(watch, pair[is_watch], np.clip(events.values[is_watch], 0.0, 1.0))
    watch *= cfg.watch_weight
    base = np.fmax(np.fmax(rating, favorite), watch)
    base = np.where(np.isnan(base), 0.0, base)
    is_feedback = events.kinds == "feedback"
    feedback = np.bincount(pair[is_feedback], weights=events.values[is_feedback], minlength=n_pairs)
    weight = np.clip(base + feedback, cfg.min_weight, cfg.max_weight)
    latest = np.full(n_pairs, -np.inf)
    np.maximum.at(latest, pair, events.timestamps)
    keep = weight != 0.0
    return UserItemWeights(
        user_ids=users[pairs // len(movies)][keep],
        movie_ids=movies[pairs % len(movies)][keep],
        weights=weight[keep],
        timestamps=latest[keep],
    )
