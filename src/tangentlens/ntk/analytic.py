"""Infinite-width NNGP and NTK of a fully connected net in the NTK parametrization.

f = σ_w/√n W^{L+1} φ(h^L) + σ_b b^{L+1},  h^{l+1} = σ_w/√n W^{l+1} φ(h^l) + σ_b b^{l+1},
h^1 = σ_w/√d W^1 x + σ_b b^1, all W, b ~ N(0, 1) (depth L hidden layers, x ∈ R^d):

    Σ¹ = σ_w² x·x′/d + σ_b²,   Σ^{l+1} = σ_w² E[φ(u)φ(v)] + σ_b²,
    Θ¹ = Σ¹,                  Θ^{l+1} = Σ^{l+1} + σ_w² E[φ′(u)φ′(v)] Θ^l,

(u, v) ~ N(0, Σ^l); the output kernels are Σ^{L+1} (NNGP) and Θ^{L+1} (NTK), the same for
every output. ReLU: arc-cosine kernels (Cho & Saul 2009); erf: Williams (1997).
``models.build_model`` starts biases at zero, which drops σ_b² from Σ but not the
bias-gradient term from Θ; that matches these formulas only without biases (σ_b = 0).
"""

from __future__ import annotations

import math

import torch

from tangentlens.ntk.jacobian import check_choice
from tangentlens.ntk.regression import solve_psd

ACTIVATIONS = ("relu", "erf")
KERNELS = ("ntk", "nngp")


def _moments(k11: torch.Tensor, k22: torch.Tensor, k12: torch.Tensor,
             activation: str) -> tuple[torch.Tensor, torch.Tensor]:
    """E[φ(u)φ(v)], E[φ′(u)φ′(v)] for (u, v) ~ N(0, [[k11, k12], [k12, k22]])."""
    if activation == "relu":
        norm = (k11 * k22).sqrt()
        cos = (k12 / norm.clamp_min(torch.finfo(norm.dtype).tiny)).clamp(-1.0, 1.0)
        t = torch.arccos(cos)
        return (norm / (2 * math.pi) * (torch.sin(t) + (math.pi - t) * cos),
                (math.pi - t) / (2 * math.pi))
    d = (1 + 2 * k11) * (1 + 2 * k22)
    return (2 / math.pi * torch.arcsin((2 * k12 / d.sqrt()).clamp(-1.0, 1.0)),
            4 / math.pi / (d - 4 * k12**2).sqrt())


def _kernels(x1: torch.Tensor, x2: torch.Tensor | None, depth: int, activation: str,
             sigma_w: float, sigma_b: float) -> tuple[torch.Tensor, torch.Tensor]:
    check_choice("activation", activation, ACTIVATIONS)
    if depth < 0:
        raise ValueError(f"depth={depth!r}; must be >= 0")
    x1 = x1.reshape(len(x1), -1).double()
    x2 = x1 if x2 is None else x2.reshape(len(x2), -1).double()
    w2, b2, d = sigma_w**2, sigma_b**2, x1.shape[1]
    s12 = w2 * (x1 @ x2.T) / d + b2
    s11, s22 = w2 * (x1**2).sum(1) / d + b2, w2 * (x2**2).sum(1) / d + b2
    t12 = s12
    for _ in range(depth):
        e12, d12 = _moments(s11[:, None], s22[None, :], s12, activation)
        e11, e22 = (_moments(s, s, s, activation)[0] for s in (s11, s22))
        s12, s11, s22 = w2 * e12 + b2, w2 * e11 + b2, w2 * e22 + b2
        t12 = s12 + w2 * d12 * t12
    return s12, t12


def nngp_kernel(x1: torch.Tensor, x2: torch.Tensor | None = None, depth: int = 1,
                activation: str = "relu", sigma_w: float = 1.0,
                sigma_b: float = 0.0) -> torch.Tensor:
    """Σ^{L+1}(x1, x2), float64 (n1, n2); inputs are flattened to (n, d)."""
    return _kernels(x1, x2, depth, activation, sigma_w, sigma_b)[0]


def ntk_kernel(x1: torch.Tensor, x2: torch.Tensor | None = None, depth: int = 1,
               activation: str = "relu", sigma_w: float = 1.0,
               sigma_b: float = 0.0) -> torch.Tensor:
    """Θ^{L+1}(x1, x2), float64 (n1, n2); inputs are flattened to (n, d)."""
    return _kernels(x1, x2, depth, activation, sigma_w, sigma_b)[1]


def infinite_width_predict(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor,
                           kernel: str = "ntk", depth: int = 1, activation: str = "relu",
                           sigma_w: float = 1.0, sigma_b: float = 0.0,
                           ridge: float = 0.0) -> torch.Tensor:
    """K(x_test, X)(K(X, X) + ridge·I)⁻¹ Y, float64 with Y's trailing shape.

    ``ntk``: the infinite-width gradient-flow limit of MSE training; ``nngp``: the GP
    posterior mean (ridge = noise variance). Both ignore f0: they are the means over
    zero-mean random inits, not the trajectory of one network (see ``kernel_regression``).
    """
    fn = {"ntk": ntk_kernel, "nngp": nngp_kernel}[check_choice("kernel", kernel, KERNELS)]
    args = (depth, activation, sigma_w, sigma_b)
    alpha = solve_psd(fn(x_train, None, *args), y_train, ridge)
    return (fn(x_test, x_train, *args) @ alpha).reshape(len(x_test), *y_train.shape[1:])
