"""NTK limit of the 1-hidden-layer net: γ0 → 0 (or width → ∞ in the ntk parametrization).

The features are frozen at their infinite-width law, the hidden Gram is Φ (``kernels``) at
every step, so its change is exactly 0, and the outputs follow linear GD in function space
with the constant NTK K = Φ + ρD from f_0 = 0 (the mean over random inits, as in
``ntk.analytic.infinite_width_predict``):

    f_{t+1}(x) = f_t(x) + η_t K(x, X_b) (Y_b − f_t(X_b)) / |b|.

Full-batch GD at constant η converges to K(x, X) K(X, X)⁻¹ Y, the kernel-regression limit.
"""

from __future__ import annotations

import torch

from tangentlens.models.parametrization import MeanFieldScales

from .kernels import check_activation, feature_kernels, phi
from .result import LimitResult, Problem, finish


def ntk_limit(problem: Problem, scales: MeanFieldScales, activation: str, display: int = 0,
              seed: int = 0) -> LimitResult:
    """Train/eval outputs and the (constant) hidden Gram at ``problem.checkpoints``.

    ``display`` > 0 also returns that many frozen random features on the Gram points.
    """
    check_activation(activation)
    x_all = torch.cat([problem.x_train, problem.x_eval])
    n = len(problem.x_train)
    phi_k, d_k = feature_kernels(x_all, problem.x_train, activation, scales.gain)
    kernel = phi_k + scales.rho * d_k
    gram = feature_kernels(problem.x_gram, problem.x_gram, activation, scales.gain)[0]
    f = torch.zeros(len(x_all), problem.y_train.shape[1], dtype=torch.float64)
    train, evals, grams = [], [], []
    for t in range(problem.steps + 1):
        if t in problem.checkpoints:
            train.append(f[:n].clone())
            evals.append(f[n:].clone())
            grams.append(gram)
        if t == problem.steps:
            break
        rows, lr = problem.batch(t)
        idx = torch.arange(n)[rows]
        delta = (problem.y_train[idx] - f[idx]) / len(idx)
        f += scales.eta * lr * kernel[:, idx] @ delta
    extra = {}
    if display:
        g = torch.Generator().manual_seed(seed)
        d = problem.x_gram.shape[1]
        w = torch.randn(display, d, generator=g, dtype=torch.float64)
        pre = scales.gain / d**0.5 * problem.x_gram @ w.T
        extra = {"pre": pre.expand(len(grams), -1, -1), "post": phi(activation, pre).expand(
            len(grams), -1, -1)}
    return finish(problem, sorted(set(problem.checkpoints)), train, evals, grams, **extra)
