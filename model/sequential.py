"""Item-to-item order: what each user watched shortly after (and before) each item."""

from __future__ import annotations

import numpy as np


def transition_matrix(
    user_codes: np.ndarray,
    item_codes: np.ndarray,
    n_items: int,
    window: int,
    decay: float,
    backward: float,
) -> np.ndarray:
    """Dense n_items x n_items co-occurrence of items close in a user's sequence.

    Rows must already be sorted by user, then time. A pair d steps apart (1 <= d <= window)
    adds exp(-(d - 1) / decay) from the earlier item to the later one and `backward` times
    that the other way, so the matrix favours what people watch *next* while still
    knowing what they watched just before (window 1, backward 0 is the first-order
    next-item matrix). Counts are normalised by sqrt(n_i n_j) so blockbusters do not
    dominate every row.
    """
    n = len(item_codes)
    flat: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    for d in range(1, min(window, max(n - 1, 0)) + 1):
        same_user = user_codes[d:] == user_codes[:-d]
        if not same_user.any():
            break  # no user has a longer history than d
        earlier, later = item_codes[:-d][same_user], item_codes[d:][same_user]
        weight = float(np.exp(-(d - 1) / decay))
        flat.append(earlier * n_items + later)
        weights.append(np.full(len(earlier), weight))
        if backward:
            flat.append(later * n_items + earlier)
            weights.append(np.full(len(earlier), weight * backward))
    if not flat:
        return np.zeros((n_items, n_items))
    # One bincount over flat (row, col) codes sums duplicates far faster than a sparse
    # COO matrix built from millions of pairs.
    counts: np.ndarray = (
        np.bincount(
            np.concatenate(flat), weights=np.concatenate(weights), minlength=n_items * n_items
        )
        .reshape(n_items, n_items)
        .astype(np.float64, copy=False)
    )
    popularity = np.bincount(item_codes, minlength=n_items).astype(np.float64)
    norm = np.sqrt(np.maximum(popularity, 1.0))
    counts /= norm[:, None]
    counts /= norm[None, :]
    counts[np.diag_indices_from(counts)] = 0.0
    return counts
