"""Deterministic top-k selection."""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest finite scores, best first; ties go to the lower index.

    Excluded items are expected as -inf (or NaN) and never returned, so fewer than k
    indices come back when fewer than k items are eligible.
    """
    if k <= 0 or scores.size == 0:
        return np.empty(0, dtype=np.int64)
    finite = np.isfinite(scores)
    if k < scores.size:
        # argpartition alone is not tie-stable; widen to everything >= the k-th value.
        masked = np.where(finite, scores, -np.inf)
        kth = np.partition(masked, scores.size - k)[scores.size - k]
        candidates = np.flatnonzero(finite & (masked >= kth))
    else:
        candidates = np.flatnonzero(finite)
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order][:k].astype(np.int64)
