"""Kernel change: the empirical NTK of the network at each step's θ against θ0.

On a fixed probe subset (the first ``n_points`` probe-test inputs), K_t is the trace NTK
Σ_j ∂f_j/∂θ · ∂f_j/∂θ of the *network* at the regime's θ snapshot (``network`` view,
also for ``linearized`` and ``kernel``, whose own tangent kernel is K_0 by construction).
Metrics: kernel distance 1 − ⟨K_t, K_0⟩/(‖K_t‖‖K_0‖) (Fort et al. 2020), relative
Frobenius change ‖K_t − K_0‖/‖K_0‖, and centered kernel–target alignment of K_t.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import metrics
from ..plots import curves as figures
from ..rebuild import load_params, model_at_init
from .spec import needs_model_params, rows_only
from .tables import empty, final_values, frame, rows_of, safe, title_suffix

NAME = "kernel_drift"
HOOK = "ntk"  # kernel rows are not tied to a hook; the hook column names the kernel


def kernel_drift(run: Any, n_points: int = 64, implementation: str = "auto") -> pd.DataFrame:
    """Tidy frame of kernel_distance, kernel_relative_change, kernel_alignment and n_points
    per regime × step (hook column: ``ntk``)."""
    from ..ntk import empirical_ntk

    model = model_at_init(run)
    dtype = next(model.parameters()).dtype
    probe = run.probe.test
    x = torch.as_tensor(probe.x[:n_points])
    x = x.to(dtype) if x.is_floating_point() else x
    y = probe.y[:n_points]

    def ntk(params: dict[str, torch.Tensor]) -> np.ndarray:
        load_params(model, params)
        return empirical_ntk(model, x, mode="trace", implementation=implementation).double().numpy()

    def has_theta(regime: str) -> bool:  # the infinite-width limits have no θ
        try:
            run.params(regime, run.steps(regime)[0])
        except (KeyError, IndexError):
            return False
        return True

    with_theta = [r for r in run.regimes if has_theta(r)]
    regime0 = next(r for r in with_theta if 0 in run.steps(r))
    k0 = ntk(run.params(regime0, 0))  # θ0, shared by every regime (also spawned ones)
    rows = []
    for regime in run.regimes:
        steps = run.steps(regime)
        if regime not in with_theta or not steps:
            continue
        for step in steps:
            k = k0 if step == 0 else ntk(run.params(regime, step))
            values = {"kernel_distance": safe(metrics.kernel_distance, k, k0),
                      "kernel_relative_change": safe(metrics.kernel_relative_change, k, k0),
                      "kernel_alignment": safe(metrics.kernel_target_alignment, k, y),
                      "n_points": len(x)}
            rows += rows_of(regime, step, HOOK, "network", values)
    return frame(NAME, run, rows) if rows else empty(NAME)


def _notes(df: pd.DataFrame) -> dict[str, str]:
    n = df[df["metric"] == "n_points"]["value"].max()
    return {HOOK: f"trace NTK of the network on {int(n)} probe-test inputs"}


def plot(df: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Kernel distance and kernel–target alignment against step, per regime."""
    paths = []
    for suffix, g in figures.per_run(df):
        n = title_suffix(g)
        paths.append(figures.vs_step(
            g, "kernel_distance", "kernel distance 1 − cos(K_t, K_0)",
            f"Empirical NTK distance from θ0 vs step {n}", Path(out_dir) / f"{NAME}{suffix}",
            logy=True, notes=_notes(g)))
        paths.append(figures.vs_step(
            g, "kernel_alignment", "centered kernel–target alignment",
            f"NTK–target alignment vs step {n}", Path(out_dir) / f"{NAME}_alignment{suffix}",
            notes=_notes(g)))
    return paths


def headline(df: pd.DataFrame) -> dict:
    """Final-step kernel distance and alignment per regime."""
    return {m: {r: v[HOOK] for r, v in final_values(df, m, [HOOK]).items()}
            for m in ("kernel_distance", "kernel_alignment")}


ANALYSIS = rows_only(NAME, kernel_drift, plot, headline, needs_model_params)
