"""Ordering of item ids, shared by training, scoring and evaluation."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

NaturalKey = tuple[int, int, str]


def natural_key(item_id: str) -> NaturalKey:
    """Sort key that orders numeric ids numerically ("2" before "10").

    Ties are broken towards the lower index everywhere, so the index order must match
    the protocol's "lower movieId" rule for MovieLens' numeric ids.
    """
    if item_id.isdigit():
        return (0, int(item_id), item_id)
    return (1, 0, item_id)


def natural_order(item_ids: Iterable[str]) -> list[str]:
    """Distinct ids in natural order."""
    return sorted(set(item_ids), key=natural_key)


def natural_ranks(item_ids: np.ndarray) -> np.ndarray:
    """Per element, the rank of its id in natural order (equal ids share a rank)."""
    distinct, inverse = np.unique(item_ids, return_inverse=True)
    ordered = sorted(range(len(distinct)), key=lambda k: natural_key(str(distinct[k])))
    rank_of_distinct = np.empty(len(distinct), dtype=np.int64)
    rank_of_distinct[np.asarray(ordered, dtype=np.int64)] = np.arange(len(distinct))
    return rank_of_distinct[inverse.reshape(-1)]
