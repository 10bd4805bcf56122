"""The per-user temporal split of EVAL.md rule 2."""

from __future__ import annotations

from fractions import Fraction

import numpy as np


def temporal_split(
    users: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray,
    test_fraction: float = 0.2,
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (train, test) masks over the input rows.

    Per user, rows sorted by (timestamp, item); the last max(1, floor(f * n)) are test.
    Users with fewer than two rows are in neither mask.
    """
    n_rows = len(users)
    train = np.zeros(n_rows, dtype=bool)
    test = np.zeros(n_rows, dtype=bool)
    if n_rows == 0:
        return train, test
    order = np.lexsort((items, timestamps, users))
    sorted_users = users[order]
    _, starts, counts = np.unique(sorted_users, return_index=True, return_counts=True)
    position = np.arange(n_rows) - np.repeat(starts, counts)
    n = np.repeat(counts, counts)
    # Exact rational arithmetic: floor(0.2 * 15) must be 3, not 2.999...
    frac = Fraction(test_fraction).limit_denominator(10_000)
    n_test = np.maximum(1, (n * frac.numerator) // frac.denominator)
    kept = n >= 2
    is_test = kept & (position >= n - n_test)
    test[order] = is_test
    train[order] = kept & ~is_test
    return train, test
