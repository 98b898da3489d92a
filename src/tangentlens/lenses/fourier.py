"""Fourier analysis of a modular-addition transformer run, per regime (Nanda et al. 2023).

- W_E (``embed.W_E`` of every θ snapshot): power per Fourier frequency of Z_p and the share
  of the top-k frequencies, per regime and step (``view`` is ``network``: θ itself);
- MLP neurons (``blocks.0.mlp.hook_post`` at the "=" position) at the final step: 2-D Fourier
  power over all p² inputs (a, b), summed over neurons, grouped by frequency pair (k_a, k_b);
- attention: mean pattern per head at the final step.
Regimes with a ``tangent`` view (linearized, kernel) are analysed in it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import plots
from ..metrics.fourier import fourier_basis, frequency_power, top_k_fraction
from ..plots.grids import suptitle
from ..rebuild import model_at_init
from .featviz import final_step, hook_function, tidy_row, view_of
from .spec import needs_model_params, self_plotting
from .tables import empty, final_values, frame

NAME = "fourier"
EMBED, MLP_HOOK, ATTN_HOOK = "embed.W_E", "blocks.0.mlp.hook_post", "blocks.0.attn.hook_pattern"


def embed_spectrum(w_e: Any, p: int, k: int = 5) -> dict[str, float]:
    """``embed_power_fraction/k<f>`` (share of the non-constant power at frequency f) for
    f = 1..(p−1)/2, and ``embed_top<k>_fraction``, for a token embedding (d_vocab ≥ p, d)."""
    power = frequency_power(w_e, p)["power"]
    out = {f"embed_power_fraction/k{f}": v for f, v in enumerate(power / power.sum(), 1)}
    return {**out, f"embed_top{k}_fraction": top_k_fraction(power, k)}


def mlp_spectrum(acts: Any, p: int) -> np.ndarray:
    """Fourier power of activations (p, p, n) over inputs (a, b), summed over the n units,
    grouped by frequency pair: (K+1, K+1) with K = (p−1)/2 and index 0 the constant."""
    basis = fourier_basis(p)
    a = np.asarray(acts, dtype=np.float64).reshape(p, p, -1)
    power = (np.einsum("ia,jb,abn->ijn", basis, basis, a, optimize=True) ** 2).sum(-1)
    freq = np.r_[0, np.repeat(np.arange(1, (p + 1) // 2), 2)]
    out = np.zeros(((p + 1) // 2,) * 2)
    np.add.at(out, (freq[:, None], freq[None, :]), power)
    return out


def mlp_metrics(spectrum: np.ndarray, k: int = 5) -> dict[str, float]:
    """Shares of the total 2-D power: constant, a only (k_b = 0), b only, diagonal k_a = k_b > 0
    (where cos(ω(a+b)) lives), the rest; and the top-k share of the non-constant cells."""
    s = spectrum / spectrum.sum()
    ka, kb = np.indices(s.shape)
    parts = {"constant": (ka == 0) & (kb == 0), "a_only": (ka > 0) & (kb == 0),
             "b_only": (ka == 0) & (kb > 0), "diagonal": (ka == kb) & (ka > 0),
             "interaction_other": (ka != kb) & (ka > 0) & (kb > 0)}
    out = {f"mlp_power_fraction/{name}": float(s[m].sum()) for name, m in parts.items()}
    return {**out, f"mlp_top{k}_fraction": top_k_fraction(s.ravel()[1:], k)}


def grid_activations(run: Any, regime: str, step: int, view: str, hook: str, p: int,
                     model0: torch.nn.Module) -> np.ndarray:
    """``hook`` on every input [a, b, =], shape (p, p, ...): from the cache when the probe set
    holds all p² pairs (and the hook is cached), else recomputed from the θ snapshot."""
    x = run.probe.x
    uniq, first = np.unique(x[:, 0] * p + x[:, 1], return_index=True)
    if len(uniq) == p * p and hook in run.hooks:
        acts = run.activations(regime, step, hook, view, "all")[first]
    else:
        a, b = np.divmod(np.arange(p * p), p)
        tokens = torch.as_tensor(np.stack([a, b, np.full(p * p, x[0, -1])], 1))
        f = hook_function(model0, run.params(regime, step), view)
        with torch.no_grad():
            acts = torch.cat([f(tokens[i:i + 1024], hook) for i in range(0, p * p, 1024)]).numpy()
    return acts.reshape(p, p, *acts.shape[1:])


def analyze_run(run: Any, out_dir: str | Path, k: int = 5) -> pd.DataFrame:
    """Tidy rows (see module docstring) + CSV and PNGs in ``out_dir``; no rows for runs that
    are not modular-addition transformers. ``k`` (top-k share) is capped at (p − 1)/2."""
    cfg = run.config
    if cfg["data"]["name"] != "modular_addition" or cfg["model"]["kind"] != "transformer":
        return empty(NAME)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model0 = model_at_init(run)
    p, step = model0.cfg.d_vocab_out, final_step(run)  # classes = residues mod p
    k = min(k, (p - 1) // 2)
    rows, spectra, patterns = [], {}, {}
    for r in run.regimes:
        for s in run.steps(r):
            m = embed_spectrum(run.params(r, s)[EMBED].numpy(), p, k)
            rows += [tidy_row(r, s, "network", EMBED, name, v) for name, v in m.items()]
        v = view_of(run, r)
        grid = grid_activations(run, r, step, v, MLP_HOOK, p, model0)[:, :, -1]  # at "="
        spectra[r] = mlp_spectrum(grid, p)
        rows += [tidy_row(r, step, v, MLP_HOOK, n, x)
                 for n, x in mlp_metrics(spectra[r], k).items()]
        if ATTN_HOOK in run.hooks:
            pat = patterns[r] = run.activations(r, step, ATTN_HOOK, v, "all").numpy().mean(0)
            rows += [tidy_row(r, step, v, ATTN_HOOK, f"attention_from_eq/head{h}/to_{tok}", a)
                     for h in range(pat.shape[0]) for tok, a in zip("ab=", pat[h, -1])]
    df = frame(NAME, run, rows)
    df.to_csv(out / f"{NAME}.csv", index=False)
    vs = " vs ".join(run.regimes)
    _plot_embed_spectrum(df, p, step, f"Fourier power of W_E per frequency of Z_{p} — {vs}, step "
                         f"{step} (grey outline: θ0)", out / f"{NAME}_embed_spectrum")
    _plot_top_fraction(df, f"embed_top{k}_fraction", k / ((p - 1) // 2),
                       f"Share of W_E power in its top-{k} Fourier frequencies vs step "
                       f"(p={p}) — {vs}", out / f"{NAME}_embed_top{k}_fraction")
    _plot_heatmaps(spectra, f"2-D Fourier power of {MLP_HOOK} at '=' over all {p}² inputs (a, b), "
                   f"summed over neurons — {vs}, step {step}", out / f"{NAME}_mlp_spectrum")
    if patterns:
        _plot_patterns(patterns, {r: view_of(run, r) for r in run.regimes},
                       f"Mean attention pattern per head ({ATTN_HOOK}, probe set) — {vs}, "
                       f"step {step}", out / f"{NAME}_attention")
    return df


def headline(df: pd.DataFrame) -> dict:
    """Last-step top-k W_E frequency share and diagonal MLP power share, per regime."""
    top = next((m for m in df["metric"].unique() if m.startswith("embed_top")), None)
    out = {"mlp_diagonal_power_fraction": final_values(df, "mlp_power_fraction/diagonal")}
    return {**out, top: final_values(df, top)} if top else out


def _plot_embed_spectrum(df: pd.DataFrame, p: int, step: int, title: str, path: Path) -> Path:
    regimes = list(dict.fromkeys(df["regime"]))
    fig, axes = plots.figure(1, len(regimes), sharey=True)
    for ax, r in zip(axes[0], regimes):
        for s, style in ((step, dict(color=plots.color(r))),
                         (0, dict(fill=False, edgecolor=plots.color("init"), lw=0.8))):
            sel = df[(df.regime == r) & (df.step == s)
                     & df.metric.str.startswith("embed_power_fraction/")]
            freqs = sel.metric.str.split("/k").str[1].astype(int)
            ax.bar(freqs, sel.value, width=0.85, **style)
        ax.set_title(r, color=plots.color(r))
        ax.set_xlabel(f"frequency k (of Z_{p})")
    axes[0, 0].set_ylabel("share of W_E power (constant excluded)")
    suptitle(fig, title)
    return plots.save(fig, path)


def _plot_top_fraction(df: pd.DataFrame, metric: str, uniform: float, title: str,
                       path: Path) -> Path:
    fig, axes = plots.figure(1, 1, figsize=(5.2, 3.8))
    ax = axes[0, 0]
    for r, g in df[df.metric == metric].groupby("regime", sort=False):
        ax.plot(g.step, g.value, marker="o", ms=3, color=plots.color(r), label=r)
    ax.axhline(uniform, ls=":", color=plots.color("init"), label="uniform spectrum")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=0)
    ax.set(xlabel="training step (symlog scale)", ylabel="top-k share of W_E power")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    suptitle(fig, title)
    return plots.save(fig, path)


def _plot_heatmaps(spectra: dict[str, np.ndarray], title: str, path: Path) -> Path:
    from matplotlib.ticker import MaxNLocator

    fig, axes = plots.figure(1, len(spectra), figsize=(3.6 * len(spectra) + 1, 3.6))
    logs = {r: np.log10(s / s.sum() + 1e-12) for r, s in spectra.items()}
    lo = max(min(v.min() for v in logs.values()), -8)
    for ax, (r, v) in zip(axes[0], logs.items()):
        im = ax.imshow(v, origin="lower", cmap="magma", vmin=lo, vmax=0)
        ax.set_title(r, color=plots.color(r))
        ax.set_xlabel("frequency of b (k_b)")
        ax.set_ylabel("frequency of a (k_a)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.colorbar(im, ax=axes[0].tolist(), label="log10 share of total power", shrink=0.85)
    suptitle(fig, title)
    return plots.save(fig, path)


def _plot_patterns(patterns: dict[str, np.ndarray], views: dict[str, str], title: str,
                   path: Path) -> Path:
    n_heads = next(iter(patterns.values())).shape[0]
    fig, axes = plots.figure(len(patterns), n_heads,
                             figsize=(2.6 * n_heads + 1, 2.5 * len(patterns)))
    for row, (r, pat) in zip(axes, patterns.items()):
        for h, ax in enumerate(row):
            im = ax.imshow(pat[h], cmap="Blues", vmin=0, vmax=1)
            for (q, key), val in np.ndenumerate(pat[h]):
                ax.text(key, q, f"{val:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if val > 0.6 else "black")
            ticks = range(pat.shape[-1])
            ax.set(xticks=ticks, yticks=ticks, xticklabels=list("ab="), yticklabels=list("ab="),
                   xlabel="key position", ylabel="query position")
            ax.set_title(f"{r} ({views[r]}) head {h}", color=plots.color(r), fontsize=9)
    fig.colorbar(im, ax=axes.ravel().tolist(), label="mean attention weight", shrink=0.8)
    suptitle(fig, title)
    return plots.save(fig, path)




def skip_reason(run: Any) -> str | None:
    """Applies to transformers trained on modular_addition, with θ snapshots."""
    cfg = run.config
    if cfg["data"]["name"] != "modular_addition" or cfg["model"]["kind"] != "transformer":
        return (f"applies to modular-addition transformers only (this run: model.kind="
                f"{cfg['model']['kind']}, data.name={cfg['data']['name']})")
    return needs_model_params(run)


ANALYSIS = self_plotting(NAME, analyze_run, headline, skip_reason)
