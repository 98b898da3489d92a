"""Transfer: does pretraining in a regime help few-sample learning of related tasks?

A 1-hidden-layer ReLU MLP under muP, with ``model.gamma`` per family chosen so that ``sgd`` is a
rich regime (hidden change ≥ 0.3 at width 1024; numbers in the config), is pretrained on task A
in ``sgd`` and ``linearized`` from one θ0 (``analyses/configs/transfer.yaml``). The
pretraining test loss on A is reported next to the null loss (½ Var of the targets):
transfer means little where A was not learned. Each regime is then trained again, in the
same regime and with the same recipe and budget (full-batch steps), on n samples of a task
B, starting from θ_A (``pretrained``) or from θ0 (``scratch``):

- ``finetune``: the whole model (linearized: the same Taylor model around θ0, continued);
- ``probe``: a ridge readout on the frozen last hidden layer (sgd: network view,
  linearized: tangent view) — at θ_A, or at θ0 for scratch.

Task families (MSE throughout): ``teacher`` — A is a relu teacher (d=32, k=2); B is
``same`` (A on fresh samples), ``sign_flip`` (−A), ``related`` (same hidden directions, abs
link), ``unrelated`` (other directions). ``digits`` — A is the 10 classes; B relabels
held-out images (half of the test split; the other half scores): ``same``, ``permuted``
(fixed label permutation), ``parity``, ``ge5`` (y ≥ 5). The transfer effect is
Δ = test loss(pretrained) − test loss(scratch); negative means pretraining helped.

    python analyses/transfer.py [--scale tiny|quick|default|full] [--out DIR] [--threads N]

Writes OUT/pretrain.csv, OUT/transfer.csv (every fit), OUT/transfer_delta.csv, figures
OUT/transfer_pretrain.png and OUT/transfer_delta_<family>.png, OUT/report.html, and the
pretraining runs OUT/pretrain_<family>/run.h5.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from tangentlens import data, plots
from tangentlens.experiments.cli import parse, parser, write_section
from tangentlens.experiments.finetune import features, fit, linear_probe, score, trainer_at
from tangentlens.config import RunConfig, apply_overrides
from tangentlens.store import open_run
from tangentlens.train import prepare, run

CONFIG = Path(__file__).parent / "configs" / "transfer.yaml"
FITS_A = 0.5  # pretraining "fits A" when its test loss is below this share of the null loss
PERMUTATION = torch.randperm(10, generator=torch.Generator().manual_seed(0))
RELABEL = {"identity": lambda y: y, "permute": lambda y: PERMUTATION[y],
           "parity": lambda y: y % 2, "ge5": lambda y: (y >= 5).long()}


def pretrain(family: str, spec: dict, scale: dict, out: Path) -> dict:
    """Train A in every regime; returns cfg, dataset, model0, θ0, {regime: θ_A}, metrics, and
    one summary row per regime."""
    cfg = RunConfig.from_dict(apply_overrides(spec["pretrain"], [
        f"model.width={scale['width']}", f"train.steps={scale['pretrain_steps']}",
        f"data.n_train={json.dumps(scale['n_train'][family])}",
        f"train.device={scale['device']}"]))
    res = run(cfg, out / f"pretrain_{family}", overwrite=True)
    ds, model0 = prepare(cfg)
    with open_run(res.path) as r:
        theta0 = r.params(cfg.train.regimes[0], 0)
        thetas = {g: r.params(g, r.steps(g)[-1]) for g in cfg.train.regimes}
    y = ds.y_test if ds.task == "regression" else torch.eye(ds.n_outputs)[ds.y_test]
    null = 0.5 * float(y.var(0).sum())
    rows = [dict(family=family, regime=g, test_loss_A=f["test_loss"], test_acc_A=f["test_acc"],
                 train_loss_A=f["train_loss"], null_loss_A=null,
                 fits_A=f["test_loss"] < FITS_A * null)
            for g, f in ((g, res.final(g)) for g in cfg.train.regimes)]
    return dict(cfg=cfg, ds=ds, model0=model0.to(cfg.train.device), theta0=theta0,
                thetas=thetas, metrics=res.metrics, rows=rows)


def teacher_task(cfg: RunConfig, ds_a, task: dict, rep: int, n_max: int):
    """(x, y) pool of n_max points and a test set of teacher B; in A's target units when B's
    function is A's (same options), so ``same`` is exactly A."""
    opts = {**cfg.data.options, **task.get("options", {})}
    ds = data.load("teacher", seed=1000 + rep, n_train=max(n_max, cfg.data.n_train),
                   n_test=cfg.data.n_test, **opts)
    if opts == cfg.data.options:  # undo B's standardization, apply A's
        a, b = ds_a.info["target_normalization"], ds.info["target_normalization"]
        ds.y_train, ds.y_test = ((y * b["std"] + b["mean"] - a["mean"]) / a["std"]
                                 for y in (ds.y_train, ds.y_test))
    sign = task.get("sign", 1)
    return ds.x_train[:n_max], sign * ds.y_train[:n_max], ds.x_test, sign * ds.y_test


def digits_task(ds_a, relabel: str, rep: int):
    """A seeded half of A's test split as the pool, the other half as the test set, relabelled."""
    order = torch.randperm(len(ds_a.y_test), generator=torch.Generator().manual_seed(rep))
    pool, test = order[: len(order) // 2], order[len(order) // 2:]
    f = RELABEL[relabel]
    return ds_a.x_test[pool], f(ds_a.y_test[pool]), ds_a.x_test[test], f(ds_a.y_test[test])


def measure(family: str, spec: dict, scale: dict, pre: dict, ft_lr: float) -> list[dict]:
    """One row per task × rep × n × regime × start (pretrained / scratch) × method."""
    cfg, ds_a = pre["cfg"], pre["ds"]
    ft_cfg = RunConfig.from_dict(apply_overrides(cfg.to_dict(), [
        f"train.lr={ft_lr}", f"train.steps={scale['finetune_steps']}"]))
    hook, dev, ns = f"layers.{cfg.model.depth - 1}.hook_post", cfg.train.device, scale["n"][family]
    rows = []
    for task, tspec in spec["tasks"].items():
        for rep in scale["reps"]:
            xs = (teacher_task(cfg, ds_a, tspec, rep, max(ns)) if family == "teacher"
                  else digits_task(ds_a, tspec, rep))
            x_pool, y_pool, x_te, y_te = (t.to(dev) for t in xs)
            for n in ns:
                x, y = x_pool[:n], y_pool[:n]
                for regime, theta_a in pre["thetas"].items():
                    for start, theta in (("pretrained", theta_a), ("scratch", pre["theta0"])):
                        tr = trainer_at(regime, pre["model0"], theta, ft_cfg)
                        probe = linear_probe(features(tr, x, hook).cpu(), y.cpu(),
                                             features(tr, x_te, hook).cpu(), y_te.cpu(),
                                             ds_a.n_outputs)
                        fit(tr, x, y, scale["finetune_steps"], batch_size=n, seed=rep)
                        key = dict(family=family, task=task, rep=rep, n=n, regime=regime,
                                   start=start)
                        rows += [{**key, "method": m, "test_loss": v["test_loss"],
                                  "test_acc": v["test_acc"]} for m, v in
                                 (("finetune", score(tr, x_te, y_te, "mse")), ("probe", probe))]
    return rows


def deltas(df: pd.DataFrame) -> pd.DataFrame:
    """Test loss and accuracy (NaN for regression) from θ_A (``*_pretrained``) and from θ0
    (``*_scratch``), and ``delta`` / ``delta_acc`` = pretrained − scratch, per family × task ×
    rep × n × regime × method."""
    keys = ["family", "task", "rep", "n", "regime", "method"]
    pre, scr = (df[df.start == s].drop(columns="start") for s in ("pretrained", "scratch"))
    d = pre.merge(scr, on=keys, suffixes=("_pretrained", "_scratch"))
    return d.assign(delta=d.test_loss_pretrained - d.test_loss_scratch,
                    delta_acc=d.test_acc_pretrained - d.test_acc_scratch)


def plot_deltas(d: pd.DataFrame, family: str, path: Path) -> Path:
    d = d[d.family == family]
    tasks, methods = list(dict.fromkeys(d.task)), ["finetune", "probe"]
    fig, axes = plots.figure(len(methods), len(tasks), sharex=True)
    for row, method in zip(axes, methods):
        for ax, task in zip(row, tasks):
            sub = d[(d.task == task) & (d.method == method)]
            for regime, g in sub.groupby("regime", sort=False):
                ax.plot(g.n, g.delta, "o", color=plots.color(regime), alpha=0.3)
                m = g.groupby("n")["delta"].mean()
                ax.plot(m.index, m.values, "o-", color=plots.color(regime), label=regime)
            ax.axhline(0, color=plots.color("init"), lw=0.8)
            ax.set_xscale("log")
            ax.set(title=f"{task} — {method}", xlabel="n training samples of task B",
                   ylabel="Δ test loss (pretrained − scratch)")
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize="small")
    fig.suptitle(f"Transfer ({family}): test loss on B after pretraining on A minus from θ0, vs "
                 "n, per regime (rows: full fine-tune / ridge probe on the last hidden layer; "
                 "< 0: pretraining helped)", fontsize=10)
    return plots.save(fig, path)


def plot_pretrain(pres: dict, path: Path) -> Path:
    fig, axes = plots.figure(1, len(pres))
    for ax, (family, pre) in zip(axes[0], pres.items()):
        for regime, rows in pre["metrics"].items():
            m = pd.DataFrame(rows)
            ax.plot(m.step, m.test_loss, "o-", color=plots.color(regime), label=f"{regime} test")
            ax.plot(m.step, m.train_loss, ":", color=plots.color(regime), label=f"{regime} train")
        ax.axhline(pre["rows"][0]["null_loss_A"], color=plots.color("init"), ls="--",
                   label="null (½ Var y)")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(left=0)
        ax.set_yscale("log")
        ax.set(title=f"{family}: task A", xlabel="pretraining step (symlog)",
               ylabel="loss on A (½ squared error, log)")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize="small")
    fig.suptitle("Pretraining on task A per regime and family (does it fit A?)", fontsize=10)
    return plots.save(fig, path)


def caption(pre: pd.DataFrame, d: pd.DataFrame) -> str:
    fits = "; ".join(f"{r.family} {r.regime} {r.test_loss_A:.3g} "
                     f"({r.test_loss_A / r.null_loss_A:.0%} of null)" for r in pre.itertuples())
    parts = []
    for family, g in d[d.method == "finetune"].groupby("family", sort=False):
        n = g.n.max()
        m = g[g.n == n].groupby(["regime", "task"], sort=False)["delta"].mean()
        parts.append(f"{family} (n={n}): " + "; ".join(
            f"{r} " + ", ".join(f"{t} {v:+.3g}" for (_, t), v in s.items())
            for r, s in m.groupby(level=0, sort=False)))
    return (f"Pretraining test loss on A: {fits}. Fine-tuned minus scratch test loss at the "
            f"largest n: {' | '.join(parts)}.")


def main(argv: list[str] | None = None) -> None:
    spec = yaml.safe_load(CONFIG.read_text())
    args = parse(parser(__doc__, "transfer", tuple(spec["scales"])), argv)
    scale, out, t0 = spec["scales"][args.scale], args.out, time.time()
    pres, rows = {}, []
    for family, fspec in spec["families"].items():
        pres[family] = pretrain(family, fspec, scale, out)
        rows += measure(family, fspec, scale, pres[family], spec["finetune"]["lr"])
    pre = pd.DataFrame([r for p in pres.values() for r in p["rows"]])
    pre.to_csv(out / "pretrain.csv", index=False)
    df = pd.DataFrame(rows)
    df.to_csv(out / "transfer.csv", index=False)
    d = deltas(df)
    d.to_csv(out / "transfer_delta.csv", index=False)
    figs = [plot_pretrain(pres, out / "transfer_pretrain"),
            *(plot_deltas(d, f, out / f"transfer_delta_{f}") for f in pres)]
    table = (d.groupby(["family", "task", "method", "n", "regime"], sort=False)
             [["test_loss_pretrained", "test_loss_scratch", "delta", "delta_acc"]].mean()
             .reset_index().to_dict("records"))
    notes = [f"Pretraining on {r.family} A, {r.regime}: test loss {r.test_loss_A:.3g}, null "
             f"{r.null_loss_A:.3g}: " + ("fits A." if r.fits_A else "does NOT fit A (loss ≥ "
                                         "50% of null); its transfer numbers are not meaningful.")
             for r in pre.itertuples()]
    notes.append(f"Scale {args.scale}: width {scale['width']}, A's train sizes "
                 f"{scale['n_train']} (null: all), {scale['pretrain_steps']} pretraining steps, "
                 f"{scale['finetune_steps']} full-batch steps on B, n={scale['n']}, "
                 f"reps={scale['reps']}; wall time {time.time() - t0:.0f} s.")
    write_section(out / "report.html", "Transfer: pretrained vs scratch, per regime and task",
                  table, [f.name for f in figs], caption(pre, d), notes)
    print(f"wrote {out / 'report.html'} ({time.time() - t0:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
