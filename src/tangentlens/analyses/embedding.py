"""2-D embeddings of a hook's units (PCA always, UMAP on request), one panel per regime."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import plots
from .metrics import as_features
from .topk import suptitle


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


def plot_embeddings(panels: Sequence[tuple[str, str, np.ndarray]], labels: np.ndarray,
                    axis_labels: tuple[str, str], title: str, path: str | Path) -> Path:
    """Scatter per panel (label, regime, coords (n, 2)), points coloured by ``labels``."""
    labels = np.asarray(labels)
    labels = labels[:, 0] if labels.ndim > 1 else labels
    discrete = labels.dtype.kind in "iu"
    n_classes = len(np.unique(labels)) if discrete else 0
    few = discrete and n_classes <= 10
    cmap, norm = ("tab10", dict(vmin=-0.5, vmax=9.5)) if few else ("viridis", {})
    fig, axes = plots.figure(1, len(panels), figsize=(3.3 * len(panels) + 0.9, 3.4))
    for ax, (label, regime, xy) in zip(axes[0], panels):
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap=cmap, s=6, alpha=0.8, **norm)
        ax.set_title(label, color=plots.color(regime), fontsize=9)
        ax.set_xlabel(axis_labels[0])
        ax.set_ylabel(axis_labels[1])
    name = "class label" if discrete else "target (first output)"
    fig.colorbar(sc, ax=axes[0].tolist(), label=name, shrink=0.85)
    suptitle(fig, title)
    return plots.save(fig, path)
