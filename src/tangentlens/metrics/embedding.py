"""2-D embeddings of a hook's units: PCA coordinates with explained variance, UMAP."""

from __future__ import annotations

from typing import Any

import numpy as np

from .arrays import as_features


def pca_embedding(u: Any, n_components: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(coordinates (n, n_components), explained-variance ratios (n_components,)) of the rows."""
    a = as_features(u, "u", min_rows=2)
    a = a - a.mean(0)
    left, s, _ = np.linalg.svd(a, full_matrices=False)
    total = float((s**2).sum()) or 1.0
    return left[:, :n_components] * s[:n_components], s[:n_components] ** 2 / total


def umap_embedding(u: Any, seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    """2-D UMAP coordinates (n, 2) of the rows (umap is imported here: its first fit compiles)."""
    import umap

    a = as_features(u, "u", min_rows=3)
    reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, len(a) - 1), random_state=seed)
    return reducer.fit_transform(a)
