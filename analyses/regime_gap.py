"""Regime gap: test performance of sgd, linearized, kernel and the infinite-width NTK.

For each task (teacher regression, digits, mnist1d, mnist) and width, one run trains a
depth-2 ReLU MLP (NTK parametrization, no biases) in the ``sgd``, ``linearized`` and
``kernel`` regimes from the same θ0 on the same ``n_train`` points
(``analyses/configs/regime_gap.yaml``); ``kernel_infinite`` is the analytic infinite-width
NTK regression (``ntk.infinite_width_predict``) on the same points: the mean over random
θ0, without the random initial function f(x; θ0) that ``kernel`` keeps. The metric is test
accuracy for classification and test loss (½ squared error) for regression; the gap is
sgd − linearized in that metric. mnist is skipped, with a note, without a data directory
(``--data-dir`` or $TANGENTLENS_DATA).

    python analyses/regime_gap.py [--scale tiny|quick|default|full] [--out DIR] [--data-dir DIR]
                                  [--threads N]

Writes OUT/regime_gap.csv (one row per task × width × seed × regime), OUT/gaps.csv,
OUT/regime_gap_metric.png, OUT/regime_gap_gap.png, OUT/report.html and the runs in
OUT/runs/<task>/width=<w>__seed=<s>/run.h5.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from tangentlens import plots
from tangentlens.experiments.cli import parse, parser, write_section
from tangentlens.config import RunConfig, apply_overrides
from tangentlens.ntk import infinite_width_predict
from tangentlens.regimes import accuracy, loss_fn, targets
from tangentlens.train import prepare, run

CONFIG = Path(__file__).parent / "configs" / "regime_gap.yaml"
REGIMES = ("sgd", "linearized", "kernel", "kernel_infinite")


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def run_config(spec: dict, task: str, width: int, seed: int, scale: dict,
               data_dir: str | None) -> RunConfig:
    d = _merge(spec["base"], spec["tasks"][task])
    d = apply_overrides(d, [f"model.width={width}", f"seed={seed}", f"name=regime_gap_{task}",
                            f"data.n_train={scale['n_train']}", f"train.steps={scale['steps']}",
                            f"train.kernel_max_train={scale['n_train']}",
                            f"train.device={scale['device']}",
                            # at most every point per step (what a larger batch meant before)
                            f"train.batch_size={min(d['train']['batch_size'], scale['n_train'])}"])
    if task == "mnist":
        d["data"]["data_dir"] = data_dir
    return RunConfig.from_dict(d)


def infinite_width(cfg: RunConfig) -> tuple[dict, str]:
    """Test metrics of the analytic infinite-width NTK regression on the run's train set, and
    the task kind (classification or regression)."""
    ds, model = prepare(cfg)
    m, gain = cfg.model, model.config_summary()["gain"]
    y = targets(ds.y_train, ds.n_outputs, torch.float64)
    # build_model's empirical NTK is ntk_kernel(sigma_w=gain) / gain², so the ridge scales by gain²
    out = infinite_width_predict(ds.x_train, y, ds.x_test, depth=m.depth, activation=m.activation,
                                 sigma_w=gain, ridge=cfg.train.ridge * gain**2)
    yt = ds.y_test if ds.task == "classification" else ds.y_test.double()
    return ({"test_loss": float(loss_fn("mse", out, yt)), "test_acc": accuracy(out, yt),
             "train_loss": math.nan}, ds.task)


def measure_task(spec: dict, task: str, scale: dict, out: Path, data_dir: str | None) -> list:
    """One row per width × seed × regime of one task."""
    rows = []
    for seed in scale["seeds"]:
        cfg0 = run_config(spec, task, scale["widths"][0], seed, scale, data_dir)
        inf, kind = infinite_width(cfg0)
        metric = "test_acc" if kind == "classification" else "test_loss"
        for width in scale["widths"]:
            cfg = run_config(spec, task, width, seed, scale, data_dir)
            run_dir = out / "runs" / task / f"width={width}__seed={seed}"
            res = run(cfg, run_dir, overwrite=True)
            shutil.rmtree(run_dir / "state")  # resume states of a finished run: not needed
            finals = {**{r: res.final(r) for r in res.metrics}, "kernel_infinite": inf}
            rows += [dict(task=task, kind=kind, width=width, seed=seed, regime=regime,
                          metric=metric, value=f[metric], train_loss=f["train_loss"],
                          test_loss=f["test_loss"], test_acc=f["test_acc"],
                          diverged=regime in res.diverged) for regime, f in finals.items()]
    return rows


def measure(spec: dict, scale: dict, out: Path, data_dir: str | None) -> tuple[pd.DataFrame, list]:
    rows, notes = [], []
    for task in scale["tasks"]:
        if task == "mnist" and not data_dir:
            notes.append("mnist skipped: no data directory (pass --data-dir or set "
                         "TANGENTLENS_DATA to the folder with the MNIST .gz files).")
            continue
        try:
            rows += measure_task(spec, task, scale, out, data_dir)
        except FileNotFoundError as e:
            notes.append(f"{task} skipped: {str(e).splitlines()[0]}")
    return pd.DataFrame(rows), notes


def gaps(df: pd.DataFrame) -> pd.DataFrame:
    """sgd − linearized per task × width × seed (in the task's metric)."""
    wide = df.pivot_table(index=["task", "metric", "width", "seed"], columns="regime",
                          values="value").reset_index()
    wide["gap"] = wide["sgd"] - wide["linearized"]
    wide["task"] = pd.Categorical(wide["task"], list(dict.fromkeys(df.task)))
    return wide.sort_values(["task", "width", "seed"])[["task", "metric", "width", "seed",
                                                         *REGIMES, "gap"]]


def _label(metric: str) -> str:
    return "test accuracy" if metric == "test_acc" else "test loss (½ squared error)"


def plot_metric(df: pd.DataFrame, path: Path) -> Path:
    tasks = list(dict.fromkeys(df.task))
    fig, axes = plots.figure(1, len(tasks))
    for ax, task in zip(axes[0], tasks):
        g = df[df.task == task].groupby(["regime", "width"], sort=False)["value"].mean()
        for regime in REGIMES:
            s = g[regime]
            style = dict(ls=":") if regime == "kernel_infinite" else dict(marker="o")
            ax.plot(s.index, s.values, color=plots.color(regime), label=regime, **style)
        ax.set_xscale("log", base=2)
        ax.set(title=task, xlabel="width (hidden units per layer)",
               ylabel=_label(df[df.task == task].metric.iloc[0]))
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize="small")
    fig.suptitle("Test performance vs width per regime and task (depth-2 ReLU MLP, NTK "
                 "parametrization, same θ0 and train points)", fontsize=10)
    return plots.save(fig, path)


def plot_gap(gap: pd.DataFrame, path: Path) -> Path:
    tasks = list(dict.fromkeys(gap.task))
    fig, axes = plots.figure(1, len(tasks))
    for ax, task in zip(axes[0], tasks):
        g = gap[gap.task == task]
        ax.plot(g.width, g.gap, "o", color="k", alpha=0.3)
        m = g.groupby("width")["gap"].mean()
        ax.plot(m.index, m.values, "o-", color="k")
        ax.axhline(0, color=plots.color("init"), lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set(title=task, xlabel="width (hidden units per layer)",
               ylabel=f"sgd − linearized {_label(g.metric.iloc[0])}")
        ax.grid(alpha=0.3)
    fig.suptitle("Gap sgd − linearized vs width per task (accuracy gap > 0 or loss gap < 0: "
                 "sgd better; faint points: seeds)", fontsize=10)
    return plots.save(fig, path)


def caption(gap: pd.DataFrame) -> str:
    mean = gap.groupby(["task", "metric", "width"])["gap"].mean().reset_index()
    lo, hi = mean.width.min(), mean.width.max()
    parts = []
    for (task, metric), g in mean.groupby(["task", "metric"], sort=False):
        a, b = g[g.width == lo].gap.iloc[0], g[g.width == hi].gap.iloc[0]
        parts.append(f"{task} {a:+.3g} → {b:+.3g}")
    kinds = " and ".join(sorted({_label(m) for m in mean.metric}))
    biggest = mean[mean.width == hi].assign(a=lambda d: d.gap.abs()).sort_values("a").iloc[-1]
    return (f"The sgd − linearized gap ({kinds}) from width {lo} to width {hi}: "
            f"{'; '.join(parts)}. At width {hi} the largest |gap| is on {biggest.task} "
            f"({biggest.gap:+.3g}).")


def main(argv: list[str] | None = None) -> None:
    spec = yaml.safe_load(CONFIG.read_text())
    p = parser(__doc__, "regime_gap", tuple(spec["scales"]))
    p.add_argument("--data-dir", default=os.environ.get("TANGENTLENS_DATA"),
                   help="folder with the MNIST .gz files (default: $TANGENTLENS_DATA)")
    args = parse(p, argv)
    scale = spec["scales"][args.scale]
    t0 = time.time()
    df, notes = measure(spec, scale, args.out, args.data_dir)
    df.to_csv(args.out / "regime_gap.csv", index=False)
    gap = gaps(df)
    gap.to_csv(args.out / "gaps.csv", index=False)
    figs = [plot_metric(df, args.out / "regime_gap_metric"),
            plot_gap(gap, args.out / "regime_gap_gap")]
    table = (gap.groupby(["task", "metric", "width"])[[*REGIMES, "gap"]].mean().reset_index()
             .to_dict("records"))
    notes.append("kernel_infinite is the analytic infinite-width NTK regression: the mean "
                 "predictor over random θ0, without the initial function f(x; θ0) that the "
                 "kernel regime (and linearized, and sgd) start from.")
    notes.append(f"Scale {args.scale}: n_train={scale['n_train']}, steps={scale['steps']}, "
                 f"widths={scale['widths']}, seeds={scale['seeds']}; wall time "
                 f"{time.time() - t0:.0f} s.")
    write_section(args.out / "report.html", "Regime gap: sgd vs linearized vs kernel vs "
                  "infinite-width NTK", table, [f.name for f in figs], caption(gap), notes)
    print(f"wrote {args.out / 'report.html'} ({time.time() - t0:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
