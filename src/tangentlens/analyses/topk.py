"""Top-k activating probe examples for a unit of a hook, and the example-grid figure.

A *unit* is a linear read-out w of a hook's unit vector: a neuron (one-hot w) or a θ0 PCA
direction. Units of a hook: MLP features as they are, CNN channels averaged over space,
transformer features at the last position (the "=" token, where the answer is read).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import plots
from .metrics import as_features


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


def plot_grid(rows: Sequence[tuple[str, str, np.ndarray, Sequence[str]]],
              input_shape: Sequence[int], title: str, path: str | Path,
              tokens: bool = False) -> Path:
    """One row of examples per regime: (label, regime, examples (k, *input_shape), captions).

    Images (C, H, W) are drawn with imshow, signals (C, L) / vectors (d,) as lines, token
    sequences (``tokens=True``, modular addition [a, b, =]) as "(a, b)" cells.
    """
    k = max(len(r[2]) for r in rows)
    line = not tokens and len(input_shape) < 3
    height = 0.85 if tokens else 1.45
    fig, axes = plots.figure(len(rows), k, figsize=(1.25 * k + 0.8, height * len(rows) + 0.6),
                             sharey="row" if line else False)
    for (label, regime, xs, captions), row in zip(rows, axes):
        for j, ax in enumerate(row):
            if j >= len(xs):
                ax.set_visible(False)
                continue
            _draw(ax, np.asarray(xs[j]), line, tokens, plots.color(regime))
            ax.set_title(captions[j], fontsize=7)
            for spine in ax.spines.values():
                spine.set(color=plots.color(regime), lw=1.5)
        row[0].set_ylabel(label, color=plots.color(regime), fontsize=8)
    if line:
        for ax in axes[-1]:
            ax.set_xlabel("input coordinate", fontsize=7)
    suptitle(fig, title)
    return plots.save(fig, path)


def suptitle(fig, title: str, fontsize: float = 9) -> None:
    """Figure title wrapped to the figure's width."""
    fig.suptitle(textwrap.fill(title, int(130 * fig.get_figwidth() / fontsize)), fontsize=fontsize)


def _draw(ax, x: np.ndarray, line: bool, tokens: bool, color: str) -> None:
    if tokens:
        ax.text(0.5, 0.5, f"({x[0]}, {x[1]})", ha="center", va="center", fontsize=9)
        ax.set(xticks=[], yticks=[])
    elif line:
        ax.plot(x.reshape(-1, x.shape[-1]).T, lw=1, color=color)
        ax.tick_params(labelsize=6)
    else:
        img = x[0] if x.shape[0] == 1 else np.moveaxis(x, 0, -1)
        if img.ndim == 3:
            img = (img - img.min()) / (np.ptp(img) + 1e-12)
        ax.imshow(img, cmap="gray")
        ax.set(xticks=[], yticks=[])
