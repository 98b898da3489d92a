"""What both infinite-width limits take (a GD problem) and return (a LimitResult)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import math

import torch

from tangentlens.metrics import kernel_target_alignment


@dataclass
class Problem:
    """GD on ½·mean_batch ‖f(x) − y‖² over (``x_train`` (n, d), ``y_train`` (n, k)).

    Step t uses the rows ``batches(t)`` (default: all, i.e. full-batch GD) and learning rate
    η·``lr_schedule(t)`` (default 1). Outputs are reported on ``x_train`` and ``x_eval``, the
    hidden Gram on ``x_gram`` (default ``x_train``), its alignment against ``y_gram``
    (default ``y_train`` when ``x_gram`` is None; else NaN unless given), at ``checkpoints``.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    steps: int
    checkpoints: Sequence[int]
    x_eval: torch.Tensor | None = None
    x_gram: torch.Tensor | None = None
    y_gram: torch.Tensor | None = None
    batches: Callable[[int], torch.Tensor] | None = None
    lr_schedule: Callable[[int], float] | None = None

    def __post_init__(self) -> None:
        self.x_train = self.x_train.reshape(len(self.x_train), -1).double()
        self.y_train = self.y_train.double().reshape(len(self.y_train), -1)
        d = self.x_train.shape[1]
        self.x_eval = (self.x_train[:0] if self.x_eval is None
                       else self.x_eval.reshape(len(self.x_eval), -1).double())
        if self.x_gram is None:
            self.x_gram = self.x_train
            self.y_gram = self.y_train if self.y_gram is None else self.y_gram
        self.x_gram = self.x_gram.reshape(len(self.x_gram), -1).double()
        for name, x in (("x_eval", self.x_eval), ("x_gram", self.x_gram)):
            if x.shape[1] != d:
                raise ValueError(f"{name} has {x.shape[1]} features; x_train has {d}")
        if self.steps < 0 or any(not 0 <= c <= self.steps for c in self.checkpoints):
            raise ValueError(f"checkpoints={list(self.checkpoints)!r} must lie in [0, steps={self.steps}]")

    def batch(self, t: int) -> tuple[torch.Tensor | slice, float]:
        """(rows of step t, its learning-rate multiplier)."""
        rows = slice(None) if self.batches is None else self.batches(t)
        return rows, 1.0 if self.lr_schedule is None else float(self.lr_schedule(t))


@dataclass
class LimitResult:
    """Per checkpoint (index i ↔ ``steps[i]``): outputs on train and eval points, the hidden
    Gram Φ_t on the Gram points, ‖Φ_t − Φ_0‖_F/‖Φ_0‖_F and the centered kernel–target
    alignment of Φ_t (``metrics.kernel_target_alignment``). ``error``: Monte-Carlo standard errors of the same keys (empty when
    exact). ``pre``/``post``: hidden pre-/post-activations (T, n_gram, S) of S display
    particles (None when not asked for)."""

    steps: list[int]
    train: torch.Tensor
    eval: torch.Tensor
    gram: torch.Tensor
    gram_change: torch.Tensor
    alignment: torch.Tensor
    error: dict[str, torch.Tensor] = field(default_factory=dict)
    pre: torch.Tensor | None = None
    post: torch.Tensor | None = None


def finish(problem: Problem, steps: list[int], train: list, evals: list, grams: list,
           **extra) -> LimitResult:
    """Stack per-checkpoint lists into a LimitResult (Gram change and alignment computed)."""
    gram = torch.stack(grams)
    change = torch.stack([(g - gram[0]).norm() / gram[0].norm() for g in gram])
    align = torch.tensor([math.nan if problem.y_gram is None else
                          kernel_target_alignment(g.numpy(), problem.y_gram.double().numpy())
                          for g in gram], dtype=torch.float64)
    return LimitResult(steps, torch.stack(train), torch.stack(evals), gram, change, align, **extra)
