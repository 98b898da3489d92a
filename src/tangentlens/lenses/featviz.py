"""Feature visualization of a run, side by side across regimes at the same unit and step.

Units of one hook: chosen neurons (default: the live neurons whose probe activation pattern
the first regime changed most) and the top θ0 PCA directions, the same direction projected
for every regime. For each unit:
top-k probe examples (images, signals or (a, b) token pairs), and activation maximization
on image / signal inputs; plus PCA (and optionally UMAP) embeddings of the hook. Regimes
with a ``tangent`` view (linearized, kernel) are shown in it: their hook is
h(x; θ0) + J_h(x; θ0)Δθ, and activation maximization ascends that function of x.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..metrics.actmax import maximize_activation
from ..metrics.embedding import pca_embedding, umap_embedding
from ..metrics.units import pca_directions, top_k, unit_matrix
from ..plots.grids import plot_embeddings, plot_grid
from ..rebuild import has_params, load_params, model_at_init, rebuild_error
from ..store.layout import LIMIT_REGIMES
from .spec import self_plotting
from .tables import frame

NAME = "featviz"
HookFn = Callable[[torch.Tensor, str], torch.Tensor]


def view_of(run: Any, regime: str) -> str:
    """The view a regime is shown in: ``tangent`` where cached, else ``network``."""
    return "tangent" if "tangent" in run.views[regime] else "network"


def hook_function(model0: torch.nn.Module, params: dict[str, torch.Tensor],
                  view: str) -> HookFn:
    """(x, hook) ↦ the hook's activation at θ = ``params`` in ``view``, differentiable in x.

    ``network``: h(x; θ); ``tangent``: h(x; θ0) + J_h(x; θ0)(θ − θ0), θ0 = model0's weights,
    from Linearized's jvp engine, which is differentiable in x (``run_with_cache``'s tangent
    view is no-grad and, for the MLP/CNN, the structured engine: equal up to rounding).
    """
    from ..linearized import linearize

    model = copy.deepcopy(model0).requires_grad_(False)
    lin = linearize(model) if view == "tangent" else None  # keeps θ0 = model0's weights
    load_params(model, params)
    if lin is not None:
        def tangent(x: torch.Tensor, hook: str) -> torch.Tensor:
            _, _, acts0, dacts = lin._jvp(x, [hook])
            return acts0[hook] + dacts[hook]
        return tangent
    modules = dict(model.named_modules())

    def network(x: torch.Tensor, hook: str) -> torch.Tensor:
        acts: dict[str, torch.Tensor] = {}
        handle = modules[hook].register_forward_hook(
            lambda _m, _i, out: acts.setdefault(hook, out))
        try:
            model(x)
        finally:
            handle.remove()
        return acts[hook]
    return network


def default_hook(run: Any) -> str:
    """The last ``*.hook_post`` of the run (last hidden layer / transformer MLP), else the
    hook before the last (a plain module's last hook is usually its output)."""
    posts = [h for h in run.hooks if h.endswith(".hook_post")]
    return posts[-1] if posts else run.hooks[max(len(run.hooks) - 2, 0)]


def final_step(run: Any) -> int:
    """The largest step cached for every regime."""
    return max(set.intersection(*(set(run.steps(r)) for r in run.regimes)))


def analyze_run(run: Any, out_dir: str | Path, *, hook: str | None = None,
                step: int | None = None, neurons: Sequence[int] | None = None,
                n_neurons: int = 2, n_pcs: int = 2, k: int = 9, split: str = "test",
                actmax: bool = True, umap: bool = False, actmax_steps: int = 200
                ) -> pd.DataFrame:
    """Top-k examples, activation maximization and embeddings of ``hook``; CSV + PNGs in out_dir.

    Figures have one row per panel: θ0 (step 0), then every regime that has ``step`` (default:
    the last step all regimes have), in its view. Tidy rows: ``topk_overlap_init/<unit>`` (share of
    the top-k examples also in θ0's top-k) and ``topk_mean/<unit>`` for every regime, step and
    view; ``pca_explained_variance_<i>``; ``actmax_objective/<unit>`` for the figure panels.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kind = run.config["model"]["kind"]
    hook = hook or default_hook(run)
    step = final_step(run) if step is None else step
    ref = next(r for r in run.regimes if 0 in run.steps(r))  # spawned regimes lack step 0
    if split not in ("train", "test", "all"):
        raise ValueError(f"split={split!r}; valid: train, test, all")
    sel = slice(None) if split == "all" else run.probe.split == ("train", "test").index(split)
    x, y = run.probe.x[sel], run.probe.y[sel]
    k = min(k, len(x))  # a small probe split has fewer than k examples

    def units_of(r: str, s: int, v: str) -> np.ndarray:
        return unit_matrix(run.activations(r, s, hook, v, split).numpy(), kind)

    panels = [("θ0 (step 0)", "init", ref, 0, "network")] + [
        (_label(r, view_of(run, r)), r, r, step, view_of(run, r))
        for r in run.regimes if step in run.steps(r) and r not in LIMIT_REGIMES]
    units = {p[2:]: units_of(*p[2:]) for p in panels}
    u0 = units[(ref, 0, "network")]
    names, w = _targets(u0, units[panels[1][2:]], neurons, n_neurons, n_pcs)
    top0 = [set(top_k(u0 @ wi, k)) for wi in w]
    rows = []
    finite = [r for r in run.regimes if r not in LIMIT_REGIMES]
    for key in [(r, s, v) for r in finite
                for s in run.steps(r) for v in run.views[r]]:
        u = units[key] if key in units else units_of(*key)
        for name, t0, sc in zip(names, top0, (u @ w.T).T):
            idx = top_k(sc, k)
            rows += [tidy_row(*key, hook, f"topk_overlap_init/{name}", len(t0 & set(idx)) / k),
                     tidy_row(*key, hook, f"topk_mean/{name}", sc[idx].mean())]
        for i, ratio in enumerate(pca_embedding(u)[1], 1):
            rows.append(tidy_row(*key, hook, f"pca_explained_variance_{i}", ratio))

    tag, vs = hook.replace(".", "-"), f"θ0 vs {' vs '.join(p[2] for p in panels[1:])}, step {step}"
    top = {(p[2:], j): top_k(units[p[2:]] @ wi, k) for p in panels for j, wi in enumerate(w)}
    for j, name in enumerate(names):
        grid = []
        for label, color, *key in panels:
            sc, idx = units[tuple(key)] @ w[j], top[(tuple(key), j)]
            grid.append((label, color, x[idx], [_caption(y[i], sc[i], kind) for i in idx]))
        plot_grid(grid, x.shape[1:], f"Top-{k} {split} examples for {hook} {_pretty(name)} — "
                  f"{vs}", out / f"{NAME}_topk_{tag}_{name}", tokens=kind == "transformer")

    embed = [(label, color, units[tuple(key)]) for label, color, *key in panels]
    for method, on in (("pca", True), ("umap", umap)):
        if on:
            coords = [(lab, c, pca_embedding(u)[0] if method == "pca" else umap_embedding(u))
                      for lab, c, u in embed]
            axes = ("PC 1", "PC 2") if method == "pca" else ("UMAP 1", "UMAP 2")
            plot_embeddings(coords, y, axes, f"{method.upper()} of {hook} ({split} probe), "
                            f"coloured by label — {vs}", out / f"{NAME}_{method}_{tag}")
    if actmax and kind != "transformer":
        starts = {p[2:]: x[[top[(p[2:], j)][0] for j in range(len(w))]] for p in panels}
        rows += _actmax(run, hook, panels, names, w, starts, kind, actmax_steps,
                        f"Activation maximization of {hook} units — {vs}",
                        out / f"{NAME}_actmax_{tag}")
    df = frame(NAME, run, rows)
    df.to_csv(out / f"{NAME}.csv", index=False)
    return df


def headline(df: pd.DataFrame) -> dict:
    """Mean over units of ``topk_overlap_init`` at each regime's last step, per regime/view."""
    sel = df[df["metric"].str.startswith("topk_overlap_init/")]
    last = sel[sel["step"] == sel.groupby(["run", "regime", "view"])["step"].transform("max")]
    means = last.groupby(["regime", "view"], sort=False)["value"].mean()
    return {"mean_topk_overlap_with_init": {
        r if v == "network" else f"{r}/{v}": float(m) for (r, v), m in means.items()}}


def _targets(u0: np.ndarray, u_final: np.ndarray, neurons: Sequence[int] | None, n_neurons: int,
             n_pcs: int) -> tuple[list[str], np.ndarray]:
    """Unit names and read-out vectors (n_units, units): neurons, then θ0 PCA directions.

    Default neurons: the live ones (non-constant at θ0 and at the end) whose activation
    pattern changed most, by 1 − correlation between their θ0 and final probe activations.
    """
    if neurons is None:
        a, b = u0 - u0.mean(0), u_final - u_final.mean(0)
        norms = np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0)
        live = norms > 1e-12
        corr = np.where(live, (a * b).sum(0) / np.where(live, norms, 1.0), np.inf)
        neurons = np.argsort(corr, kind="stable")[:n_neurons]
    eye = np.eye(u0.shape[1])
    w = [eye[int(j)] for j in neurons] + list(pca_directions(u0, n_pcs))
    names = [f"neuron{int(j)}" for j in neurons] + [f"pc{i}" for i in range(1, n_pcs + 1)]
    return names, np.array(w)


def _actmax(run: Any, hook: str, panels: list[tuple], names: list[str], w: np.ndarray,
            starts: dict[tuple, np.ndarray], kind: str, steps: int, title: str, path: Path
            ) -> list[dict]:
    """Maximize every unit in every panel's (regime, step, view), each from that panel's
    top-1 probe example for the unit (ReLU units start active) plus seeded noise."""
    model0 = model_at_init(run)
    dtype = next(model0.parameters()).dtype
    wt = torch.as_tensor(w, dtype=dtype)
    x_all = run.probe.x
    budget = float(np.linalg.norm(x_all.reshape(len(x_all), -1), axis=1).mean())
    noise = torch.randn((len(w), *x_all.shape[1:]), generator=torch.Generator().manual_seed(0),
                        dtype=dtype)
    noise *= 0.1 * budget / noise.flatten(1).norm(dim=1).view(-1, *[1] * (noise.ndim - 1))
    grid, rows = [], []
    for label, color, r, s, v in panels:
        f = hook_function(model0, run.params(r, s), v)
        x0 = torch.as_tensor(starts[(r, s, v)], dtype=dtype) + noise
        xs, vals = maximize_activation(lambda z: (unit_matrix(f(z, hook), kind) * wt).sum(1), x0,
                                       steps=steps, budget=budget)
        vals = vals.tolist()
        grid.append((label, color, xs.numpy(), [f"{_pretty(n)}: {a:.3g}"
                                                 for n, a in zip(names, vals)]))
        rows += [tidy_row(r, s, v, hook, f"actmax_objective/{n}", a) for n, a in zip(names, vals)]
    plot_grid(grid, x_all.shape[1:], f"{title} (L2 budget {budget:.3g} = mean probe-input norm, "
              "jitter ±1)", path)
    return rows


def tidy_row(regime: str, step: int, view: str, hook: str, metric: str, value: float) -> dict:
    """One row for ``tables.frame``."""
    return dict(regime=regime, step=step, hook=hook, view=view, metric=metric, value=float(value))


def _label(regime: str, view: str) -> str:
    return regime if view == "network" else f"{regime}\n({view})"


def _pretty(name: str) -> str:
    return name.replace("neuron", "neuron ").replace("pc", "θ0 PC ")


def _caption(y: np.ndarray, value: float, kind: str) -> str:
    if kind == "transformer":
        return f"a+b≡{int(y)}: {value:.3g}"
    if np.ndim(y) != 0:
        return f"{value:.3g}"
    label = f"{y}" if np.issubdtype(y.dtype, np.integer) else f"{y:.2g}"
    return f"y={label}: {value:.3g}"


# activation maximization needs θ snapshots and the model
ANALYSIS = self_plotting(NAME, lambda run, d: analyze_run(
    run, d, actmax=has_params(run) and rebuild_error(run) is None), headline)
