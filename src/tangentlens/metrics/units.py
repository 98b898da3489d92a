"""Units of a hook and their top-k activating probe examples (pure arrays).

A *unit* is a linear read-out w of a hook's unit vector: a neuron (one-hot w) or a θ0 PCA
direction. Units of a hook: MLP features as they are, CNN channels averaged over space,
transformer features at the last position (the "=" token, where the answer is read).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .arrays import as_features


def unit_matrix(acts: Any, kind: str) -> Any:
    """(n, units) from hook activations (n, ...): numpy in → numpy out, torch in → torch out."""
    if kind == "transformer":
        acts = acts[:, -1]
    elif acts.ndim > 2:
        acts = acts.mean(axis=tuple(range(2, acts.ndim)))
    return acts.reshape(acts.shape[0], -1)


def top_k(scores: Any, k: int) -> np.ndarray:
    """Indices of the k largest scores, largest first (ties: lower index first)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    if not 1 <= k <= s.size:
        raise ValueError(f"k must be in 1..{s.size} (number of examples), got {k}")
    part = np.argpartition(-s, k - 1)[:k]
    return part[np.lexsort((part, -s[part]))]


def pca_directions(u: Any, n: int) -> np.ndarray:
    """Top-n principal directions (n, units) of the rows of ``u``; the largest |entry| is > 0."""
    a = as_features(u, "u", min_rows=2)
    _, _, vt = np.linalg.svd(a - a.mean(0), full_matrices=False)
    v = vt[:n]
    return v * np.sign(v[np.arange(len(v)), np.abs(v).argmax(1)])[:, None]
