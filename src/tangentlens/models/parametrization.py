"""abc-parametrizations (Yang & Hu 2021, Tensor Programs IV, Table 1).

For a layer of kind ``input`` (fan-in fixed: data dimension), ``hidden`` (fan-in =
width) or ``output`` (fan-out fixed), with width ratio m = width / base_width:

    effective weight W = kappa * m^-a * w,   w ~ N(0, (sigma * m^-b)^2),   lr = eta * m^-c

kappa, sigma split the base-width constant gain / sqrt(fan_in_at_base) between
multiplier and init: sp and mup put it in the init (kappa = 1), ntk and mf in the
multiplier (sigma = 1), as in Jacot et al. and the mean-field literature. Biases of
input and hidden layers are "input-like" (fan-in 1, fan-out = width): they use the input
row's a and c, start at zero, and their multiplier carries no 1/sqrt(fan_in). The
output layer's bias has fan-in 1 and a fixed fan-out, so nothing about it scales with
width: multiplier 1, lr scale 1. The tables are in docs/parametrizations.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

KINDS = ("input", "hidden", "output")

# (a, b, c) per layer kind for SGD.
TABLE: dict[str, dict[str, tuple[float, float, float]]] = {
    "sp": {"input": (0.0, 0.0, 0.0), "hidden": (0.0, 0.5, 0.0), "output": (0.0, 0.5, 0.0)},
    "ntk": {"input": (0.0, 0.0, 0.0), "hidden": (0.5, 0.0, 0.0), "output": (0.5, 0.0, 0.0)},
    "mup": {"input": (-0.5, 0.5, 0.0), "hidden": (0.0, 0.5, 0.0), "output": (0.5, 0.5, 0.0)},
    "mf": {"input": (0.0, 0.0, -1.0), "hidden": (0.5, 0.0, -1.0), "output": (1.0, 0.0, -1.0)},
}
# Learning-rate exponents c for Adam-type optimizers (entrywise-normalized updates;
# the abc symmetry for Adam is (a + t, b - t, c - t)). mup/mf follow Tensor Programs V.
ADAM_C: dict[str, dict[str, float]] = {
    "sp": {"input": 0.0, "hidden": 0.0, "output": 0.0},
    "ntk": {"input": 0.0, "hidden": 0.0, "output": 0.0},
    "mup": {"input": 0.5, "hidden": 1.0, "output": 0.5},
    "mf": {"input": 0.0, "hidden": 0.5, "output": 0.0},
}
MULTIPLIER_STYLE = {"sp": False, "ntk": True, "mup": False, "mf": True}
PARAMETRIZATIONS = tuple(TABLE)


@dataclass(frozen=True)
class LayerScale:
    """Multipliers, init std and lr scales of one layer."""

    weight_mult: float
    weight_std: float
    bias_mult: float
    lr_weight: float
    lr_bias: float
    lr_weight_adam: float
    lr_bias_adam: float

    def lr_scale(self) -> dict[str, float]:
        return {"weight": self.lr_weight, "bias": self.lr_bias,
                "weight@adam": self.lr_weight_adam, "bias@adam": self.lr_bias_adam}


def check(parametrization: str) -> str:
    if parametrization not in TABLE:
        raise ValueError(f"parametrization={parametrization!r}; valid: {', '.join(TABLE)}")
    return parametrization


def layer_scale(parametrization: str, kind: str, *, fan_in_base: int, width: int,
                base_width: int, gain: float = 1.0) -> LayerScale:
    """Scales for one layer; ``fan_in_base`` is its fan-in at ``base_width``."""
    check(parametrization)
    if kind not in KINDS:
        raise ValueError(f"layer kind={kind!r}; valid: {', '.join(KINDS)}")
    m = width / base_width
    a, b, c = TABLE[parametrization][kind]
    a_in, _, c_in = TABLE[parametrization]["input"]
    const = gain / math.sqrt(fan_in_base)
    kappa, sigma = (const, 1.0) if MULTIPLIER_STYLE[parametrization] else (1.0, const)
    # Output bias is scalar-like (fan-in 1, fixed fan-out): width-independent.
    bias_m = 1.0 if kind == "output" else m
    return LayerScale(
        weight_mult=kappa * m**-a, weight_std=sigma * m**-b, bias_mult=bias_m**-a_in,
        lr_weight=m**-c, lr_bias=bias_m**-c_in,
        lr_weight_adam=m ** -ADAM_C[parametrization][kind],
        lr_bias_adam=bias_m ** -ADAM_C[parametrization]["input"],
    )
