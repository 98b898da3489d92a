"""Gradient-span test: does Δh lie in the span of the output gradients ∂f/∂h at θ0?

Conjecture under test: the linear combinations of hidden units that change in training
are spanned by the output-gradient directions ∂f_a(x)/∂h(x) at the training points. For a
hook with d features the span is that of the n·O vectors ∂f_a(x_i)/∂h(x_i) at θ0 over ALL
n training points of the run's dataset and its O outputs (an orthonormal basis built by
streaming QR, ``metrics.StreamingSpan``, over blocks of training points). For a first
layer h = Wx + b, every Δh of linearized training or the kernel regime lies in it exactly:
ΔW = Σ_ia c_ia ∂f_a/∂h(x_i) x_iᵀ. The statistic is the fraction of ‖Δh‖² = ‖h − h0‖²
(rows: probe inputs) inside that span, next to dim/d, the fraction expected for a random
subspace of the same dimension.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import metrics
from ..models.hooks import run_with_cache
from ..plots import curves as figures
from ..rebuild import data_and_model_at_init
from .spec import needs_model_data, rows_only
from .tables import empty, final_values, frame, main_hooks, rows_of, title_suffix

NAME = "gradient_span"


def output_gradients(model: torch.nn.Module, x: torch.Tensor,
                     hooks: Sequence[str]) -> dict[str, torch.Tensor]:
    """{hook: ∂f_a(x_i)/∂h(x_i) at the model's weights, shape (n·O, d), rows ordered (i, a)}.

    A perturbation ε_h is added at each hook (a forward hook on its HookPoint) and f is
    differentiated with respect to every ε_h at 0 by one ``torch.func.vjp``, vmapped over the
    O one-hot output cotangents; examples do not interact, so it gives every example's
    gradient.
    """
    modules = dict(model.named_modules())
    unknown = [h for h in hooks if h not in modules]
    if unknown:
        raise KeyError(f"unknown hook(s) {unknown}; valid: module names of {type(model).__name__}")
    _, cache = run_with_cache(model, x, list(hooks))

    def f(*eps: torch.Tensor) -> torch.Tensor:
        handles = [modules[h].register_forward_hook(lambda _m, _i, out, e=e: out + e)
                   for h, e in zip(hooks, eps)]
        try:
            return model(x)
        finally:
            for handle in handles:
                handle.remove()

    out, vjp_fn = torch.func.vjp(f, *(torch.zeros_like(cache[h]) for h in hooks))
    n, n_out = len(x), out[0].numel()
    eye = torch.eye(n_out, dtype=out.dtype).reshape(n_out, 1, *out.shape[1:])
    grads = torch.func.vmap(vjp_fn)(eye.expand(n_out, *out.shape))  # per hook (O, n, ...)
    return {h: g.reshape(n_out, n, -1).transpose(0, 1).reshape(n * n_out, -1).detach()
            for h, g in zip(hooks, grads)}


def gradient_spans(model: torch.nn.Module, x_train: torch.Tensor, dims: dict[str, int],
                   rcond: float = 1e-6, max_dim: int = 1024,
                   block_vectors: int = 2048) -> dict[str, dict]:
    """{hook: {basis, n_points, residual}}: the span of ∂f/∂h over all of ``x_train``.

    Training points are streamed in blocks of max(1, ⌊block_vectors / O⌋). A hook is done
    once its basis is all of R^d (the rest lie in it: n_points = n) or has ``max_dim``
    columns; then n_points counts the points streamed and residual is the relative residual
    of the next, held-out block (with no block left, the residual bound over the streamed
    rows).
    """
    with torch.no_grad():
        n_out = int(np.prod(model(x_train[:1]).shape[1:]))
    block = max(1, block_vectors // n_out)
    spans = {h: metrics.StreamingSpan(d, rcond, max_dim) for h, d in dims.items()}
    done: dict[str, dict] = {}
    for start in range(0, len(x_train), block):
        live = [h for h in dims if h not in done]
        if not live:
            break
        grads = output_gradients(model, x_train[start:start + block], live)
        for h in live:
            g, span = grads[h].double().numpy(), spans[h]
            if span.full:  # capped below d: this block is held out
                done[h] = {"n_points": start, "residual": span.residual_of(g)}
                continue
            span.add(g)
            if span.dim == span.d:
                done[h] = {"n_points": len(x_train), "residual": span.residual}
    for h in dims:
        done.setdefault(h, {"n_points": len(x_train), "residual": spans[h].residual})
        done[h]["basis"] = spans[h].basis
    return done


def gradient_span(run: Any, hooks: Sequence[str] | None = None, split: str = "all",
                  rcond: float = 1e-6, max_dim: int = 1024) -> pd.DataFrame:
    """Tidy frame of span_fraction, random_baseline, span_dim, hook_dim, n_points,
    span_residual (see ``gradient_spans``). At step 0 Δh = 0 and span_fraction is NaN."""
    ds, model = data_and_model_at_init(run)
    dtype = next(model.parameters()).dtype
    x_train = ds.x_train.to(dtype) if ds.x_train.is_floating_point() else ds.x_train
    regime0 = next(r for r in run.regimes if 0 in run.steps(r))
    hooks = list(hooks if hooks is not None else run.hooks)
    h0 = {h: run.activations(regime0, 0, h, "network", split).numpy() for h in hooks}
    dims = {h: int(np.prod(a.shape[1:])) for h, a in h0.items()}
    spans = gradient_spans(model, x_train, dims, rcond, max_dim)
    rows = []
    for hook in hooks:
        basis, d = spans[hook]["basis"], dims[hook]
        fixed = {"random_baseline": basis.shape[1] / d, "span_dim": basis.shape[1],
                 "hook_dim": d, "n_points": spans[hook]["n_points"],
                 "span_residual": spans[hook]["residual"]}
        for regime in run.regimes:
            for view in run.views[regime]:
                for step in run.steps(regime):
                    dh = run.activations(regime, step, hook, view, split).numpy() - h0[hook]
                    values = {"span_fraction": metrics.span_fraction(dh, basis), **fixed}
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


ANALYSIS = rows_only(NAME, gradient_span, plot, headline, needs_model_data)
