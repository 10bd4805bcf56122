"""Item-to-next-item transitions from each user's time-ordered history."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


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
    knowing what they watched just before. Counts are normalised by sqrt(n_i n_j) so
    blockbusters do not dominate every row.
    """
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    for d in range(1, window + 1):
        same_user = user_codes[d:] == user_codes[:-d]
        earlier, later = item_codes[:-d][same_user], item_codes[d:][same_user]
        weight = np.exp(-(d - 1) / decay)
        rows += [earlier, later]
        cols += [later, earlier]
        vals += [np.full(len(earlier), weight), np.full(len(earlier), weight * backward)]
    if not rows or sum(len(r) for r in rows) == 0:
        return np.zeros((n_items, n_items))
    counts = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_items, n_items),
    ).toarray()
    popularity = np.bincount(item_codes, minlength=n_items).astype(np.float64)
    norm = np.sqrt(np.maximum(popularity, 1.0))
    counts /= norm[:, None]
    counts /= norm[None, :]
    counts[np.diag_indices_from(counts)] = 0.0
    return counts
