"""Linear probes per hook × regime × step × view, fit on probe-train and scored on probe-test.

Targets: class labels (logistic regression, test accuracy) for classification datasets,
the target itself (ridge, R²) for regression datasets, and each ground-truth latent
(ridge, R²) where the dataset has latents. Regularization is cross-validated
(``probes.fit_probe``). The step-0 value of every line is the θ0 baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..metrics.probes import fit_probe
from ..plots import curves as figures
from .spec import rows_only
from .tables import empty, final_values, frame, main_hooks, rows_of, title_suffix

NAME = "probing"


def _targets(run: Any) -> list[tuple[str, str, np.ndarray, np.ndarray, list[str]]]:
    """(metric prefix, probe kind, y_train, y_test, per-column metric names)."""
    p = run.probe
    tr, te = p.train, p.test
    out = []
    if np.issubdtype(p.y.dtype, np.integer) and p.y.ndim == 1:
        out.append(("probe_accuracy", "classification", tr.y, te.y, []))
    else:
        out.append(("probe_r2_target", "regression", tr.y, te.y, []))
    if p.latents is not None:
        names = p.latent_names or [f"latent{j}" for j in range(p.latents.shape[1])]
        out.append(("probe_r2_latents", "regression", tr.latents, te.latents,
                    [f"probe_r2_{n}" for n in names]))
    return out


def probing(run: Any, hooks: Sequence[str] | None = None, cv: int = 3) -> pd.DataFrame:
    """Tidy frame of probe scores (see module docstring); default hooks: ``main_hooks``.

    Metrics: ``probe_accuracy`` and ``probe_chance`` (majority class) for labels,
    ``probe_r2_target`` for regression targets (mean over target columns),
    ``probe_r2_latents`` (mean over latents) and ``probe_r2_<latent name>`` per latent.
    """
    hooks = list(hooks) if hooks is not None else main_hooks(run.hooks)
    targets = _targets(run)
    rows = []
    for regime in run.regimes:
        for view in run.views[regime]:
            for step in run.steps(regime):
                for hook in hooks:
                    xtr = run.activations(regime, step, hook, view, "train").numpy()
                    xte = run.activations(regime, step, hook, view, "test").numpy()
                    values = {}
                    for metric, kind, ytr, yte, per_col in targets:
                        res = fit_probe(xtr, ytr, xte, yte, kind=kind, cv=cv, seed=run.seed or 0)
                        values[metric] = res["score"]
                        if kind == "classification":
                            values["probe_chance"] = res["chance"]
                        values.update(zip(per_col, res.get("scores", [])))
                    rows += rows_of(regime, step, hook, view, values)
    return frame(NAME, run, rows) if rows else empty(NAME)


def _main_metrics(df: pd.DataFrame) -> list[str]:
    present = set(df["metric"])
    return [m for m in ("probe_accuracy", "probe_r2_target", "probe_r2_latents")
            if m in present]


def plot(df: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Each main probe score against step, one panel per hook."""
    labels = {"probe_accuracy": ("test accuracy of logistic probe", "Label probe accuracy"),
              "probe_r2_target": ("test R² of ridge probe", "Target probe R²"),
              "probe_r2_latents": ("mean test R² over latents", "Latent probe R²")}
    paths = []
    for suffix, g in figures.per_run(df):
        for metric in _main_metrics(g):
            ylabel, title = labels[metric]
            paths.append(figures.vs_step(
                g, metric, ylabel, f"{title} vs step {title_suffix(g)}",
                Path(out_dir) / f"{NAME}_{metric}{suffix}",
                hooks=list(dict.fromkeys(g["hook"]))[:6]))
    return paths


def headline(df: pd.DataFrame) -> dict:
    """Final-step main probe scores per regime (and view) and hook."""
    return {m: final_values(df, m) for m in _main_metrics(df)}


ANALYSIS = rows_only(NAME, probing, plot, headline, skip=lambda run: None)
