"""Closed-form kernel regression with the empirical NTK at θ0 (the ``kernel`` regime).

The t → ∞ limit of gradient flow on ½‖f_lin(X) − Y‖² (+ ridge/2·‖Δθ‖²) from Δθ = 0:
α = (K + ridge·I)⁻¹ vec(Y − f0(X)) with the full (nO × nO) kernel, Δθ = J(X)ᵀα (the
min-norm solution), and f_lin(x; θ0 + Δθ) = f0(x) + K(x, X)α.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, vjp

from tangentlens.ntk.empirical import IMPLEMENTATIONS, empirical_ntk
from tangentlens.ntk.jacobian import Params, check_choice, default_params

EIGH_MAX = 4096  # above this size a singular kernel is regularized by jitter, not eigh


def solve_psd(k: torch.Tensor, rhs: torch.Tensor, ridge: float = 0.0) -> torch.Tensor:
    """(k + ridge·I)⁻¹ rhs for a PSD k by a float64 Cholesky.

    With ridge = 0 and a numerically singular k (the Cholesky fails, or its smallest
    pivot² is below tol = n·eps(k.dtype) times the largest — e.g. fewer parameters than
    n·O, or float32 round-off), the answer is the limit of gradient flow from Δθ = 0: the
    pseudo-inverse solution k⁺ rhs with eigenvalues below tol·λ_max dropped (exact eigh for
    n ≤ EIGH_MAX), or for larger n the Cholesky solve with a jitter of tol·λ_max, which
    damps the same directions at a fraction of the cost.
    """
    if ridge < 0:
        raise ValueError(f"ridge={ridge!r}; must be >= 0")
    n = k.shape[0]
    a = k.to(torch.float64, copy=True)  # ridge and jitter go on its diagonal, no identity
    a.diagonal().add_(ridge)
    rhs = rhs.double().reshape(n, -1)
    chol, info = torch.linalg.cholesky_ex(a)
    piv = chol.diagonal() ** 2
    tol = n * torch.finfo(k.dtype).eps
    if info == 0 and (ridge > 0 or piv.min() >= tol * piv.max()):
        return torch.cholesky_solve(rhs, chol)
    if ridge > 0:
        raise ValueError(f"kernel matrix ({n}x{n}) plus ridge={ridge!r} is not positive "
                         "definite; the kernel has negative eigenvalues (not a valid NTK?)")
    del chol
    if n > EIGH_MAX:
        jitter = tol * a.diagonal().max()
        a.diagonal().add_(jitter)
        chol, info = torch.linalg.cholesky_ex(a)
        if info == 0:
            return torch.cholesky_solve(rhs, chol)
        a.diagonal().sub_(jitter)
    lam, vec = torch.linalg.eigh(a)
    keep = lam > tol * lam.abs().max()
    inv = torch.where(keep, 1.0 / lam.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
    return vec @ (inv[:, None] * (vec.T @ rhs))


@dataclass
class KernelRegression:
    """Fitted kernel regression: ``alpha`` (n, O), ``predict(x)``, ``delta_params()``."""

    model: nn.Module
    params0: Params
    x_train: torch.Tensor
    alpha: torch.Tensor
    ridge: float
    implementation: str
    block_size: int

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """f0(x) + Σ_j K(x, X_j) α_j, in blocks of ``block_size`` rows of x."""
        out = []
        for s in range(0, len(x), self.block_size):
            xb = x[s:s + self.block_size]
            k = empirical_ntk(self.model, xb, self.x_train, self.params0, "full",
                              self.implementation, self.block_size)
            with torch.no_grad():
                f0 = functional_call(self.model, self.params0, (xb,))
            out.append(f0 + torch.einsum("ijab,jb->ia", k, self.alpha))
        return torch.cat(out)

    def delta_params(self) -> Params:
        """Min-norm displacement Δθ = J(X)ᵀα from one vjp at θ0 (J is never formed)."""
        _, pull = vjp(lambda p: functional_call(self.model, p, (self.x_train,)), self.params0)
        return pull(self.alpha)[0]


def kernel_regression(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
                      params0: Params | None = None, ridge: float = 0.0,
                      implementation: str = "auto", block_size: int = 64) -> KernelRegression:
    """Solve (K + ridge·I) vec(α) = vec(Y − f0(X)) with K = empirical_ntk(X, X) (nO × nO).

    ``y_train`` has the output's shape (n, O) (one-hot or regression targets).

    >>> import torch
    >>> from tangentlens import build_model, kernel_regression, load_config
    >>> model = build_model(load_config(None, ["model.width=32"]).model, (8,), 2, seed=0)
    >>> x, y = torch.randn(6, 8, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    >>> kr = kernel_regression(model.double(), x, y)    # ridge 0: interpolates the train set
    >>> torch.allclose(kr.predict(x), y, atol=1e-6)
    True
    """
    check_choice("implementation", implementation, IMPLEMENTATIONS)
    params0 = default_params(model, params0)
    with torch.no_grad():
        f0 = functional_call(model, params0, (x_train,))
    if tuple(y_train.shape) != tuple(f0.shape):
        raise ValueError(f"y_train shape {tuple(y_train.shape)} must equal the model output "
                         f"shape {tuple(f0.shape)}")
    n, n_out = f0.shape
    k = empirical_ntk(model, x_train, None, params0, "full", implementation, block_size)
    k = k.permute(0, 2, 1, 3).reshape(n * n_out, n * n_out)
    alpha = solve_psd(k, y_train - f0, ridge).view(n, n_out).to(f0.dtype)
    return KernelRegression(model, params0, x_train, alpha, ridge, implementation, block_size)
