"""Example grids (top-k inputs per regime) and 2-D embedding scatters, one row or panel
per regime in its fixed colour."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import style as plots


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
