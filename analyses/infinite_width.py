"""Finite widths converge to their infinite-width limits: sgd-μP → mup_limit, linearized →
ntk_limit; and the feature-learning strength γ moves the hidden kernel in both.

Config ``analyses/configs/infinite_width.yaml`` (1-hidden-layer relu μP MLP, teacher task,
full-batch GD). Two sweeps, seeds as repeated points (mean and 95% t-interval):

1. width: sgd and linearized at every width; ``ntk_limit`` and ``mup_limit`` (width-free)
   in the run of the middle width, beside its finite regimes. Measured at the final step:
   relative change of the hidden Gram Φ = HHᵀ/N of ``layers.0.hook_post`` on the probe set,
   ‖Φ_T − Φ_0‖_F/‖Φ_0‖_F (limits: their exact / particle Φ), and the test loss.
   Linearized: its ``tangent`` view (first-order features; its NTK, hence its learning, is
   frozen).
2. γ at the fixed width of the config: sgd-μP and ``mup_limit`` over ``model.gamma``
   (``ntk_limit``: 0 at every γ).

    python analyses/infinite_width.py [--scale tiny|quick|default|full] [--out DIR] [--threads N]

Writes OUT/width.csv, OUT/gamma.csv, OUT/summary.json, OUT/infinite_width.png (vs width),
OUT/gamma_strength.png (vs γ); runs in OUT/runs/{width,gamma}/.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from tangentlens.config import load_config
from tangentlens.experiments import cli as experiment
from tangentlens.plots.style import color, figure, save
from tangentlens.store import open_run
from tangentlens.train import run

CONFIG = Path(__file__).parent / "configs" / "infinite_width.yaml"
HOOK = "layers.0.hook_post"
LIMITS = ("ntk_limit", "mup_limit")
SCALES = {
    "tiny": dict(widths=[32, 64], seeds=[0, 1], gammas=[1.0, 16.0], steps=10, particles=256,
                 n_train=32, n_test=32, n_probe=16),
    "quick": dict(widths=[128, 512, 2048], seeds=[0, 1, 2], gammas=[2.0, 16.0], steps=100,
                  particles=2048, n_train=256, n_test=256, n_probe=64),
    "default": dict(widths=[128, 256, 512, 1024, 2048, 4096], seeds=[0, 1, 2],
                    gammas=[0.5, 2.0, 8.0, 16.0, 32.0], steps=200, particles=2048,
                    n_train=256, n_test=512, n_probe=128),
    "full": dict(widths=[128, 256, 512, 1024, 2048, 4096, 8192, 16384], seeds=[0, 1, 2, 3, 4],
                 gammas=[0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0], steps=1000,
                 particles=16384, n_train=512, n_test=1024, n_probe=256),
}


def gram_change(h: np.ndarray, h0: np.ndarray) -> float:
    g, g0 = h @ h.T / h.shape[1], h0 @ h0.T / h0.shape[1]
    return float(np.linalg.norm(g - g0) / np.linalg.norm(g0))


def train_one(out: Path, sweep: str, scale: dict, seed: int, width: int, gamma: float,
              regimes: list[str]) -> list[dict]:
    """One run; rows (regime, hidden_gram_change, test_loss, train_loss) at the final step."""
    cfg = load_config(CONFIG, [
        f"seed={seed}", f"model.width={width}", f"model.gamma={gamma}",
        f"train.regimes=[{','.join(regimes)}]", f"train.steps={scale['steps']}",
        f"train.limit_particles={scale['particles']}", f"data.n_train={scale['n_train']}",
        f"train.batch_size={scale['n_train']}", f"data.n_test={scale['n_test']}",
        f"probe.n_train={scale['n_probe']}", f"probe.n_test={scale['n_probe']}"])
    result = run(cfg, out / "runs" / sweep / f"width={width}__gamma={gamma:g}__seed={seed}",
                 overwrite=True)
    rows = []
    with open_run(result.path) as r:
        for regime in r.regimes:
            last = r.metrics(regime).iloc[-1]
            step = int(last["step"])
            if regime in LIMITS:
                change = float(last["hidden_gram_change"])
            else:
                view = "tangent" if regime == "linearized" else "network"
                h0 = r.activations(regime, 0, HOOK, "network", "all").numpy()
                change = gram_change(r.activations(regime, step, HOOK, view, "all").numpy(), h0)
            diverged = step != scale["steps"]
            rows.append({"seed": seed, "width": width, "gamma": gamma, "regime": regime,
                         "hidden_gram_change": math.nan if diverged else change,
                         "test_loss": math.nan if diverged else float(last["test_loss"]),
                         "train_loss": math.nan if diverged else float(last["train_loss"]),
                         "test_output_mc_err": float(last.get("test_output_mc_err", math.nan))})
    return rows


def ci(df: pd.DataFrame, by: list[str], col: str) -> pd.DataFrame:
    """Mean and 95% t-interval half-width over seeds."""
    def agg(s: pd.Series) -> pd.Series:
        s = s.dropna()
        half = stats.t.ppf(0.975, len(s) - 1) * s.std(ddof=1) / math.sqrt(len(s)) if len(s) > 1 else math.nan
        return pd.Series({"mean": s.mean(), "ci95": half, "n": len(s)})
    return df.groupby(by)[col].apply(agg).unstack().reset_index()


def plot(df: pd.DataFrame, x: str, cols: list[tuple[str, str]], path: Path, title: str) -> None:
    fig, axes = figure(1, len(cols), figsize=(5.2 * len(cols), 4))
    for ax, (col, label) in zip(axes.ravel(), cols):
        for regime, g in ci(df, ["regime", x], col).groupby("regime", sort=False):
            name = "linearized (tangent view)" if regime == "linearized" and col.startswith("hidden") else regime
            kw = dict(color=color(regime), label=name, capsize=3, marker="o", ms=4)
            if regime in LIMITS and x == "width":  # width-free: a band across the axis
                m, h = float(g["mean"].iloc[0]), float(g["ci95"].fillna(0).iloc[0])
                ax.axhline(m, color=color(regime), ls="--", label=f"{regime} (width ∞)")
                ax.axhspan(m - h, m + h, color=color(regime), alpha=0.15)
                continue
            ax.errorbar(g[x], g["mean"], yerr=g["ci95"].fillna(0), **kw)
        ax.set_xscale("log", base=2)
        ax.set_xlabel({"width": "width N", "gamma": "model.gamma γ (γ0 = γ/√base_width)"}[x])
        ax.set_ylabel(label)
        if col == "test_loss":
            ax.set_yscale("log")
        elif x == "gamma":
            ax.set_yscale("symlog", linthresh=1e-3)
            ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    save(fig, path)


def main(argv: list[str] | None = None) -> dict:
    ap = experiment.parser(__doc__, "infinite_width", list(SCALES))
    args = experiment.parse(ap, argv)
    out, scale, t0 = Path(args.out), SCALES[args.scale], time.time()
    base = load_config(CONFIG)
    mid = scale["widths"][len(scale["widths"]) // 2]
    rows = []
    for seed in scale["seeds"]:
        for width in scale["widths"]:
            regimes = ["sgd", "linearized"] + (list(LIMITS) if width == mid else [])
            rows += train_one(out, "width", scale, seed, width, base.model.gamma, regimes)
    by_width = pd.DataFrame(rows)
    rows = []
    for seed in scale["seeds"]:
        for gamma in scale["gammas"]:
            regimes = ["sgd", *LIMITS]
            rows += train_one(out, "gamma", scale, seed, base.model.width, gamma, regimes)
    by_gamma = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    by_width.to_csv(out / "width.csv", index=False)
    by_gamma.to_csv(out / "gamma.csv", index=False)
    task = f"teacher d=16, n={scale['n_train']}, relu, μP base {base.model.base_width}"
    plot(by_width, "width", [("hidden_gram_change", "‖Φ_T − Φ_0‖_F / ‖Φ_0‖_F (hidden Gram)"),
                             ("test_loss", "test loss")], out / "infinite_width",
         f"Finite widths vs their limits (γ = {base.model.gamma:g}; {task})")
    plot(by_gamma, "gamma", [("hidden_gram_change", "‖Φ_T − Φ_0‖_F / ‖Φ_0‖_F (hidden Gram)"),
                             ("test_loss", "test loss")], out / "gamma_strength",
         f"Feature-learning strength at width {base.model.width} ({task})")
    at = by_gamma[(by_gamma.regime == "sgd") & (by_gamma.gamma == base.model.gamma)]
    summary = {"scale": args.scale, "seconds": round(time.time() - t0, 1),
               "config_gamma": base.model.gamma, "config_width": base.model.width,
               "sgd_hidden_gram_change_at_config": float(at["hidden_gram_change"].mean()),
               "width": ci(by_width, ["regime", "width"], "hidden_gram_change").to_dict("records"),
               "width_test_loss": ci(by_width, ["regime", "width"], "test_loss").to_dict("records"),
               "gamma": ci(by_gamma, ["regime", "gamma"], "hidden_gram_change").to_dict("records")}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    print(f"wrote {out} in {summary['seconds']} s; sgd hidden Gram change at width "
          f"{base.model.width}, γ={base.model.gamma:g}: {summary['sgd_hidden_gram_change_at_config']:.3f}")
    return summary


if __name__ == "__main__":
    main()
