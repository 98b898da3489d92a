"""The ``ntk_limit`` and ``mup_limit`` regimes of a run: the limits trained on the run's
training set with its batches and schedule, recorded like the finite regimes.

Per checkpoint: a metrics row (train/test loss and accuracy, ``hidden_gram_change``,
``hidden_gram_alignment`` on the probe set, and ``*_mc_err`` Monte-Carlo standard errors
for particle limits) and, in the ``network`` view, ``hook_logits`` (limit outputs on the
probe set) and ``layers.0.hook_pre`` / ``layers.0.hook_post``: the activations of
S = min(model.width, particles/2) units drawn from the limit's law (for ``ntk_limit``:
frozen), so the activation lenses read them as they read a width-S network.
"""

from __future__ import annotations

import torch

from tangentlens.regimes import accuracy, loss_fn, targets

from . import scales_for
from .meanfield import mup_limit
from .ntk import ntk_limit
from .result import Problem

HOOKS = ("layers.0.hook_pre", "layers.0.hook_post", "hook_logits")


def train_limit(regime: str, cfg, ds, probe: dict, eval_sets: dict, batches, lr_schedule,
                hooks: list[str], writer, record) -> None:
    """Train ``regime`` and hand each checkpoint's row to ``record(regime, row)``; with a
    ``writer``, also write the steps it has not completed."""
    x_train = ds.x_train.reshape(len(ds.x_train), -1).double()
    y_train = targets(ds.y_train, ds.n_outputs, torch.float64)
    scales = scales_for(cfg, x_train.shape[1], regime)
    (xe_tr, ye_tr), (xe_te, ye_te) = eval_sets["train"], eval_sets["test"]
    x_probe = probe["x"].reshape(len(probe["x"]), -1).double()
    sizes = [len(xe_tr), len(xe_te), len(x_probe)]
    problem = Problem(x_train, y_train, cfg.train.steps, cfg.checkpoint_steps(),
                      x_eval=torch.cat([xe_tr.reshape(sizes[0], -1), xe_te.reshape(sizes[1], -1),
                                        x_probe]).double(),
                      x_gram=x_probe, y_gram=targets(probe["y"], ds.n_outputs, torch.float64),
                      batches=batches, lr_schedule=lr_schedule)
    particles = cfg.train.limit_particles
    display = min(cfg.model.width, particles // 2)
    if regime == "ntk_limit":
        res = ntk_limit(problem, scales, cfg.model.activation, display=display, seed=cfg.seed)
    else:
        res = mup_limit(problem, scales, cfg.model.activation, particles=particles,
                        replicas=cfg.train.limit_replicas, seed=cfg.seed, display=display)
    for i, step in enumerate(res.steps):
        out_tr, out_te, out_probe = res.eval[i].split(sizes)
        row = {"step": step, "train_loss": float(loss_fn("mse", out_tr, ye_tr)),
               "train_acc": accuracy(out_tr, ye_tr), "test_loss": float(loss_fn("mse", out_te, ye_te)),
               "test_acc": accuracy(out_te, ye_te), "hidden_gram_change": float(res.gram_change[i]),
               "hidden_gram_alignment": float(res.alignment[i])}
        if res.error:
            err_tr, err_te, _ = res.error["eval"][i].split(sizes)
            row.update(train_output_mc_err=float(err_tr.pow(2).mean().sqrt()),
                       test_output_mc_err=float(err_te.pow(2).mean().sqrt()),
                       hidden_gram_change_mc_err=float(res.error["gram_change"][i]))
        record(regime, row)
        if writer is None or step in writer.completed_steps(regime):
            continue
        arrays = {"hook_logits": out_probe, "layers.0.hook_pre": res.pre[i],
                  "layers.0.hook_post": res.post[i]}
        with writer.step(regime, step) as s:
            for hook in [h for h in hooks if h in HOOKS]:
                s.write("network", hook, 0, arrays[hook].float())
            writer.append_metrics(regime, row)
