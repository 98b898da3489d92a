"""Q5, read from the transfer experiment: fine-tuned minus scratch test loss on task B, sgd
(rich, μP) against linearized, per task family and task."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .common import copy_figure, row, section


def transfer(tr: Path, out: Path, commands: list[str]) -> dict:
    """Δ_sgd − Δ_linearized (Δ = test loss pretrained − scratch, full fine-tune, largest n)
    per family × task, over reps (claim < 0: pretraining helps the rich network more);
    each Δ as context."""
    d = pd.read_csv(Path(tr) / "transfer_delta.csv")
    d = d[d["method"] == "finetune"]
    rows, main = [], []
    for (family, task), g in d.groupby(["family", "task"], sort=False):
        g = g[g["n"] == g["n"].max()]
        n = int(g["n"].iloc[0])
        wide = g.pivot_table(index="rep", columns="regime", values="delta")
        r = row(f"{family}/{task} n={n}: Δ sgd − Δ linearized", wide["sgd"] - wide["linearized"],
                claim="less")
        main.append(r)
        rows += [r, *(row(f"{family}/{task} n={n}: Δ {regime}", wide[regime])
                      for regime in ("sgd", "linearized"))]
    pre = pd.read_csv(Path(tr) / "pretrain.csv")
    notes = [f"Pretraining on {p.family} A in {p.regime}: test loss {p.test_loss_A:.3g}, null "
             f"{p.null_loss_A:.3g}" + ("" if p.fits_A else " — does NOT fit A, so its transfer "
                                       "numbers are not meaningful") + "."
             for p in pre.itertuples()]
    notes.append("The CI is over the reps (resamplings of task B's n training points) of one "
                 "pretraining seed; Δ < 0 means pretraining helped.")
    figs = [copy_figure(p, out, f"q5_{p.name}") for p in sorted(Path(tr).glob("transfer_*.png"))]
    return section(
        "Q5", "Transfer: fine-tuned minus scratch, rich vs linearized",
        "Transfer: after pretraining on A, fine-tuning on the same task, on −A (sign flip), on a "
        "related and on an unrelated task, for linearized vs rich networks, fine-tuned minus "
        "scratch.",
        "Pretraining helps the rich (sgd, μP) network more than the linearized one: Δ_sgd − "
        "Δ_linearized < 0, where Δ = test loss after fine-tuning from θ_A minus from θ0.",
        commands, figs, rows, main[0]["label"] if main else "", notes)
