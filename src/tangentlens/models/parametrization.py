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

``gamma`` (``model.gamma``, Bordelon & Pehlevan 2022's γ0 multiplier; Chizat et al. 2019's
α = 1/γ) is applied on top of every parametrization by ``with_gamma``: the network output is
divided by γ and every learning rate multiplied by γ² (SGD; γ for Adam), which leaves the
function-space dynamics at init unchanged and multiplies the feature movement by γ.
``mean_field_scales`` maps (parametrization, width, base_width, lr, gamma) of a 1-hidden-layer
net to the mean-field form f = (1/(γ0 N)) Σ a_i φ(g w_i·x/√d) (docs/parametrizations.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

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


def with_gamma(scale: LayerScale, gamma: float, output: bool) -> LayerScale:
    """``scale`` with the feature-learning strength γ: readout multipliers / γ, lr × γ² (Adam γ)."""
    if not (gamma > 0 and math.isfinite(gamma)):
        raise ValueError(f"model.gamma={gamma!r}; must be a finite number > 0")
    div = gamma if output else 1.0
    return replace(scale, weight_mult=scale.weight_mult / div, bias_mult=scale.bias_mult / div,
                   lr_weight=scale.lr_weight * gamma**2, lr_bias=scale.lr_bias * gamma**2,
                   lr_weight_adam=scale.lr_weight_adam * gamma,
                   lr_bias_adam=scale.lr_bias_adam * gamma)


@dataclass(frozen=True)
class MeanFieldScales:
    """A 1-hidden-layer net (no biases, n outputs) in mean-field form.

        f(x) = (1/(γ0 N)) Σ_i a_i φ(h_i(x)),   h_i(x) = g w_i·x/√d,   a_i ~ N(0, I), w_i ~ N(0, I_d)

    trained by GD with per-particle learning rates η γ0² N on a_i and ρ η γ0² N on w_i:
    ``eta`` = η is the function-space rate (Δf = η K Δ at init, with the NTK
    K(x, x′) = E[φ(h)φ(h′)] + ρ g² E[φ′(h)φ′(h′)] x·x′/d), ``gamma0`` = γ0 the feature-learning strength, ``rho`` = ρ the first-layer
    learning-rate ratio (1 for ``ntk`` and ``mf``), ``gain`` = g.
    """

    gamma0: float
    eta: float
    rho: float
    gain: float


def mean_field_scales(parametrization: str, *, width: int, base_width: int, lr: float, d: int,
                      gain: float, gamma: float = 1.0) -> MeanFieldScales:
    """The mean-field form of the ``depth=1`` MLP that ``models.build_model`` builds.

    With σ_V, η_V the readout's effective init std and learning rate and η_W the first
    layer's: γ0 = 1/(N σ_V), η = N η_V, ρ = η_W d / (g² η γ0² N). For the table's rows:
    mup γ0 = γ/√B, η = lr·B, ρ = d/(g² B); mf γ0 = γ/√B, η = lr, ρ = 1; ntk γ0 = γ/√N,
    η = lr, ρ = 1; sp γ0 = γ/√N, η = lr·N, ρ = d/(g² N) (N = width, B = base_width).
    """
    sizes = dict(width=width, base_width=base_width)
    inp = with_gamma(layer_scale(parametrization, "input", fan_in_base=d, gain=gain, **sizes),
                     gamma, output=False)
    out = with_gamma(layer_scale(parametrization, "output", fan_in_base=base_width, **sizes),
                     gamma, output=True)
    gamma0 = 1.0 / (width * out.weight_mult * out.weight_std)
    eta = width * lr * out.lr_weight * out.weight_mult**2
    rho = lr * inp.lr_weight * inp.weight_mult**2 * d / (gain**2 * eta * gamma0**2 * width)
    return MeanFieldScales(gamma0=gamma0, eta=eta, rho=rho, gain=gain)
