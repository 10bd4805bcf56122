"""Choosing what to show: personal scores from the user's current history, else a cold
start from trending movies tilted toward the genres the user has shown interest in."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from model import signals
from model.recommender import HistoryItem, TrainedModel, newest_first


@dataclass(frozen=True)
class Pick:
    strategy: str
    items: list[tuple[str, float]]


def history_of(state: Mapping[str, Any] | None, newest: int = 0) -> list[HistoryItem]:
    """The user's movies as the model reads them, oldest first: each movie's weight from
    its reduced signals (`signals.movie_weight`, the rules training applies to the same
    events) and the time of its latest signal. Movies whose weight is zero are left out,
    as in training. `newest` > 0 keeps only that many of the newest, ranked as the model
    ranks them; the model itself reads only its own max_history newest, so passing
    nothing is always exact."""
    if not state:
        return []
    history: list[HistoryItem] = []
    for movie, item in state.get("items", {}).items():
        weight = signals.movie_weight(
            rating=item.get("rating"),
            progress=item.get("progress"),
            favorite=item.get("favorite"),
            feedback=item.get("feedback"),
        )
        if weight == 0.0:
            continue
        at = datetime.fromisoformat(item["at"]).timestamp() if item.get("at") else 0.0
        history.append(HistoryItem(movie, weight, at))
    return newest_first(history, newest)[::-1]


def seen_movies(state: Mapping[str, Any] | None) -> set[str]:
    """Watched to the end, rated or favorited: not recommended again."""
    if not state:
        return set()
    return {
        movie
        for movie, item in state.get("items", {}).items()
        if "rating" in item
        or item.get("favorite")
        or signals.is_completed(item.get("progress", 0.0))
    }


def genre_affinity(
    state: Mapping[str, Any] | None, searched_genres: Iterable[str]
) -> dict[str, float]:
    """Genre weights from ratings, watches and favorites, plus genres named in searches."""
    weights: dict[str, float] = {}
    if state:
        weights = {g: w for g, w in state.get("genre_weights", {}).items() if w > 0}
    for genre in searched_genres:
        weights[genre] = weights.get(genre, 0.0) + 1.0
    total = sum(weights.values())
    return {g: w / total for g, w in weights.items()} if total else {}


def cold_start(
    trending: Sequence[str],
    genres_of: Any,
    affinity: Mapping[str, float],
    k: int,
    exclude: set[str],
    allowed: frozenset[str] | None,
) -> list[tuple[str, float]]:
    """Trending order, lifted by how well each movie matches the user's genres.

    A movie's lift is at most 3x (affinities sum to 1), so a movie past rank 3k of the
    eligible ones can never reach the top k: only those are scored.
    """
    eligible = [m for m in trending if m not in exclude and (allowed is None or m in allowed)][
        : 3 * k + 3
    ]
    scored = []
    for rank, movie in enumerate(eligible):
        match = sum(affinity.get(g, 0.0) for g in genres_of(movie))
        scored.append((movie, round((1.0 / (1 + rank)) * (1.0 + 2.0 * min(match, 1.0)), 6), rank))
    scored.sort(key=lambda s: (-s[1], s[2]))
    return [(movie, score) for movie, score, _ in scored[:k]]


def personal(
    model: TrainedModel,
    history: Sequence[HistoryItem],
    k: int,
    exclude: set[str],
    allowed: frozenset[str] | None,
) -> list[tuple[str, float]] | None:
    """The model's ranking, or None when it knows too little of this history."""
    if not any(model.index_of(h.movie_id) is not None for h in history):
        return None
    return [
        (m, round(s, 6)) for m, s in model.recommend(history, k, exclude=exclude, allowed=allowed)
    ]


def similar_by_genres(
    movie: str,
    genres_of: Callable[[str], Sequence[str]],
    members_of: Callable[[str], Iterable[str]],
    trending: Sequence[str],
    k: int,
) -> list[tuple[str, float]]:
    """Similar movies without a model that knows `movie`: those sharing most of its
    catalog genres (Jaccard overlap, the score), the more trending first among equals;
    then trending movies sharing none. A movie without genres gets the trending list."""
    own = set(genres_of(movie))
    candidates = set(trending)
    for genre in own:
        candidates.update(members_of(genre))
    candidates.discard(movie)
    trend_rank = {m: rank for rank, m in enumerate(trending)}
    unranked = len(trending)

    def overlap(other: str) -> float:
        theirs = set(genres_of(other))
        return len(own & theirs) / len(own | theirs) if own and theirs else 0.0

    scored = [(overlap(m), m) for m in candidates]
    best = heapq.nsmallest(k, scored, key=lambda s: (-s[0], trend_rank.get(s[1], unranked), s[1]))
    return [(m, round(score, 6)) for score, m in best]


# Genre bit masks fit one uint64; a catalog with more distinct genres is ranked by
# `similar_by_genres` itself.
MAX_MASKED_GENRES = 64


class GenreIndex:
    """The catalog's genres as bit masks, so that `similar` for a movie the model does not
    know scores every movie sharing a genre at once (Jaccard overlap from bit counts)
    instead of set by set. Built once per catalog copy (`built_for`), and per trending
    list for the trend ranks (a new list at most every second). `similar` answers exactly
    what `similar_by_genres` answers (tests/test_similar_by_genres.py)."""

    def __init__(self, movies: Mapping[str, Sequence[str]]) -> None:
        self.built_for = movies
        self.ids = list(movies)
        self.position = {movie: i for i, movie in enumerate(self.ids)}
        names = sorted({g for genres in movies.values() for g in genres})
        self.usable = len(names) <= MAX_MASKED_GENRES
        bit = {g: 1 << i for i, g in enumerate(names)}
        lower: dict[str, int] = {}
        for g in names:
            lower[g.lower()] = lower.get(g.lower(), 0) | bit[g]
        self._bit = bit
        # A movie's members: any movie with a genre equal to one of its own ignoring case
        # (GenreLookup.movies_in); its overlap counts genres equal as written.
        self._lower = lower
        if self.usable:
            self.masks = np.array(
                [sum(bit[g] for g in set(genres)) for genres in movies.values()], dtype=np.uint64
            )
            self.lower_masks = np.array(
                [_or_all(lower[g.lower()] for g in set(genres)) for genres in movies.values()],
                dtype=np.uint64,
            )
        order = sorted(range(len(self.ids)), key=self.ids.__getitem__)
        self.id_rank = np.empty(len(self.ids), dtype=np.int64)
        self.id_rank[np.asarray(order, dtype=np.int64)] = np.arange(len(self.ids))
        self._trending: Sequence[str] | None = None
        self._trend_rank = np.zeros(0, dtype=np.int64)
        self._extras: list[tuple[int, str]] = []

    def _ranks(self, trending: Sequence[str]) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """Trend rank per catalog movie (len(trending) if not trending), and the trending
        movies outside the catalog with their ranks."""
        if trending is not self._trending:
            ranks = np.full(len(self.ids), len(trending), dtype=np.int64)
            latest: dict[str, int] = {}
            for rank, movie in enumerate(trending):
                latest[movie] = rank  # as a dict of ranks keeps the last of duplicates
            extras = []
            for movie, rank in latest.items():
                at = self.position.get(movie)
                if at is None:
                    extras.append((rank, movie))
                else:
                    ranks[at] = rank
            self._trending, self._trend_rank, self._extras = trending, ranks, extras
        return self._trend_rank, self._extras

    def similar(self, movie: str, trending: Sequence[str], k: int) -> list[tuple[str, float]]:
        own = set(self.built_for.get(movie, ()))
        if not self.usable:
            return similar_by_genres(
                movie, lambda m: self.built_for.get(m, ()), self._members, trending, k
            )
        own_mask = np.uint64(sum(self._bit[g] for g in own))
        own_lower = np.uint64(_or_all(self._lower[g.lower()] for g in own))
        trend_rank, extras = self._ranks(trending)
        unranked = len(trending)
        candidate = ((self.lower_masks & own_lower) != 0) | (trend_rank < unranked)
        at = self.position.get(movie)
        if at is not None:
            candidate[at] = False
        chosen = np.flatnonzero(candidate)
        theirs = self.masks[chosen]
        union = np.bitwise_count(theirs | own_mask).astype(np.float64)
        inter = np.bitwise_count(theirs & own_mask).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            score = np.where((theirs != 0) & bool(own), inter / union, 0.0)
        best = np.lexsort((self.id_rank[chosen], trend_rank[chosen], -score))[:k]
        scored = [
            (float(score[i]), int(trend_rank[chosen[i]]), self.ids[chosen[i]])
            for i in best.tolist()
        ]
        scored += [(0.0, rank, m) for rank, m in extras if m != movie]
        top = heapq.nsmallest(k, scored, key=lambda s: (-s[0], s[1], s[2]))
        return [(m, round(score, 6)) for score, _, m in top]

    def _members(self, genre: str) -> list[str]:
        return [
            m
            for m, genres in self.built_for.items()
            if genre.lower() in {g.lower() for g in genres}
        ]


def _or_all(bits: Iterable[int]) -> int:
    out = 0
    for b in bits:
        out |= b
    return out
