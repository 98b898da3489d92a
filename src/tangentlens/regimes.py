"""One trainer per regime: what is trained, what it outputs, and how a step is taken.

All trainers share the loss, optimizer, schedule and per-parameter learning rates; they
differ only in the function being trained:

- ``sgd``        f(x; θ)
- ``linearized`` f(x; θ0) + J(x; θ0)(θ − θ0)                      (``Linearized``)
- ``lazy``       α (f(x; θ) − f(x; θ0)), trained on loss / α²      (Chizat et al. 2019)
- ``kernel``     closed form, see ``tangentlens.ntk.kernel_regression`` (no steps)
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

from .config import RunConfig
from .linearized import Linearized


def loss_fn(name: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``mse``: ½·mean over examples of ‖f − y‖² (class labels become one-hot);
    ``cross_entropy``: mean softmax cross-entropy."""
    if name == "cross_entropy":
        return F.cross_entropy(out, y)
    return 0.5 * ((out - targets(y, out.shape[-1], out.dtype)) ** 2).sum(-1).mean()


def targets(y: torch.Tensor, n_outputs: int, dtype: torch.dtype) -> torch.Tensor:
    """Regression targets for MSE: one-hot for integer labels, else ``y`` itself."""
    if y.dtype in (torch.int64, torch.int32):
        return F.one_hot(y, n_outputs).to(dtype)
    return y.to(dtype).reshape(len(y), -1)


def accuracy(out: torch.Tensor, y: torch.Tensor) -> float:
    return float((out.argmax(-1) == y).float().mean()) if y.dtype == torch.int64 else math.nan


def lr_lambda(cfg: RunConfig):
    """Learning-rate multiplier at step t for the configured schedule."""
    t_cfg = cfg.train
    total, warm = max(t_cfg.steps, 1), t_cfg.warmup_steps

    def f(t: int) -> float:
        w = min(1.0, (t + 1) / warm) if warm else 1.0
        if t_cfg.schedule in ("cosine", "warmup_cosine"):
            return w * 0.5 * (1 + math.cos(math.pi * min(t, total) / total))
        if t_cfg.schedule == "linear":
            return w * max(0.0, 1 - t / total)
        return w

    return f


class Trainer:
    """Holds one regime's trainable module, optimizer and schedule (at step ``start``).
    ``train_x``: the training inputs, if fixed; the linearized regime then keeps their θ0
    primals when they fit (``Linearized.cache_primals``)."""

    def __init__(self, regime: str, model0: nn.Module, cfg: RunConfig, *, start: int = 0,
                 train_x: torch.Tensor | None = None):
        from .models import param_groups

        self.regime, self.cfg = regime, cfg
        self.model = copy.deepcopy(model0)
        self.alpha = cfg.train.alpha if regime == "lazy" else 1.0
        if regime == "linearized":
            self.module: nn.Module = Linearized(self.model)
            if train_x is not None:
                self.module.cache_primals(train_x)
        else:
            self.module = self.model
        if regime == "lazy":
            self.frozen = copy.deepcopy(model0).requires_grad_(False)
        t = cfg.train
        groups = param_groups(self.model, t.lr, t.optimizer)
        for g in groups:
            g.pop("names", None)
        if t.optimizer == "sgd":
            self.opt = torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
        else:
            cls = torch.optim.Adam if t.optimizer == "adam" else torch.optim.AdamW
            self.opt = cls(groups, lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay)
        at = lr_lambda(cfg)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda t: at(t + start))

    def output(self, x: torch.Tensor) -> torch.Tensor:
        """The regime's prediction for ``x``."""
        if self.regime == "lazy":
            with torch.no_grad():
                f0 = self.frozen(x)
            return self.alpha * (self.module(x) - f0)
        return self.module(x)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One optimizer step on a batch; returns the (unscaled) batch loss."""
        self.opt.zero_grad(set_to_none=True)
        loss = loss_fn(self.cfg.train.loss, self.output(x), y)
        (loss / self.alpha**2).backward()
        self.opt.step()
        self.sched.step()
        return float(loss.detach())

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
