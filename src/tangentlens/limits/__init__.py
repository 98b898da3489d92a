"""Infinite-width limits of a 1-hidden-layer MLP trained by gradient descent (docs/limits.md).

``ntk_limit`` (frozen features, constant NTK) and ``mup_limit`` (mean-field / μP: exact
recursion for linear activations, particles with Monte-Carlo error bars otherwise) take a
``Problem`` and the net's ``MeanFieldScales`` (``scales_for`` reads them from a config) and
return a ``LimitResult``: outputs, hidden Gram, its change and target alignment per checkpoint.
"""

from __future__ import annotations

from typing import Any

from tangentlens.models.parametrization import MeanFieldScales, mean_field_scales

from .kernels import ACTIVATIONS, feature_kernels
from .meanfield import mup_limit
from .ntk import ntk_limit
from .result import LimitResult, Problem

__all__ = ["ACTIVATIONS", "LimitResult", "MeanFieldScales", "Problem", "feature_kernels",
           "mup_limit", "ntk_limit", "scales_for"]


def scales_for(cfg: Any, d: int, regime: str = "mup_limit") -> MeanFieldScales:
    """Mean-field scales of a RunConfig's model; one-line ValueError if ``regime`` has no limit."""
    from tangentlens.config import limit_support_error
    from tangentlens.models.mlp import read_config

    problem = limit_support_error(cfg, regime)
    if problem:
        raise ValueError(problem)
    m = read_config(cfg.model)
    return mean_field_scales(m["parametrization"], width=m["width"], base_width=m["base_width"],
                             lr=cfg.train.lr, d=d, gain=m["gain"], gamma=m["gamma"])
