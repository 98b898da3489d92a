"""The record every analysis module exports as ``ANALYSIS``, and the two ways to make one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..rebuild import has_params, rebuild_error


@dataclass(frozen=True)
class Analysis:
    """``compute(run, fig_dir)`` → tidy rows (a self-plotting analysis also draws that run's
    figures into fig_dir); ``plot(all rows, out_dir)`` → figure paths; ``headline(all rows)``."""

    name: str
    compute: Callable[[Any, Path], pd.DataFrame]
    plot: Callable[[pd.DataFrame, Path], list[Path]]
    headline: Callable[[pd.DataFrame], dict]
    skip_reason: Callable[[Any], str | None]  # None when the analysis applies to the run


def needs_step0(run: Any) -> str | None:
    return None if any(0 in run.steps(r) for r in run.regimes) else "no step 0 (θ0) cached"


def needs_params(run: Any) -> str | None:
    return needs_step0(run) or (None if has_params(run) else "no θ snapshots in the run file")


def needs_model(run: Any) -> str | None:
    """Step 0 cached and the model rebuildable (``rebuild.rebuild_error``)."""
    return needs_step0(run) or rebuild_error(run)


def needs_model_data(run: Any) -> str | None:
    """Step 0 cached, the model and the run's dataset rebuildable."""
    return needs_step0(run) or rebuild_error(run, data=True)


def needs_model_params(run: Any) -> str | None:
    return needs_params(run) or rebuild_error(run)


def rows_only(name: str, fn: Callable[[Any], pd.DataFrame], plot: Callable, headline: Callable,
              skip: Callable[[Any], str | None] = needs_step0) -> Analysis:
    """An analysis whose rows of all runs are plotted together by ``plot``."""
    return Analysis(name, lambda run, _dir: fn(run), plot, headline, skip)


def self_plotting(name: str, compute: Callable[[Any, Path], pd.DataFrame], headline: Callable,
                  skip: Callable[[Any], str | None] = needs_step0) -> Analysis:
    """An analysis whose ``analyze_run(run, out_dir)`` (or ``compute``) draws its own per-run
    figures (into ``<out>/run<i>/`` when several runs are analyzed)."""

    def figures(df: pd.DataFrame, out: Path) -> list[Path]:
        dirs = [out] if df["run"].nunique() <= 1 else sorted(out.glob("run[0-9]*/"))
        return [p for d in dirs for p in sorted(d.glob(f"{name}_*.png"))]

    return Analysis(name, compute, figures, headline, skip)
