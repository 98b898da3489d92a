"""Q8's second half, read from the infinite_width experiment: the NTK and μP infinite-width
limits themselves (``tangentlens.limits``), and finite widths against them.

Per seed, paired on the same data: the limits' hidden-Gram change (μP > 0, NTK exactly 0),
sgd-μP against linearized at the largest width, and the relative difference
(finite − limit)/limit of the hidden-Gram change (sgd vs mup_limit) and of the test loss
(sgd vs mup_limit, linearized vs ntk_limit) at every width. Convergence is supported when
the difference's CI at the largest width lies within ±``REL_TOL`` of 0, or else when its
size shrinks with width (per-seed log-log slope of |difference| vs width, CI below −``SLOPE_MARGIN``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .common import copy_figure, estimate_figure, per_seed_slopes, row

REL_TOL = 0.1  # a finite width "equals" its limit when (finite − limit)/limit is within ± this
# |difference| "shrinks with width" only when its log-log slope is below −SLOPE_MARGIN: a
# practical rate (halving the gap takes at most a 2^10 = 1024× wider net), not float noise
SLOPE_MARGIN = 0.1
PAIRS = (("sgd", "mup_limit", "hidden_gram_change", "hidden-Gram change"),
         ("sgd", "mup_limit", "test_loss", "test loss"),
         ("linearized", "ntk_limit", "test_loss", "test loss"))


def converges(diff: dict, shrink: dict) -> dict:
    """``diff``'s verdict, or, where that is not supported, ``shrink``'s if it is."""
    if diff["verdict"] == "supported" or shrink["verdict"] != "supported":
        return diff
    return {**diff, "verdict": "supported",
            "reason": f"{diff['reason']}; but it shrinks with width: slope {shrink['reason']}"}


def limit_rows(iw: Path, out: Path) -> tuple[list[dict], list[str], list[str]]:
    """(rows, figures, notes) of the limits, from ``iw/width.csv``."""
    df = pd.read_csv(Path(iw) / "width.csv")
    widths = sorted(df.loc[~df["regime"].str.endswith("_limit"), "width"].unique().tolist())
    top = widths[-1]
    wide = df.pivot_table(index="seed", columns=["regime", "width"], dropna=False,
                          values=["hidden_gram_change", "test_loss"])
    limit = df[df["regime"].str.endswith("_limit")].pivot_table(
        index="seed", columns="regime", values=["hidden_gram_change", "test_loss"])
    g = "hidden_gram_change"
    rows = [row("mup_limit: hidden-Gram change", limit[g]["mup_limit"], claim="greater",
                theory=True),
            row("ntk_limit: hidden-Gram change", limit[g]["ntk_limit"], claim="equal",
                theory=True),
            row(f"sgd-μP w={top}: hidden-Gram change", wide[g]["sgd"][top]),
            row(f"linearized w={top}: hidden-Gram change (tangent view)",
                wide[g]["linearized"][top]),
            row(f"sgd-μP − linearized w={top}: hidden-Gram change",
                wide[g]["sgd"][top] - wide[g]["linearized"][top], claim="greater")]
    drawn = []
    for finite, lim, col, what in PAIRS:
        rel = {w: (wide[col][finite][w] - limit[col][lim]) / limit[col][lim] for w in widths}
        name = f"{finite} vs {lim}: (finite − limit)/limit of the {what}"
        per_width = [row(f"{name}, w={w}", rel[w]) for w in widths[:-1]]
        long = pd.DataFrame([{"seed": s, "width": w, "size": abs(v)}
                             for w in widths for s, v in rel[w].items()])
        slope = per_seed_slopes(long, "width", "size")
        shrink = row("", slope, claim="less", margin=SLOPE_MARGIN)
        top_row = converges(row(f"{name}, w={top}", rel[top], claim="equal", tol=REL_TOL,
                                theory=True), shrink)
        rows += [*per_width, top_row,
                 row(f"{finite} vs {lim}: slope of |{what} difference| vs width", slope)]
        drawn += [*per_width, top_row]
    figs = [copy_figure(Path(iw) / "infinite_width.png", out, "q8_infinite_width.png"),
            estimate_figure(drawn, out, "q8_limits.png",
                            "Finite widths vs their infinite-width limits (per seed, 95% CI)",
                            "(finite − limit) / limit")]
    notes = [f"Limits (analyses/infinite_width.py): 1-hidden-layer relu μP MLP without biases on "
             f"a teacher task, full-batch GD, widths {widths}; the limits are width-free and "
             "computed once per seed, on the same data as that seed's finite widths. Hidden "
             "Gram: ‖Φ_T − Φ_0‖_F/‖Φ_0‖_F of layers.0.hook_post on the probe set. The "
             "linearized network's is the Gram of its first-order (tangent-view) features, "
             "which move although its NTK is frozen; the ntk_limit's features are frozen "
             "(change exactly 0).",
             f"A finite width converges to its limit when (finite − limit)/limit at w={top} "
             f"has a CI within ±{REL_TOL:g} of 0, or else when its size shrinks with width "
             f"(per-seed log-log slope with a CI below −{SLOPE_MARGIN:g})."]
    return rows, figs, notes
