"""Width sweep: a feature-learning coordinate check (muP-style) across parametrizations.

A 1-hidden-layer tanh MLP is trained in the ``sgd`` and ``linearized`` regimes from the
same θ0 on a 2-direction teacher and on digits, for widths × parametrizations (ntk, sp,
mup) × seeds (configs: ``analyses/configs/width_sweep{,_digits}.yaml``; the learning rate is
fixed per task × parametrization across widths, table ``LR``; so is ``model.gamma``, table
``GAMMA``). For every hook the relative
change ‖h − h0‖_F / ‖h0‖_F between θ0 and the final step (probe inputs) is fitted against
width on log-log axes (slope with 95% CI, seeds as repeated points). Theory for the hidden
layer: ∝ width^-1/2 under ntk, width-independent under mup. Probe quality: ridge probe
on ``layers.0.hook_post`` (teacher: test R² of the target; digits: test accuracy of a
ridge classifier), at θ0 and at the final step.

γ (``model.gamma``, docs/parametrizations.md) is set for mup only, to the smallest of
1, 2, 4, 8, 16 whose sgd hidden change (``layers.0.hook_post``) at width 1024 is ≥ 0.3 at
the default scale (teacher 4, digits 1; measured numbers in the configs), so the mup runs
are in a rich regime. ntk and sp keep γ = 1: their γ0 = γ/√width, and a larger γ would make
the narrow nets rich too, bending the width^-1/2 law these runs check.

    python analyses/width_sweep.py [--scale tiny|quick|default|full] [--out DIR] [--jobs N]
                                   [--threads N]

Writes OUT/width_sweep.csv, OUT/slopes.{csv,json}, figures OUT/*.png and OUT/report.html;
runs live in OUT/<task>/<parametrization>/width=…__seed=…/ (restartable, OUT/index.h5).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tangentlens.experiments import cli as experiment
from tangentlens.metrics import relative_change
from tangentlens.metrics.probes import fit_probe
from tangentlens.experiments.scaling import (fit_slopes, html_section, scaling_figure, slope_text,
                                          write_html)
from tangentlens.store import open_runs, write_index
from tangentlens.sweep import run_sweep

CONFIGS = Path(__file__).parent / "configs"
TASKS = {"teacher": CONFIGS / "width_sweep.yaml", "digits": CONFIGS / "width_sweep_digits.yaml"}
PARAMETRIZATIONS = ("ntk", "sp", "mup")
# SGD (momentum 0.9) learning rate per task × parametrization, stable and fitting at every
# width; sp's kernel grows ∝ width, so its lr is set by the widest net (see ``lr``).
LR = {"teacher": {"ntk": 0.1, "sp": 0.002, "mup": 0.01},
      "digits": {"ntk": 0.2, "sp": 0.002, "mup": 0.005}}
# model.gamma per task × parametrization (1 where absent): see the docstring.
GAMMA = {"teacher": {"mup": 4.0}, "digits": {"mup": 1.0}}
SP_LR_WIDTH = 4096  # the widest net of the default scale, for which LR[...]["sp"] was tuned
SCALES = {
    "tiny": dict(widths=[16, 32], seeds=[0], steps=4, n_probe=32, device="cpu"),
    "quick": dict(widths=[64, 256, 1024], seeds=[0, 1, 2], steps=100, n_probe=64, device="cpu"),
    "default": dict(widths=[64, 128, 256, 512, 1024, 2048, 4096], seeds=[0, 1, 2], steps=200,
                    n_probe=128, device="cpu"),
    "full": dict(widths=[64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384],
                 seeds=[0, 1, 2, 3, 4], steps=1000, n_probe=512, device="cuda"),
}
PROBE_HOOK = "layers.0.hook_post"
HIDDEN = ("layers.0.hook_pre", "layers.0.hook_post")
THEORY = {**{(h, "ntk"): -0.5 for h in HIDDEN}, **{(h, "mup"): 0.0 for h in HIDDEN},
          ("hook_logits", "ntk"): 0.0, ("hook_logits", "mup"): 0.5}
KEYS = ["task", "parametrization", "regime", "view", "hook"]


def lr(task: str, parametrization: str, widths: list[int]) -> float:
    """LR of the table; for sp scaled by SP_LR_WIDTH / max(widths)."""
    return LR[task][parametrization] * (SP_LR_WIDTH / max(widths)
                                         if parametrization == "sp" else 1.0)


def sweep(out: Path, scale: dict, jobs: int) -> Path:
    """Train (or finish) every run; returns the top-level index."""
    for task, config in TASKS.items():
        for p in PARAMETRIZATIONS:
            run_sweep(config, [
                f"model.parametrization={p}", f"train.lr={lr(task, p, scale['widths'])}",
                f"model.gamma={GAMMA[task].get(p, 1.0)}",
                f"train.steps={scale['steps']}", f"train.device={scale['device']}",
                f"probe.n_train={scale['n_probe']}", f"probe.n_test={scale['n_probe']}",
                "model.width=" + ",".join(map(str, scale["widths"])),
                "seed=" + ",".join(map(str, scale["seeds"]))], out / task / p, jobs=jobs)
    return write_index(out)


def probe_score(run, regime: str, step: int, view: str) -> tuple[str, float]:
    """(metric name, test score) of a ridge probe on PROBE_HOOK."""
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.preprocessing import StandardScaler

    xtr, xte = (run.activations(regime, step, PROBE_HOOK, view, split).numpy()
                for split in ("train", "test"))
    tr, te = run.probe.train, run.probe.test
    if np.issubdtype(tr.y.dtype, np.integer):
        scaler = StandardScaler().fit(xtr)
        clf = RidgeClassifierCV(alphas=np.logspace(-3, 6, 19)).fit(scaler.transform(xtr), tr.y)
        return "probe_accuracy", float(clf.score(scaler.transform(xte), te.y))
    return "probe_r2_target", fit_probe(xtr, tr.y, xte, te.y, kind="regression")["score"]


def measure(index: Path) -> pd.DataFrame:
    """One row per run × regime × view × hook: relative change at the final step, probe
    score (PROBE_HOOK rows) at the final step and at θ0, final losses and test accuracy."""
    rows = []
    for run in open_runs(index):
        with run:
            cfg = run.config
            meta = dict(task=cfg["data"]["name"], parametrization=cfg["model"]["parametrization"],
                        width=cfg["model"]["width"], seed=cfg["seed"], lr=cfg["train"]["lr"],
                        gamma=cfg["model"]["gamma"])
            ref = run.regimes[0]
            h0 = {h: run.activations(ref, 0, h, "network", "all").numpy() for h in run.hooks}
            metric, init = probe_score(run, ref, 0, "network")
            for regime in run.regimes:
                step = run.steps(regime)[-1]
                ok = step == cfg["train"]["steps"]  # a diverged regime stops early
                last = run.metrics(regime).iloc[-1]
                for view in run.views[regime]:
                    score = probe_score(run, regime, step, view)[1] if ok else math.nan
                    for hook in run.hooks:
                        h = run.activations(regime, step, hook, view, "all").numpy()
                        rows.append({**meta, "regime": regime, "view": view, "hook": hook,
                                     "relative_change": relative_change(h, h0[hook]) if ok
                                     else math.nan,
                                     "probe_metric": metric if hook == PROBE_HOOK else "",
                                     "probe_score": score if hook == PROBE_HOOK else math.nan,
                                     "probe_score_init": init if hook == PROBE_HOOK else math.nan,
                                     "train_loss": float(last["train_loss"]) if ok else math.nan,
                                     "test_loss": float(last["test_loss"]) if ok else math.nan,
                                     "test_acc": float(last["test_acc"]) if ok else math.nan})
    order = {k: i for i, k in enumerate([*TASKS, *PARAMETRIZATIONS])}
    return pd.DataFrame(rows).sort_values(["task", "parametrization"], key=lambda c: c.map(order),
                                          kind="stable", ignore_index=True)


def figures(df: pd.DataFrame, out: Path) -> dict[str, list[Path]]:
    """Per task: relative change vs width (rows: hooks, columns: parametrizations, fitted),
    probe score vs width (θ0 in grey) and final train loss vs width."""
    paths: dict[str, list[Path]] = {}
    for task, g in df.groupby("task", sort=False):
        probe = g[g["hook"] == PROBE_HOOK]
        init = probe[probe["regime"] == probe["regime"].iloc[0]].drop_duplicates(
            ["parametrization", "width", "seed"]).assign(regime="init", view="network",
                                                         probe_score=lambda d: d.probe_score_init)
        metric = probe["probe_metric"].iloc[0]
        losses = probe[probe["view"] == "network"]
        paths[task] = [
            scaling_figure(g, "width", "relative_change", out / f"change_vs_width_{task}",
                           col="parametrization", row="hook", series=["regime", "view"],
                           theory=THEORY, xlabel="width", ylabel="‖h − h0‖_F / ‖h0‖_F",
                           title=f"{task}: relative change at the final step vs width "
                                 "(legend: fitted slope [95% CI])"),
            scaling_figure(pd.concat([init, probe]), "width", "probe_score",
                           out / f"probe_vs_width_{task}", col="parametrization",
                           series=["regime", "view"], fit=False, logy=False, xlabel="width",
                           ylabel=f"{metric} ({PROBE_HOOK})",
                           title=f"{task}: ridge probe on {PROBE_HOOK} vs width (grey: θ0)"),
            scaling_figure(losses, "width", "train_loss", out / f"loss_vs_width_{task}",
                           col="parametrization", series=["regime", "view"], fit=False,
                           xlabel="width", ylabel="final train loss (MSE)",
                           title=f"{task}: final training loss vs width"),
        ]
    return paths


def caption(df: pd.DataFrame, slopes: pd.DataFrame, task: str) -> str:
    """Two sentences from the numbers: hidden-change slopes, then probe scores at max width."""
    s = slopes[(slopes["task"] == task) & (slopes["hook"] == PROBE_HOOK)]

    def fit(p, regime, view="network"):
        row = s[(s["parametrization"] == p) & (s["regime"] == regime) & (s["view"] == view)]
        return slope_text(row.iloc[0]) if len(row) else "n/a"

    parts = [f"under {p}: sgd {fit(p, 'sgd')}, linearized (tangent view) "
             f"{fit(p, 'linearized', 'tangent')}" for p in PARAMETRIZATIONS]
    first = (f"On {task}, the relative change of {PROBE_HOOK} scales as width^slope with "
             f"slope [95% CI] {'; '.join(parts)} (theory: −0.5 under ntk, 0 under mup).")
    g = df[(df["task"] == task) & (df["hook"] == PROBE_HOOK)]
    top = g[g["width"] == g["width"].max()]
    mean = top.groupby(["parametrization", "regime", "view"])["probe_score"].mean()
    scores = ", ".join(f"{p} sgd {mean.get((p, 'sgd', 'network'), math.nan):.3f} vs linearized "
                       f"{mean.get((p, 'linearized', 'tangent'), math.nan):.3f}"
                       for p in PARAMETRIZATIONS)
    second = (f"At width {int(g['width'].max())} the {g['probe_metric'].iloc[0]} of a ridge "
              f"probe on it is {scores} (θ0: {top['probe_score_init'].mean():.3f}).")
    return f"{first} {second}"


def main(argv: list[str] | None = None) -> dict:
    ap = experiment.parser(__doc__, "width_sweep", list(SCALES))
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (1 torch thread each)")
    args = experiment.parse(ap, argv)
    out, scale, t0 = Path(args.out), SCALES[args.scale], time.time()
    index = sweep(out, scale, args.jobs)
    t_train = time.time() - t0
    df = measure(index)
    df.to_csv(out / "width_sweep.csv", index=False)
    slopes = fit_slopes(df, KEYS, "width", "relative_change")
    slopes.to_csv(out / "slopes.csv", index=False)
    (out / "slopes.json").write_text(slopes.to_json(orient="records", indent=1))
    paths = figures(df, out)
    sections = [html_section(f"Width sweep — {t}", caption(df, slopes, t), paths[t],
                             slopes[slopes["task"] == t].drop(columns=["task", "intercept", "se"])
                             .assign(lr=lambda d, t=t: [lr(t, p, scale["widths"])
                                                        for p in d["parametrization"]],
                                     gamma=lambda d, t=t: [GAMMA[t].get(p, 1.0)
                                                           for p in d["parametrization"]]))
                for t in paths]
    report = write_html(out / "report.html", "tangentlens width sweep: relative change and "
                        "probe quality vs width", sections)
    summary = {"scale": args.scale, "runs": int(df[["task", "parametrization", "width", "seed"]]
                                                .drop_duplicates().shape[0]),
               "train_s": round(t_train, 1), "total_s": round(time.time() - t0, 1),
               "report": str(report), "captions": {t: caption(df, slopes, t) for t in paths}}
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
