"""Gradient-span test: does Δh lie in the span of the output gradients ∂f/∂h at θ0?

Conjecture under test: the linear combinations of hidden units that change in training
are spanned by the output-gradient directions ∂f_j(x)/∂h(x) at the data points. For a
hook with d features, the span is that of the m·O vectors ∂f_j(x_i)/∂h(x_i) at θ0 over
m probe-train inputs and O outputs (m capped so the span stays a small part of R^d); the
statistic is the fraction of ‖Δh‖² = ‖h − h0‖² (rows: probe inputs) inside that span,
next to dim/d, the fraction expected for a random subspace of the same dimension.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import metrics
from ..plots import curves as figures
from ..rebuild import model_at_init
from .spec import rows_only
from .tables import empty, final_values, frame, main_hooks, rows_of, title_suffix

NAME = "gradient_span"


def output_gradients(model: torch.nn.Module, x: torch.Tensor, hook: str) -> torch.Tensor:
    """∂f_j(x_i)/∂h(x_i) at the model's weights, shape (n·O, d), rows ordered (i, j).

    A perturbation ε is added at the hook (a forward hook on its HookPoint) and f is
    differentiated with respect to ε at 0 by ``torch.func.vjp``, one output j at a time;
    examples do not interact, so one vjp gives every example's gradient.
    """
    modules = dict(model.named_modules())
    if hook not in modules:
        raise KeyError(f"unknown hook {hook!r}; valid: {list(model.hook_dict)}")
    with torch.no_grad():
        _, cache = model.run_with_cache(x, names_filter=[hook])

    def f(eps: torch.Tensor) -> torch.Tensor:
        handle = modules[hook].register_forward_hook(lambda _m, _i, out: out + eps)
        try:
            return model(x)
        finally:
            handle.remove()

    out, vjp_fn = torch.func.vjp(f, torch.zeros_like(cache[hook]))
    n = len(x)
    flat = out.reshape(n, -1)
    grads = []
    for j in range(flat.shape[1]):
        cot = torch.zeros_like(flat)
        cot[:, j] = 1
        grads.append(vjp_fn(cot.reshape(out.shape))[0].reshape(n, -1))
    return torch.stack(grads, 1).reshape(-1, grads[0].shape[1]).detach()


def n_points(d: int, n_outputs: int, n_available: int, max_points: int = 64,
             max_dim_fraction: float = 0.25) -> int:
    """Gradient points m such that m·O <= max_dim_fraction·d (0 when even one is too many)."""
    return max(0, min(max_points, n_available, int(max_dim_fraction * d) // n_outputs))


def gradient_span(run: Any, hooks: Sequence[str] | None = None, split: str = "all",
                  max_points: int = 64, max_dim_fraction: float = 0.25) -> pd.DataFrame:
    """Tidy frame of span_fraction, random_baseline, span_dim, hook_dim, n_points.

    Hooks where no gradient point fits (m·O > max_dim_fraction·d, e.g. hook_logits)
    are skipped. At step 0 Δh = 0 and span_fraction is NaN.
    """
    model = model_at_init(run)
    dtype = next(model.parameters()).dtype
    x_train = torch.as_tensor(run.probe.train.x)
    x_train = x_train.to(dtype) if x_train.is_floating_point() else x_train
    with torch.no_grad():
        n_out = int(np.prod(model(x_train[:1]).shape[1:]))
    regime0 = next(r for r in run.regimes if 0 in run.steps(r))
    rows = []
    for hook in hooks if hooks is not None else run.hooks:
        h0 = run.activations(regime0, 0, hook, "network", split).numpy()
        d = int(np.prod(h0.shape[1:]))
        m = n_points(d, n_out, len(x_train), max_points, max_dim_fraction)
        if m == 0:
            continue
        grads = output_gradients(model, x_train[:m], hook).double().numpy()
        for regime in run.regimes:
            for view in run.views[regime]:
                for step in run.steps(regime):
                    dh = run.activations(regime, step, hook, view, split).numpy() - h0
                    res = metrics.gradient_span_fraction(dh, grads)
                    values = {"span_fraction": res["fraction"],
                              "random_baseline": res["random_baseline"],
                              "span_dim": res["dim"], "hook_dim": d, "n_points": m}
                    rows += rows_of(regime, step, hook, view, values)
    return frame(NAME, run, rows) if rows else empty(NAME)


def plot(df: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Span fraction vs step per hook, the random-subspace baseline dotted grey."""
    paths = []
    for suffix, g in figures.per_run(df):
        hooks = list(dict.fromkeys(g["hook"]))
        dims = g[g["metric"] == "span_dim"].groupby("hook")["value"].max()
        d = g[g["metric"] == "hook_dim"].groupby("hook")["value"].max()
        paths.append(figures.vs_step(
            g, "span_fraction", "fraction of ‖Δh‖² in gradient span",
            f"Fraction of ‖Δh‖² in the span of ∂f/∂h at θ0 vs step {title_suffix(g)}",
            Path(out_dir) / f"{NAME}{suffix}", hooks=hooks[:6], baseline="random_baseline",
            baseline_label="random subspace of the same dim (dim/d)",
            notes={h: f"dim {int(dims[h])} of d = {int(d[h])}" for h in hooks}))
    return paths


def headline(df: pd.DataFrame) -> dict:
    """Final-step span fraction and its random baseline per regime and view."""
    hooks = main_hooks(df["hook"].unique())
    return {m: final_values(df, m, hooks) for m in ("span_fraction", "random_baseline")}


ANALYSIS = rows_only(NAME, gradient_span, plot, headline)
