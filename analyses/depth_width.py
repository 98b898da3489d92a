"""Depth/width sweep: how far the empirical NTK and the hidden layers move vs depth/width.

Hanin & Nica (2019, *Finite depth and width corrections to the neural tangent kernel*):
for ReLU nets at finite width the NTK fluctuates at init and moves during training by an
amount governed by depth/width, ≈ ∝ depth/width when it is small. A ReLU MLP in the NTK
parametrization (``analyses/configs/depth_width.yaml``) is trained with SGD for a grid of
depths × widths × seeds; from the θ snapshots at θ0 and the final step, the trace NTK on
64 probe-test inputs (``tangentlens.lenses.kernel_drift``) gives the kernel relative change
‖K_T − K_0‖_F / ‖K_0‖_F and the kernel distance 1 − cos(K_T, K_0); the cached activations
give the relative change ‖h − h0‖_F / ‖h0‖_F of each hidden post-activation (mean over
layers). Each is fitted against depth/width on log-log axes (slope with 95% CI), pooled
over all depths and per depth.

    python analyses/depth_width.py [--scale tiny|quick|default|full] [--out DIR] [--jobs N]
                                   [--threads N]

Writes OUT/depth_width.csv (one row per run), OUT/slopes.{csv,json}, OUT/depth_width.png
and OUT/report.html; runs live in OUT/depth=…__width=…__seed=…/ (restartable, index.h5).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd

from tangentlens.experiments import cli as experiment
from tangentlens.lenses.kernel_drift import kernel_drift
from tangentlens.metrics import relative_change
from tangentlens.experiments.scaling import (fit_slopes, html_section, scaling_figure, slope_text,
                                          write_html)
from tangentlens.store import open_runs
from tangentlens.sweep import run_sweep

CONFIG = Path(__file__).parent / "configs" / "depth_width.yaml"
SCALES = {
    "tiny": dict(depths=[1, 2], widths=[16, 32], seeds=[0], steps=4, n_probe=32, device="cpu"),
    "quick": dict(depths=[1, 2, 4], widths=[32, 128, 512], seeds=[0, 1, 2], steps=100,
                  n_probe=64, device="cpu"),
    "default": dict(depths=[1, 2, 3, 4, 5, 6], widths=[32, 64, 128, 256, 512], seeds=[0, 1, 2],
                    steps=200, n_probe=128, device="cpu"),
    "full": dict(depths=[1, 2, 3, 4, 6, 8, 12, 16], widths=[32, 64, 128, 256, 512, 1024, 2048],
                 seeds=[0, 1, 2, 3], steps=1000, n_probe=512, device="cuda"),
}
METRICS = {"kernel_relative_change": "NTK: ‖K_T − K_0‖_F / ‖K_0‖_F",
           "kernel_distance": "NTK distance: 1 − cos(K_T, K_0)",
           "hidden_change": "hidden: mean_l ‖h_l − h0_l‖_F / ‖h0_l‖_F"}


def measure(index: Path) -> pd.DataFrame:
    """One row per run: depth, width, seed, depth/width, kernel and hidden-layer change."""
    rows = []
    for run in open_runs(index):
        with run:
            cfg = run.config
            step = run.steps("sgd")[-1]
            kd = kernel_drift(run)
            final = kd[kd["step"] == step].set_index("metric")["value"]
            posts = [h for h in run.hooks if h.endswith("hook_post")]
            change = [relative_change(run.activations("sgd", step, h, "network", "all").numpy(),
                                      run.activations("sgd", 0, h, "network", "all").numpy())
                      for h in posts]
            depth, width = cfg["model"]["depth"], cfg["model"]["width"]
            rows.append(dict(depth=depth, width=width, seed=cfg["seed"], ratio=depth / width,
                             kernel_relative_change=final["kernel_relative_change"],
                             kernel_distance=final["kernel_distance"],
                             hidden_change=float(np.mean(change)),
                             hidden_change_last=change[-1],
                             train_loss=float(run.metrics("sgd")["train_loss"].iloc[-1]),
                             finished=step == cfg["train"]["steps"]))
    return pd.DataFrame(rows).sort_values(["depth", "width", "seed"], ignore_index=True)


def slopes(df: pd.DataFrame) -> pd.DataFrame:
    """Slope vs depth/width per metric, pooled (``depth`` = "all") and per depth."""
    long = df.melt(["depth", "width", "seed", "ratio"], list(METRICS), "metric", "value")
    pooled = fit_slopes(long, ["metric"], "ratio", "value").assign(depth="all")
    per_depth = fit_slopes(long, ["metric", "depth"], "ratio", "value")
    return pd.concat([pooled, per_depth], ignore_index=True)[
        ["metric", "depth", "slope", "lo", "hi", "intercept", "se", "n"]]


def figure(df: pd.DataFrame, out: Path) -> Path:
    """Each metric vs depth/width (log-log), coloured by depth, with the pooled fit."""
    long = df.melt(["depth", "width", "seed", "ratio"], list(METRICS), "metric", "value")
    long["metric"] = long["metric"].map(METRICS)
    depths = sorted(df["depth"].unique())
    cmap = mpl.colormaps["viridis"]

    def style(key: tuple) -> dict:
        i = depths.index(key[0])
        return dict(color=cmap(i / max(len(depths) - 1, 1)), ls="-", label=f"depth {key[0]}")

    return scaling_figure(long, "ratio", "value", out / "depth_width", col="metric",
                          series=["depth"], style=style, pooled=True, xlabel="depth / width",
                          ylabel="change from θ0 to the final step",
                          title="Change vs depth/width (ReLU MLP, ntk, sgd; "
                                "legend: pooled slope [95% CI])")


def caption(df: pd.DataFrame, fits: pd.DataFrame) -> str:
    """Two sentences from the numbers: pooled slopes, then per-depth slopes and extremes."""
    pooled = fits[fits["depth"] == "all"].set_index("metric")
    per = fits[(fits["depth"] != "all") & (fits["metric"] == "kernel_relative_change")]["slope"]
    first = ("Against depth/width, pooled over depths "
             f"{df['depth'].min()}–{df['depth'].max()} and widths "
             f"{df['width'].min()}–{df['width'].max()}, the slope [95% CI] is "
             + "; ".join(f"{m} {slope_text(pooled.loc[m])}" for m in METRICS)
             + " (Hanin & Nica: kernel change grows with depth/width, ∝ depth/width for small"
             " ratios; Lee et al. 2019: ∝ width^-1/2 at fixed depth).")
    lo, hi = df.groupby("ratio").mean(numeric_only=True).iloc[[0, -1]].itertuples()
    second = (f"At fixed depth the kernel relative change has slope {per.min():.2f} to "
              f"{per.max():.2f} against depth/width; it is {lo.kernel_relative_change:.3g} "
              f"(hidden change {lo.hidden_change:.3g}) at depth/width {lo.Index:.3g} and "
              f"{hi.kernel_relative_change:.3g} (hidden change {hi.hidden_change:.3g}) at "
              f"{hi.Index:.3g}.")
    return f"{first} {second}"


def main(argv: list[str] | None = None) -> dict:
    ap = experiment.parser(__doc__, "depth_width", list(SCALES))
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (1 torch thread each)")
    args = experiment.parse(ap, argv)
    out, scale, t0 = Path(args.out), SCALES[args.scale], time.time()
    index = run_sweep(CONFIG, [
        f"train.steps={scale['steps']}", f"train.device={scale['device']}",
        f"probe.n_train={scale['n_probe']}", f"probe.n_test={scale['n_probe']}",
        "model.depth=" + ",".join(map(str, scale["depths"])),
        "model.width=" + ",".join(map(str, scale["widths"])),
        "seed=" + ",".join(map(str, scale["seeds"]))], out, jobs=args.jobs)
    t_train = time.time() - t0
    df = measure(index)
    df.to_csv(out / "depth_width.csv", index=False)
    fits = slopes(df)
    fits.to_csv(out / "slopes.csv", index=False)
    (out / "slopes.json").write_text(fits.to_json(orient="records", indent=1))
    text = caption(df, fits)
    table = fits.drop(columns=["intercept", "se"])
    report = write_html(out / "report.html", "tangentlens depth/width sweep", [
        html_section("Kernel and hidden-layer change vs depth/width", text, [figure(df, out)],
                     table)])
    summary = {"scale": args.scale, "runs": len(df), "train_s": round(t_train, 1),
               "total_s": round(time.time() - t0, 1), "report": str(report), "caption": text}
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
