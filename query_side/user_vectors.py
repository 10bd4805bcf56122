"""A user's state read by the served model, once per state: what a fresh ranking needs.

A personal ranking is `TrainedModel.rank` over the scores of the user's vector (the
weighted rows of their newest movies) and the indices of the movies not recommended
again. Both depend only on the user's folded state and the model, never on the request,
so they are computed once per (user, store position of the user's last event, model) and
kept in a cache bounded in bytes; every request still ranks afresh (its limit, genre and
exclude list), and any new event of the user makes the next request read and score the
new state.

Reading a state is cheap even for users with thousands of movies: the model reads only
its `max_history` newest, so the movies are first narrowed with string comparisons on
their times (`newest_part`), and only that part goes through the per-movie rules
(`signals.movie_weight`) and the model's own ranking (`newest_first`). The result is
exactly what `recommend.history_of` + `recommend.seen_movies` + `recommend.personal` give
(tests/test_user_vectors.py compares them on many users).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from cachetools import LRUCache

from model import signals
from model.recommender import HistoryItem, TrainedModel
from query_side.recommend import history_of, seen_movies

# The length of "YYYY-MM-DDTHH:MM:SS", the part of an ISO time that orders whole seconds.
_SECONDS = 19


@dataclass(frozen=True, slots=True)
class UserVector:
    """What `TrainedModel.rank` needs of one user's state, for one model: the scores of
    every item (`TrainedModel.raw_scores` of the user vector; the model's popularity
    array itself when no newest movie is known) and the indices of the movies seen."""

    scores: np.ndarray
    seen: np.ndarray

    @property
    def nbytes(self) -> int:
        arrays = self.scores.nbytes + self.seen.nbytes
        return arrays + 2 * sys.getsizeof(self.seen) + sys.getsizeof(self)


def newest_part(items: Mapping[str, Mapping[str, Any]], limit: int) -> list[HistoryItem] | None:
    """History items (weights, times as `history_of` gives them) among which are the
    `limit` newest movies with a weight, as the model ranks them; None when that cannot
    be told cheaply (then the whole history must be read).

    Why it is exact: every time in a state is written by the fold as UTC ISO 8601 ending
    in "Z" ("...T10:00:00Z" or "...T10:00:00.5Z"), so the first 19 characters order
    whole seconds as times do (the fraction's form does not: "." < "Z"). Let t be the
    first 19 characters of the `limit`-th largest time string. A movie whose seconds
    sort below t is older than every movie whose seconds are >= t; if at least `limit`
    of those have a weight, it cannot be among the `limit` newest with a weight.
    """
    times = [item.get("at") for item in items.values()]
    if limit <= 0 or not all(isinstance(at, str) and at.endswith("Z") for at in times):
        return None
    strings: list[str] = times  # type: ignore[assignment]  # all str, checked above
    if len(strings) > limit:
        threshold = sorted(strings, reverse=True)[limit - 1][:_SECONDS]
        # For strings of >= 19 characters, s >= t compares their first 19 characters.
        picked = [movie for movie, at in zip(items, strings, strict=True) if at >= threshold]
    else:
        picked = list(items)
    part: list[HistoryItem] = []
    for movie in picked:
        item = items[movie]
        weight = signals.movie_weight(
            rating=item.get("rating"),
            progress=item.get("progress"),
            favorite=item.get("favorite"),
            feedback=item.get("feedback"),
        )
        if weight != 0.0:
            part.append(HistoryItem(movie, weight, datetime.fromisoformat(item["at"]).timestamp()))
    if len(part) < limit and len(picked) < len(items):
        return None  # too many movies without a weight among the newest: read them all
    return part


def read(model: TrainedModel, state: Mapping[str, Any] | None) -> UserVector | None:
    """The user vector of `state` for `model`; None when no movie of the user's history
    is known to the model (`recommend.personal` answers None: a cold start)."""
    if not state:
        return None
    items: Mapping[str, Mapping[str, Any]] = state.get("items") or {}
    part = newest_part(items, model.params.max_history)
    history = part if part is not None else history_of(state)
    rows, weights = model.user_vector(history)
    if len(rows) == 0:
        # None of the newest is known: personal only if some older movie is (then the
        # model ranks by popularity, as `recommend` does for an empty vector).
        if part is not None:
            history = history_of(state)
        if not any(model.index_of(h.movie_id) is not None for h in history):
            return None
    seen = model.indices(seen_movies(state))
    return UserVector(model.raw_scores(rows, weights), seen)


def history_rows(
    model: TrainedModel, state: Mapping[str, Any] | None
) -> tuple[np.ndarray, np.ndarray]:
    """The user vector `read` scores, as (matrix rows, weights) (`TrainedModel.
    user_vector`): what `TrainedModel.because` explains a ranking from."""
    items: Mapping[str, Mapping[str, Any]] = (state or {}).get("items") or {}
    part = newest_part(items, model.params.max_history)
    return model.user_vector(part if part is not None else history_of(state))


Key = tuple[str, str]  # (user id, model sha256)
# A vector holds 4 bytes per model item: 256 MiB keep ~17,000 users of a 4,000-item model,
# ~3,300 of a 20,000-item one (whose matrix alone is 1.6 GB).
MAX_BYTES = 256 * 2**20
# From this many items on, reading a state (a gather of max_history matrix rows of this
# length, in float64) runs in a worker thread: numpy releases the GIL for the gather and
# the product, so the event loop goes on answering meanwhile.
THREAD_ITEMS = 10_000
# Per entry beyond the arrays: the key tuple and its two strings, the (position, vector)
# pair, the cache's dict slot and ordering node.
ENTRY_BYTES = 400


class UserVectorCache:
    """Personal users' vectors by (user, model), each with the store position it was read
    at; least recently used first out once they would hold more than `max_bytes`. A
    lookup with another position is a miss: any new event for the user moves the
    position (store positions never repeat, not even for a user forgotten and back)."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._vectors: LRUCache[Key, tuple[int, UserVector, int]] = LRUCache(
            max_bytes, getsizeof=lambda entry: entry[2]
        )

    def position(self, key: Key) -> int | None:
        """The position the cached vector of `key` was read at, if any."""
        found = self._vectors.get(key)
        return found[0] if found is not None else None

    def get(self, key: Key, position: int) -> UserVector | None:
        found = self._vectors.get(key)
        return found[1] if found is not None and found[0] == position else None

    def put(self, key: Key, position: int, vector: UserVector) -> None:
        size = ENTRY_BYTES + sum(sys.getsizeof(part) for part in key) + vector.nbytes
        if size <= self.max_bytes:
            self._vectors[key] = (position, vector, size)

    @property
    def held_bytes(self) -> int:
        return int(self._vectors.currsize)
