"""Fine-tuning in the pretraining regime, and linear probes on frozen features (transfer).

``trainer_at(regime, model0, params, cfg)`` is the regime's ``Trainer`` around model0's θ0
with θ set to ``params`` (e.g. θ after pretraining): for ``linearized`` the expansion point
stays θ0, so fine-tuning continues the same Taylor model; ``lazy`` keeps f(θ0) as its
offset. ``fit`` trains it; ``features`` reads the last hidden layer in the regime's view
(``network`` for sgd/lazy, ``tangent`` for linearized); ``linear_probe`` fits a ridge
readout on frozen features and scores it like the network (same loss and accuracy).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from ..config import RunConfig
from ..rebuild import load_params
from ..regimes import Trainer, accuracy, loss_fn, targets
from ..train import Batches

ALPHAS = np.logspace(-4, 4, 17)


def trainer_at(regime: str, model0: torch.nn.Module, params: Mapping[str, torch.Tensor],
               cfg: RunConfig) -> Trainer:
    """A fresh ``Trainer`` (new optimizer state, ``cfg.train`` recipe) at θ = ``params``."""
    if regime == "kernel":
        raise ValueError("regime='kernel' has no steps to fine-tune; valid: sgd, linearized, lazy")
    trainer = Trainer(regime, model0, cfg)
    load_params(trainer.model, dict(params))
    return trainer


def fit(trainer: Trainer, x: torch.Tensor, y: torch.Tensor, steps: int, batch_size: int,
        seed: int = 0) -> float:
    """``steps`` optimizer steps on (x, y) in the deterministic batch order of ``train``;
    returns the last batch loss."""
    batches, loss = Batches(len(y), batch_size, seed), float("nan")
    for step in range(steps):
        idx = batches(step)
        loss = trainer.step(x[idx], y[idx])
    return loss


@torch.no_grad()
def score(trainer: Trainer, x: torch.Tensor, y: torch.Tensor, loss: str) -> dict[str, float]:
    """``test_loss`` and ``test_acc`` (NaN for regression) of the trainer's output."""
    out = trainer.output(x)
    return {"test_loss": float(loss_fn(loss, out, y)), "test_acc": accuracy(out, y)}


def features(trainer: Trainer, x: torch.Tensor, hook: str) -> torch.Tensor:
    """Hook activations (n, features) in the regime's view: tangent for linearized, else
    network."""
    if trainer.regime == "linearized":
        _, cache = trainer.module.run_with_cache(x, view="tangent", names_filter=[hook])
    else:
        with torch.no_grad():
            _, cache = trainer.model.run_with_cache(x, names_filter=[hook])
    return cache[hook].flatten(1)


def linear_probe(f_train: torch.Tensor, y_train: torch.Tensor, f_test: torch.Tensor,
                 y_test: torch.Tensor, n_outputs: int) -> dict[str, float]:
    """Ridge readout (with intercept, penalty by leave-one-out CV over ``ALPHAS``) from
    features to the MSE training targets (one-hot for labels), scored on the test set like
    a network output: ``test_loss`` (``loss_fn("mse")``), ``test_acc``, and the ``alpha``."""
    from sklearn.linear_model import RidgeCV

    t = targets(y_train, n_outputs, torch.float64).numpy()
    model = RidgeCV(alphas=ALPHAS).fit(f_train.double().numpy(), t)
    out = torch.as_tensor(model.predict(f_test.double().numpy())).reshape(len(f_test), -1)
    yt = y_test if y_test.dtype == torch.int64 else y_test.double()
    return {"test_loss": float(loss_fn("mse", out, yt)), "test_acc": accuracy(out, yt),
            "alpha": float(model.alpha_)}
