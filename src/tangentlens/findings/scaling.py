"""Q6–Q8, read from the regime_gap, depth_width and width_sweep experiments: the
sgd–linearized–kernel gap vs width and task, closeness to the kernel regime vs
depth/width, and the width laws of μP vs NTK parametrization (per-seed log-log slopes,
summarized over seeds) next to the infinite-width limits themselves (``limits``, read from
the infinite_width experiment)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .common import copy_figure, per_seed_slopes, row, section
from .limits import limit_rows

HOOK = "layers.0.hook_post"
SLOPE_TOL = 0.15  # a theory slope is "supported" when the CI lies within ± this of it


def regime_gap(rg: Path, out: Path, commands: list[str]) -> dict:
    """Q6: sgd's advantage over linearized (accuracy gain, or loss reduction for regression)
    at the widest minus at the narrowest width, per task (claim < 0: the gap closes with
    width); the advantage per width, linearized − kernel, and the kernel's error (task
    difficulty) as context."""
    g = pd.read_csv(Path(rg) / "gaps.csv")
    sign = g["metric"].map({"test_acc": 1.0, "test_loss": -1.0})
    g = g.assign(adv=sign * (g["sgd"] - g["linearized"]),
                 lin_kernel=sign * (g["linearized"] - g["kernel"]),
                 difficulty=g["kernel"].where(g["metric"] == "test_loss", 1 - g["kernel"]))
    rows, main = [], []
    for task, t in g.groupby("task", sort=False):
        lo, hi = t["width"].min(), t["width"].max()
        wide = t.pivot_table(index="seed", columns="width", values="adv")
        r = row(f"{task}: advantage w={hi} − w={lo}", wide[hi] - wide[lo], claim="less",
                theory=True)
        main.append(r)
        rows.append(r)
        rows += [row(f"{task} w={w}: sgd advantage over linearized", wide[w]) for w in wide]
        at = t[t["width"] == hi]
        rows.append(row(f"{task} w={hi}: linearized − kernel", at["lin_kernel"]))
        rows.append(row(f"{task} w={hi}: kernel error (difficulty)", at["difficulty"]))
    figs = [copy_figure(p, out, f"q6_{p.name}") for p in sorted(Path(rg).glob("regime_gap_*.png"))]
    return section(
        "Q6", "The sgd–linearized–kernel gap vs task difficulty and width",
        "The sgd–linearized–kernel accuracy gap vs task difficulty and vs width.",
        "sgd's advantage over its linearization shrinks as the width grows (NTK theory: the "
        "linearization becomes exact at infinite width).",
        commands, figs, rows, main[0]["label"] if main else "",
        ["Advantage = sgd − linearized test accuracy (classification) or linearized − sgd test "
         "loss (regression, ½ squared error); > 0 means sgd is better. Difficulty = the "
         "kernel regime's test error (1 − accuracy) or test loss."])


def depth_width(dw: Path, out: Path, commands: list[str]) -> dict:
    """Q7: slope of the NTK's relative change vs depth/width (per seed, over all depths and
    widths): claim > 0, and the Hanin–Nica expectation ≈ 1; hidden change as context."""
    df = pd.read_csv(Path(dw) / "depth_width.csv")
    df = df[df["finished"]]
    k = per_seed_slopes(df, "ratio", "kernel_relative_change")
    rows = [row("slope of NTK relative change vs depth/width", k, claim="greater"),
            row("same slope vs the Hanin–Nica value 1", k, claim="equal", null=1.0,
                tol=0.3, theory=True),
            row("slope of hidden-layer change vs depth/width",
                per_seed_slopes(df, "ratio", "hidden_change"))]
    figs = [copy_figure(Path(dw) / "depth_width.png", out, "q7_depth_width.png")]
    return section(
        "Q7", "Depth/width ratio vs closeness to the kernel regime",
        "Depth/width ratio vs closeness to the kernel regime.",
        "The larger depth/width, the further sgd moves the empirical NTK from its value at θ0 "
        "(Hanin & Nica 2019: the relative change grows ∝ depth/width).",
        commands, figs, rows, rows[0]["label"],
        [f"ReLU MLP, NTK parametrization, sgd; depths {sorted(df['depth'].unique().tolist())}, "
         f"widths {sorted(df['width'].unique().tolist())}; slopes are fitted per seed over all "
         "(depth, width) runs."])


def width_laws(ws: Path, iw: Path, out: Path, commands: list[str]) -> dict:
    """Q8: per-seed slope of the hidden layer's relative change vs width for sgd under ntk
    (theory −0.5) and mup (theory 0), their difference (claim > 0), per task (width_sweep);
    then the infinite-width limits and finite widths against them (infinite_width,
    ``limits.limit_rows``)."""
    df = pd.read_csv(Path(ws) / "width_sweep.csv")
    df = df[(df["hook"] == HOOK) & (df["regime"] == "sgd") & (df["view"] == "network")]
    rows = []
    for task, t in df.groupby("task", sort=False):
        slopes = {p: per_seed_slopes(t[t["parametrization"] == p], "width", "relative_change")
                  for p in ("ntk", "mup")}
        rows += [row(f"{task} ntk: slope of ‖Δh‖/‖h0‖ vs width", slopes["ntk"], claim="equal",
                     null=-0.5, tol=SLOPE_TOL, theory=True),
                 row(f"{task} mup: slope of ‖Δh‖/‖h0‖ vs width", slopes["mup"], claim="equal",
                     null=0.0, tol=SLOPE_TOL, theory=True),
                 row(f"{task}: slope mup − slope ntk", [m - n for m, n in
                                                        zip(slopes["mup"], slopes["ntk"])],
                     claim="greater")]
    lim_rows, lim_figs, lim_notes = limit_rows(iw, out)
    rows += lim_rows
    figs = [copy_figure(p, out, f"q8_{p.name}") for p in sorted(Path(ws).glob("change_vs_width_*.png"))]
    figs += lim_figs
    return section(
        "Q8", "Feature learning at infinite width: μP vs NTK width laws",
        "Feature learning at infinite width: μP vs NTK parametrization width laws (slopes with "
        "CIs), and, once tangentlens.limits exists, the limits themselves.",
        "Under NTK parametrization the hidden layer's relative change vanishes as width^−1/2, "
        "under μP it is width-independent, so the μP slope is larger; at infinite width the "
        "μP limit still moves its hidden kernel while the NTK limit's is frozen, and finite "
        "widths converge to their limits (sgd-μP → mup_limit, linearized → ntk_limit).",
        commands, figs, rows, next((r["label"] for r in rows if "mup −" in r["label"]), ""),
        [f"1-hidden-layer tanh MLP (width_sweep), sgd, hook {HOOK}; slopes fitted per seed; a "
         f"theory slope is supported when its CI contains it and lies within ±{SLOPE_TOL} of it.",
         *lim_notes])
