"""Rebuild a run's model (deterministic by seed) and load its θ snapshots."""

from __future__ import annotations

from typing import Any

import torch


def model_at_init(run: Any) -> torch.nn.Module:
    """The run's model at θ0 in eval mode (``train.prepare`` of its config: same seed, same θ0).

    When the run holds a step-0 θ snapshot, that snapshot is loaded, so the model is the
    recorded θ0 even if model construction changed since the run was written.
    """
    return data_and_model_at_init(run)[1]


def data_and_model_at_init(run: Any) -> tuple[Any, torch.nn.Module]:
    """The run's dataset (its full training set included) and ``model_at_init(run)``."""
    from .config import RunConfig
    from .train import prepare

    ds, model = prepare(RunConfig.from_dict(run.config))
    for regime in run.regimes:
        try:
            params = run.params(regime, 0)
        except KeyError:
            continue
        load_params(model, params)
        break
    return ds, model.eval()


def load_params(model: torch.nn.Module, params: dict[str, torch.Tensor]) -> torch.nn.Module:
    """Copy a θ snapshot {name: tensor} into ``model`` in place (names must match)."""
    own = dict(model.named_parameters())
    missing, extra = sorted(set(own) - set(params)), sorted(set(params) - set(own))
    if missing or extra:
        raise ValueError(f"θ snapshot does not match the model: missing {missing}, "
                         f"unexpected {extra}")
    with torch.no_grad():
        for name, p in own.items():
            p.copy_(params[name].to(p))
    return model


def has_params(run: Any) -> bool:
    """Whether the run holds θ snapshots (checked at the first step of its first regime)."""
    for regime in run.regimes:
        steps = run.steps(regime)
        if steps:
            try:
                run.params(regime, steps[0])
            except KeyError:
                return False
            return True
    return False
