"""Interaction events and their reduction to one implicit weight per (user, movie)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from model import signals
from model.signals import FEEDBACK_WEIGHTS as FEEDBACK_WEIGHTS  # re-exported for callers

InteractionKind = Literal["watch", "rating", "favorite", "feedback"]
KINDS: tuple[str, ...] = ("watch", "rating", "favorite", "feedback")


@dataclass(frozen=True, slots=True)
class Interaction:
    """One event. `value` is the watch progress (0..1), the rating (0.5..5), +1/-1 for a
    favorite add/remove, or the feedback weight of the action
    (`signals.FEEDBACK_WEIGHTS`: positive for like/click, negative for dislike/dismiss)."""

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

    def subset(self, mask: np.ndarray) -> Interactions:
        return Interactions(
            self.user_ids[mask],
            self.movie_ids[mask],
            self.kinds[mask],
            self.values[mask],
            self.timestamps[mask],
        )

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
class UserItemWeights:
    """One row per (user, movie): the implicit weight and the latest event time."""

    user_ids: np.ndarray
    movie_ids: np.ndarray
    weights: np.ndarray
    timestamps: np.ndarray

    def __len__(self) -> int:
        return len(self.user_ids)


def _last_per_pair(pair: np.ndarray, values: np.ndarray, n_pairs: int) -> np.ndarray:
    """Value of the last row per pair (rows already grouped by pair, in stream order);
    NaN where none."""
    out = np.full(n_pairs, np.nan)
    if len(pair):
        is_last = np.r_[pair[1:] != pair[:-1], True]
        out[pair[is_last]] = values[is_last]
    return out


def implicit_weights(data: Interactions | Iterable[Interaction]) -> UserItemWeights:
    """Reduce events to one weight per (user, movie), by the rules of `model.signals`
    (`signals.movie_weight` is the same reduction for one movie).

    Events must come in stream order (the order the service accepted them; the store's
    position order): "latest" rating, favorite action and feedback mean latest in that
    order, as in the projection that serving reads. The timestamp kept per pair is the
    newest event time, which only sets the recency order. Pairs whose weight ends at
    exactly zero (e.g. a favorite added then removed) are dropped.
    """
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
    # A stable sort groups rows by pair and keeps stream order inside each group.
    order = np.argsort(pair, kind="stable")
    pair_sorted, kinds, values = pair[order], events.kinds[order], events.values[order]

    def last_of(kind: str) -> np.ndarray:
        mask = kinds == kind
        return _last_per_pair(pair_sorted[mask], values[mask], n_pairs)

    rating = last_of("rating") / signals.RATING_SCALE
    favorite = np.where(last_of("favorite") > 0, signals.FAVORITE_WEIGHT, np.nan)
    watch = np.full(n_pairs, np.nan)
    is_watch = events.kinds == "watch"
    np.fmax.at(watch, pair[is_watch], np.clip(events.values[is_watch], 0.0, 1.0))
    watch *= signals.WATCH_WEIGHT
    base = np.fmax(np.fmax(rating, favorite), watch)
    base = np.where(np.isnan(base), 0.0, base)
    feedback = np.nan_to_num(last_of("feedback"), nan=0.0)
    weight = np.clip(base + feedback, signals.MIN_WEIGHT, signals.MAX_WEIGHT)
    latest = np.full(n_pairs, -np.inf)
    np.maximum.at(latest, pair, events.timestamps)
    keep = weight != 0.0
    return UserItemWeights(
        user_ids=users[pairs // len(movies)][keep],
        movie_ids=movies[pairs % len(movies)][keep],
        weights=weight[keep],
        timestamps=latest[keep],
    )
