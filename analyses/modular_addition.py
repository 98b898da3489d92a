"""Modular addition: a 1-layer transformer trained as ``sgd`` and as ``linearized``.

The model and recipe are Nanda et al. 2023's (``analyses/configs/modular_addition.yaml``):
(a + b) mod p from tokens [a, b, =], d_model 128, 4 heads, d_mlp 512, ReLU, no LayerNorm,
AdamW (lr 1e-3, weight decay 1.0, betas (0.9, 0.98)), cross-entropy, full batch. ``sgd`` is
ordinary training with this optimizer; ``linearized`` trains the first-order Taylor model
around the same θ0 with the same optimizer (weight decay acts on θ). Checkpoints are
log-spaced. Per regime: train/test accuracy over steps, Fourier spectrum of W_E and its
top-5 share over steps, 2-D Fourier power of the MLP neurons at "=", attention patterns
(``tangentlens.lenses.fourier.analyze_run``; linearized in its tangent view).

Scales (the model and optimizer are the same at every scale):
- ``full``: the paper's setting, p = 113, 30% of the pairs for training, 40,000 steps, cuda;
- ``default`` (≤ 10 CPU minutes): p = 31, 60% of the pairs for training (at 30% a p = 31
  model does not generalize within the budget), 2,500 steps, cpu;
- ``tiny`` (tests): p = 11, 60% of the pairs, 6 steps.

    python analyses/modular_addition.py [--scale tiny|default|full] [--out DIR] [--threads N]

Writes OUT/accuracy.csv, OUT/fourier.csv (``analyze_run``'s tidy rows), OUT/summary.csv,
OUT/accuracy.png, OUT/fourier_*.png, OUT/report.html and the run OUT/run/run.h5.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

from tangentlens import plots
from tangentlens.experiments.cli import parse, parser, write_section
from tangentlens.lenses.fourier import analyze_run
from tangentlens.config import load_config
from tangentlens.store import open_run
from tangentlens.train import run

CONFIG = Path(__file__).parent / "configs" / "modular_addition.yaml"
SCALES = {
    "tiny": dict(p=11, train_frac=0.6, steps=6, checkpoints=3, device="cpu"),
    "default": dict(p=31, train_frac=0.6, steps=2500, checkpoints=16, device="cpu"),
    "full": dict(p=113, train_frac=0.3, steps=40000, checkpoints=24, device="cuda"),
}
K = 5  # top-k Fourier frequencies


def plot_accuracy(acc: pd.DataFrame, p: int, path: Path) -> Path:
    fig, axes = plots.figure(1, 1, figsize=(5.6, 3.9))
    ax = axes[0, 0]
    for regime, g in acc.groupby("regime", sort=False):
        ax.plot(g.step, g.train_acc, ":", marker=".", color=plots.color(regime),
                label=f"{regime} train")
        ax.plot(g.step, g.test_acc, "-", marker="o", ms=3, color=plots.color(regime),
                label=f"{regime} test")
    ax.axhline(1 / p, color=plots.color("init"), lw=0.8, label="chance (1/p)")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=0)
    ax.set(xlabel="training step (symlog)", ylabel="accuracy", ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.suptitle(f"(a + b) mod {p}: train/test accuracy vs step per regime", fontsize=10)
    return plots.save(fig, path)


def summary(acc: pd.DataFrame, fourier: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per regime: final train/test accuracy, top-k share of W_E (θ0 and final) and of the
    MLP power at '=', and the MLP power share on the diagonal k_a = k_b > 0."""
    rows = []
    for regime, g in acc.groupby("regime", sort=False):
        last = g.iloc[-1]
        f = fourier[fourier.regime == regime]
        emb = f[f.metric == f"embed_top{k}_fraction"].sort_values("step")
        val = lambda m: float(f[f.metric == m].value.iloc[-1])  # noqa: E731
        rows.append(dict(regime=regime, step=int(last.step), train_acc=last.train_acc,
                         test_acc=last.test_acc, **{
                             f"W_E_top{k}_share_init": float(emb.value.iloc[0]),
                             f"W_E_top{k}_share": float(emb.value.iloc[-1]),
                             f"mlp_top{k}_share": val(f"mlp_top{k}_fraction"),
                             "mlp_diagonal_share": val("mlp_power_fraction/diagonal")}))
    return pd.DataFrame(rows)


def caption(s: pd.DataFrame, k: int, uniform: float) -> str:
    acc = "; ".join(f"{r.regime} {r.train_acc:.3g} / {r.test_acc:.3g}" for r in s.itertuples())
    top = "; ".join(f"{r.regime} {getattr(r, f'W_E_top{k}_share'):.3g} (θ0 "
                    f"{getattr(r, f'W_E_top{k}_share_init'):.3g})" for r in s.itertuples())
    return (f"Final train / test accuracy: {acc}. Share of W_E's Fourier power in its top-{k} "
            f"frequencies (uniform spectrum: {uniform:.3g}): {top}.")


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__, "modular_addition", tuple(SCALES))
    args = parse(p, argv)
    sc, out, t0 = SCALES[args.scale], args.out, time.time()
    cfg = load_config(CONFIG, [f"data.options.p={sc['p']}",
                               f"data.options.train_frac={sc['train_frac']}",
                               f"train.steps={sc['steps']}",
                               f"train.checkpoints={sc['checkpoints']}",
                               f"train.device={sc['device']}"])
    res = run(cfg, out / "run", overwrite=True)
    acc = pd.concat([pd.DataFrame(m).assign(regime=r) for r, m in res.metrics.items()])
    acc.to_csv(out / "accuracy.csv", index=False)
    with open_run(res.path) as r:
        fourier = analyze_run(r, out, k=K)
    k = min(K, (sc["p"] - 1) // 2)
    s = summary(acc, fourier, k)
    s.to_csv(out / "summary.csv", index=False)
    figs = [plot_accuracy(acc, sc["p"], out / "accuracy").name,
            *sorted(f.name for f in out.glob("fourier_*.png"))]
    n_train = round(sc["train_frac"] * sc["p"] ** 2)
    notes = [f"Scale {args.scale}: p = {sc['p']}, {n_train} of {sc['p'] ** 2} pairs for training "
             f"({sc['train_frac']:.0%}), {sc['steps']} full-batch AdamW steps, checkpoints "
             f"{cfg.checkpoint_steps()}; wall time {time.time() - t0:.0f} s. The model and "
             "optimizer are the paper's at every scale; its data setting is p = 113, 30% of the "
             "pairs, 40,000 steps (--scale full)."]
    notes += [f"regime {g} diverged at step {t}." for g, t in res.diverged.items()]
    write_section(out / "report.html", f"Modular addition (p = {sc['p']}): sgd vs linearized",
                  s.to_dict("records"), figs, caption(s, k, k / ((sc["p"] - 1) // 2)), notes)
    print(f"wrote {out / 'report.html'} ({time.time() - t0:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
