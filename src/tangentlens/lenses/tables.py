"""Tidy result tables shared by every run-level analysis.

One row per (run, regime, step, hook, view, metric): columns ``COLUMNS``. The config
columns (width, parametrization, seed, depth, dataset) come from the run's config so
that frames of several runs concatenate and group cleanly.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CONFIG_COLUMNS = ("width", "parametrization", "seed", "depth", "dataset")
COLUMNS = ("analysis", "run", "regime", "step", "hook", "view", "metric", "value", *CONFIG_COLUMNS)


def config_columns(run: Any) -> dict[str, Any]:
    """width, parametrization, seed, depth, dataset of a run (transformers: d_model, n_layers;
    a user's ``kind: python`` model: None for width, parametrization and depth)."""
    cfg = run.config
    model = cfg.get("model", {})
    transformer, user = model.get("kind") == "transformer", model.get("kind") == "python"
    return {"width": None if user else model.get("d_model" if transformer else "width"),
            "parametrization": None if user else model.get("parametrization"),
            "seed": cfg.get("seed"),
            "depth": None if user else model.get("n_layers" if transformer else "depth"),
            "dataset": cfg.get("data", {}).get("name")}


def run_label(run: Any) -> str:
    """``<config name>@<directory>`` (``@<directory>/<file stem>`` unless the file is run.h5)."""
    path = Path(run.path)
    where = path.parent.name if path.stem == "run" else f"{path.parent.name}/{path.stem}"
    return f"{run.config.get('name', 'run')}@{where}"


def rows_of(regime: str, step: int, hook: str, view: str, values: dict[str, Any]) -> list[dict]:
    """One row dict per metric in ``values`` ({metric: value}), for ``frame``."""
    return [{"regime": regime, "step": step, "hook": hook, "view": view, "metric": m, "value": v}
            for m, v in values.items()]


def frame(analysis: str, run: Any, rows: Iterable[dict]) -> pd.DataFrame:
    """Tidy frame from row dicts with keys regime, step, hook, view, metric, value."""
    df = pd.DataFrame(list(rows), columns=["regime", "step", "hook", "view", "metric", "value"])
    df = df.assign(analysis=analysis, run=run_label(run), **config_columns(run))
    df["step"] = df["step"].astype(int)
    df["value"] = df["value"].astype(float)
    return df[list(COLUMNS)]


def empty(analysis: str) -> pd.DataFrame:
    """A frame with the documented columns and no rows."""
    return pd.DataFrame({c: pd.Series(dtype=float if c == "value" else object) for c in COLUMNS}
                        ).assign(analysis=analysis)


def safe(fn, *args, **kwargs) -> Any:
    """``fn(*args, **kwargs)``, or NaN when the metric is undefined (it raises ValueError)."""
    try:
        return fn(*args, **kwargs)
    except ValueError:
        return np.nan


def final_values(df: pd.DataFrame, metric: str,
                 hooks: Iterable[str] | None = None) -> dict[str, dict[str, float]]:
    """{key: {hook: value at the last step}} for one metric.

    key is the regime for the network view and ``<regime>/tangent`` for the tangent view,
    prefixed by ``<run>/`` when ``df`` holds several runs.
    """
    sel = df[df["metric"] == metric]
    if hooks is not None:
        sel = sel[sel["hook"].isin(list(hooks))]
    several = sel["run"].nunique() > 1
    out: dict[str, dict[str, float]] = {}
    for (run, regime, view, hook), g in sel.groupby(["run", "regime", "view", "hook"], sort=False):
        key = regime if view == "network" else f"{regime}/{view}"
        key = f"{run}/{key}" if several else key
        out.setdefault(key, {})[hook] = float(g.loc[g["step"].idxmax(), "value"])
    return out


def title_suffix(df: pd.DataFrame) -> str:
    """'(width 256, ntk, teacher)' from the config columns, listing every distinct value."""
    parts = []
    for col, fmt in (("width", "width {}"), ("parametrization", "{}"), ("dataset", "{}")):
        vals = [str(v) for v in sorted(set(df[col].dropna()))]
        if vals:
            parts.append(fmt.format("/".join(vals)))
    return f"({', '.join(parts)})" if parts else ""


MAIN_HOOK_SUFFIXES = ("hook_post", "hook_resid_post", "hook_pooled", "hook_logits")


def main_hooks(hooks: Iterable[str]) -> list[str]:
    """Post-activation hooks and the logits (all hooks if none of them is present)."""
    hooks = list(hooks)
    main = [h for h in hooks if h.endswith(MAIN_HOOK_SUFFIXES)]
    return main or hooks
