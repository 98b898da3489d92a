"""Figures of tidy analysis frames: a metric against training step or across hooks.

Regimes keep their fixed colours (``plots.color``), views their line styles
(network solid, tangent dashed); the θ0 value is the step-0 point of every line.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from . import style as plots

STEP_LABEL = "training step (symlog scale)"


def _series(df: pd.DataFrame):
    """(label, regime, view, sorted sub-frame) for every regime × view in ``df``."""
    for (regime, view), g in df.groupby(["regime", "view"], sort=False):
        label = regime if view == "network" else f"{regime} ({view} view)"
        yield label, regime, view, g.sort_values("step")


def _style(regime: str, view: str, connected: bool = True) -> dict:
    """Colour by regime, line style by view; unconnected markers for a series that is not a
    trajectory (``kernel``: θ0 and the closed-form solution)."""
    ls = plots.VIEW_STYLES.get(view, "-")
    if not connected:
        return {"color": plots.color(regime), "ls": "none", "marker": "D", "ms": 5,
                "mfc": "none" if ls != "-" else plots.color(regime)}
    return {"color": plots.color(regime), "ls": ls, "marker": "o", "ms": 3}


def _title(fig, title: str) -> None:
    width = fig.get_size_inches()[0]
    fig.suptitle(textwrap.fill(title, int(width * 11)) if "\n" not in title else title)


def _legend(fig, axes) -> None:
    handles, labels = {}, []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    if labels:
        fig.legend([handles[lab] for lab in labels], labels, loc="outside lower center",
                   ncols=min(len(labels), 4), fontsize="small", frameon=False)


def vs_step(df: pd.DataFrame, metric: str, ylabel: str, title: str, path: str | Path,
            hooks: Sequence[str] | None = None, logy: bool = False,
            baseline: str | None = None, baseline_label: str = "baseline",
            notes: dict[str, str] | None = None) -> Path:
    """``metric`` against step, one panel per hook, one line per regime × view.

    ``baseline``: a second metric (mean over regimes and views) drawn as a grey dotted line
    labelled ``baseline_label`` (e.g. the random-subspace expectation of a fraction);
    ``notes``: text appended to a hook's panel title.
    """
    sel = df[df["metric"] == metric]
    hooks = list(hooks) if hooks is not None else list(dict.fromkeys(sel["hook"]))
    ncols = min(len(hooks), 3)
    nrows = math.ceil(len(hooks) / ncols)
    fig, axes = plots.figure(nrows, ncols, sharex=True,
                             figsize=(max(4.2 * ncols, 6.4), 3.4 * nrows))
    flat = axes.ravel()
    for ax, hook in zip(flat, hooks):
        for label, regime, view, g in _series(sel[sel["hook"] == hook]):
            y = g["value"].to_numpy()
            x = g["step"].to_numpy()
            keep = np.isfinite(y) & ((y > 0) if logy else True)
            ax.plot(x[keep], y[keep], label=label, **_style(regime, view, len(g) > 2))
        if baseline is not None:
            b = df[(df["metric"] == baseline) & (df["hook"] == hook)].groupby("step")["value"]
            ax.plot(b.mean().index, b.mean().values, ls=":", lw=1.5, color=plots.color("init"),
                    label=baseline_label)
        ax.set_xscale("symlog", linthresh=1)
        if logy:
            ax.set_yscale("log")
        note = (notes or {}).get(hook)
        ax.set_title(f"{hook} ({note})" if note else hook, fontsize="medium")
        ax.set_xlabel(STEP_LABEL)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    for ax in flat[len(hooks):]:
        ax.set_visible(False)
    _legend(fig, flat[:len(hooks)])
    _title(fig, title)
    return plots.save(fig, path)


def vs_hook(df: pd.DataFrame, metric: str, ylabel: str, title: str, path: str | Path,
            logy: bool = False) -> Path:
    """Final-step ``metric`` per hook (model order), one line per regime × view."""
    sel = df[df["metric"] == metric]
    hooks = list(dict.fromkeys(sel["hook"]))
    fig, axes = plots.figure(1, 1, figsize=(min(max(6.4, 0.6 * len(hooks) + 2), 12), 4.4))
    ax = axes[0, 0]
    for label, regime, view, g in _series(sel):
        last = g[g["step"] == g["step"].max()].set_index("hook")["value"]
        y = np.array([last.get(h, np.nan) for h in hooks], dtype=float)
        if logy:
            y[y <= 0] = np.nan
        ax.plot(range(len(hooks)), y, label=label, **_style(regime, view))
    ax.set_xticks(range(len(hooks)), hooks, rotation=40, ha="right", fontsize="small")
    ax.set_xlabel("hook (input → output)")
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    _legend(fig, [ax])
    _title(fig, title)
    return plots.save(fig, path)


def vs_width(df: pd.DataFrame, metric: str, hook: str, ylabel: str, title: str,
             path: str | Path, slope: float | None = -0.5) -> Path:
    """Final-step ``metric`` of ``hook`` against width (log-log), mean over runs per width;
    a grey dotted reference line ∝ width^slope through the first series' smallest width."""
    sel = df[(df["metric"] == metric) & (df["hook"] == hook)]
    last = sel[sel["step"] == sel.groupby(["run", "regime"])["step"].transform("max")]
    fig, axes = plots.figure(1, 1, figsize=(6.4, 4.2))
    ax = axes[0, 0]
    means = []
    for label, regime, view, g in _series(last):
        m = g.groupby("width")["value"].mean()
        m = m[m > 0]
        ax.plot(m.index, m.values, label=label, **_style(regime, view))
        means.append(m)
    first = next((m for m in means if len(m) > 1), None)
    if slope is not None and first is not None:
        w = first.index.to_numpy(dtype=float)
        ax.plot(w, first.iloc[0] * (w / w[0]) ** slope, ls=":", color=plots.color("init"),
                label=f"∝ width^{slope:g}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("width (hidden units, log scale)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    _legend(fig, [ax])
    _title(fig, title)
    return plots.save(fig, path)


def per_run(df: pd.DataFrame):
    """(file-name suffix, rows of one run): no suffix for a single run, ``_run<i>`` otherwise."""
    runs = list(dict.fromkeys(df["run"]))
    for i, run in enumerate(runs):
        yield ("" if len(runs) == 1 else f"_run{i}"), df[df["run"] == run]
