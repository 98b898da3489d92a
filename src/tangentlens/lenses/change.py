"""Representation change: each regime × step × view × hook against the same hook at θ0.

The reference h0 is the hook's ``network`` activation at step 0 of the same regime (θ0,
identical across regimes), on the same probe inputs. Every metric is computed by
``tangentlens.metrics``; a metric that is undefined for some activation (e.g. zero variance)
is recorded as NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import metrics
from ..plots import curves as figures
from .spec import rows_only
from .tables import empty, final_values, frame, main_hooks, rows_of, safe, title_suffix

NAME = "change"
NEURON_METRICS = {"median": "neuron_change_median", "p90": "neuron_change_p90",
                  "frac_above": "neuron_frac_above"}
# (metric, title, y label, log y) of the per-step figures; {k} is the PCA dimension
FIGURES = (
    ("relative_change", "Relative change of activations", "‖h − h0‖_F / ‖h0‖_F", True),
    ("neuron_change_median", "Median per-neuron relative change",
     "median_i ‖h_i − h0_i‖ / ‖h0_i‖", True),
    ("linear_cka", "Linear CKA between h and h0", "linear CKA(h, h0)", False),
    ("pca_overlap", "Overlap of the top-{k} PCA subspaces of h and h0",
     "mean cos² of principal angles", False),
    ("flip_fraction", "Pre-activation sign flips since θ0",
     "fraction of (input, unit) signs flipped", False),
)


def change_metrics(h: np.ndarray, h0: np.ndarray, pre: bool, k: int = 10,
                   threshold: float = 0.1, debiased: bool = True) -> dict[str, float]:
    """All change metrics of h against h0 (both (n, ...)); ``pre``: add the flip fraction."""
    out = {"relative_change": safe(metrics.relative_change, h, h0)}
    neuron = safe(metrics.per_neuron_change, h, h0, threshold=threshold)
    for key, name in NEURON_METRICS.items():
        out[name] = neuron[key] if isinstance(neuron, dict) else np.nan
    out["linear_cka"] = safe(metrics.linear_cka, h, h0)
    out["rbf_cka"] = safe(metrics.rbf_cka, h, h0, debiased=debiased)
    d = int(np.prod(h.shape[1:]))
    if k < min(d, len(h)):  # top-k of a k-dimensional space would be trivially identical
        pca = safe(metrics.pca_subspace_metrics, h, h0, k)
        ok = isinstance(pca, dict)
        out["pca_angle_max_deg"] = float(np.degrees(pca["angles"].max())) if ok else np.nan
        out["pca_overlap"] = pca["overlap"] if ok else np.nan
        out["pca_variance_explained"] = pca["variance_explained"] if ok else np.nan
        out["pca_k"] = k
    if pre:
        out["flip_fraction"] = safe(metrics.activation_flip_fraction, h, h0)
    out["participation_ratio"] = safe(metrics.participation_ratio, h)
    out["effective_rank"] = safe(metrics.effective_rank, h)
    return out


def _reference(run: Any, regime: str) -> str:
    """The regime whose step-0 network activations serve as h0 for ``regime``."""
    if 0 in run.steps(regime) and "network" in run.views[regime]:
        return regime
    for r in run.regimes:
        if 0 in run.steps(r) and "network" in run.views[r]:
            return r
    raise ValueError(f"{run.path}: no regime has step 0 cached; change needs θ0 activations")


def representation_change(run: Any, hooks: Sequence[str] | None = None, split: str = "all",
                          k: int = 10, threshold: float = 0.1,
                          debiased: bool = True) -> pd.DataFrame:
    """Tidy frame of every change metric (see module docstring) for ``hooks`` (default all)."""
    hooks = list(hooks) if hooks is not None else run.hooks
    rows = []
    for regime in run.regimes:
        ref = _reference(run, regime)
        h0s = {hook: run.activations(ref, 0, hook, "network", split).numpy() for hook in hooks}
        for view in run.views[regime]:
            for step in run.steps(regime):
                for hook in hooks:
                    h = run.activations(regime, step, hook, view, split).numpy()
                    m = change_metrics(h, h0s[hook], hook.endswith("hook_pre"), k, threshold,
                                       debiased)
                    rows += rows_of(regime, step, hook, view, m)
    return frame(NAME, run, rows) if rows else empty(NAME)


def plot(df: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Per-step figures of FIGURES, relative change per hook, and vs width when widths differ."""
    out_dir, paths = Path(out_dir), []
    for suffix, g in figures.per_run(df):
        hooks = main_hooks(g["hook"].unique())
        sfx = title_suffix(g)
        k = g[g["metric"] == "pca_k"]["value"].max()
        for metric, title, ylabel, logy in FIGURES:
            sel = g[g["metric"] == metric]
            if sel.empty:
                continue
            shown = [h for h in hooks if h in set(sel["hook"])] or list(dict.fromkeys(sel["hook"]))
            title = title.format(k="k" if np.isnan(k) else int(k))
            paths.append(figures.vs_step(
                g, metric, ylabel, f"{title} vs step {sfx}",
                out_dir / f"{NAME}_{metric}{suffix}", hooks=shown[:6], logy=logy))
        paths.append(figures.vs_hook(
            g, "relative_change", "‖h − h0‖_F / ‖h0‖_F at final step",
            f"Relative change per hook at the final step {sfx}",
            out_dir / f"{NAME}_by_hook{suffix}", logy=True))
    if df["width"].nunique() > 1:
        hook = main_hooks(df["hook"].unique())[0]
        paths.append(figures.vs_width(
            df, "relative_change", hook, f"‖h − h0‖_F / ‖h0‖_F of {hook}",
            f"Relative change of {hook} at the final step vs width {title_suffix(df)}",
            out_dir / f"{NAME}_vs_width"))
    return paths


def headline(df: pd.DataFrame) -> dict:
    """Final-step relative change and linear CKA per regime and view for the main hooks."""
    hooks = main_hooks(df["hook"].unique())
    return {m: final_values(df, m, hooks) for m in ("relative_change", "linear_cka")}


ANALYSIS = rows_only(NAME, representation_change, plot, headline)
