"""μP / mean-field limit of the 1-hidden-layer net (Mei et al. 2018; Chizat & Bach 2018;
Bordelon & Pehlevan 2022 at depth 1), trained by GD as the finite net is.

Network of width N (``models.parametrization.MeanFieldScales``):

    f(x) = (1/(γ0 N)) Σ_i a_i φ(h_i(x)),   h_i(x) = g w_i·x/√d,   a_i ~ N(0, I_k), w_i ~ N(0, I_d).

GD with per-unit learning rates η γ0² N (a_i) and ρ η γ0² N (w_i) on ½·mean_b ‖f − y‖²,
Δ_μ = (y_μ − f(x_μ))/|b|, moves every unit (a_i, w_i) by

    a ← a + η γ0 Σ_μ Δ_μ φ(h(x_μ)),     w ← w + ρ η γ0 (g/√d) Σ_μ (a·Δ_μ) φ′(h(x_μ)) x_μ,

which depends on the others only through f. As N → ∞, (a_i, w_i) become samples of a law
p_t moved by these maps (the mean-field PDE, discretized in time as GD is) and
f = (1/γ0) E_{p_t}[a φ(h)]. The features move by O(γ0 ρ η) per unit of function change:
γ0 → 0 at fixed η is the NTK limit (``ntk.py``); Chizat et al.'s lazy scale is α = 1/γ0.
The outputs are even in γ0 (flip γ0 and a together), so they approach the NTK limit as γ0².

- ``linear`` φ: z = (a, w) stays a linear image z_t = L_t z_0 of z_0 ~ N(0, I), L_{t+1} =
  M_t L_t with M_t = [[I, ηγ0 Uᵀ], [ρηγ0 U, I]], U = (g/√d) X_bᵀ Δ — exact, no sampling.
  f(x) = (g/(γ0√d)) xᵀ C_wa and Φ(x, x′) = (g²/d) xᵀ C_ww x′ with C = L Lᵀ; restricted to
  the n data points these are the closed recursions on the n×n Gram of hidden features
  and the feature–readout covariance.
- ``relu``/``tanh``/``erf``: particles, i.e. Monte-Carlo samples of p_t moved by the same
  maps (the finite mean-field net of width ``particles``, initialized antithetically,
  (a, w) and (−a, w), so f_0 = 0 exactly and the γ0 ↔ −γ0 symmetry holds). Error ∝
  1/√particles; ``replicas`` independent sets are averaged and their spread reported as
  standard errors.
"""

from __future__ import annotations

import math

import torch

from tangentlens.models.parametrization import MeanFieldScales

from .kernels import check_activation, dphi, phi
from .result import LimitResult, Problem, finish


def mup_limit(problem: Problem, scales: MeanFieldScales, activation: str, particles: int = 4096,
              replicas: int = 2, seed: int = 0, display: int = 0) -> LimitResult:
    """Infinite-width μP limit at ``problem.checkpoints``: exact for ``linear``, else particles.

    ``display`` > 0 also returns the hidden activations of that many units on the Gram points
    (at most ``particles // 2``: distinct first-layer weights).
    """
    check_activation(activation)
    if not scales.gamma0 > 0:
        raise ValueError(f"gamma0={scales.gamma0!r}; must be > 0 (γ0 = 0 is the NTK limit)")
    if activation == "linear":
        return _linear(problem, scales, display, torch.Generator().manual_seed(seed))
    if particles < 2 or particles % 2 or replicas < 1:
        raise ValueError(f"particles={particles!r}, replicas={replicas!r}; need an even "
                         "particles >= 2 and replicas >= 1")
    display = min(display, particles // 2)
    runs = [_particles(problem, scales, activation, particles, display,
                       torch.Generator().manual_seed(seed * 1_000_003 + r)) for r in range(replicas)]
    mean = {k: torch.stack([getattr(r, k) for r in runs]).mean(0)
            for k in ("train", "eval", "gram", "gram_change", "alignment")}
    error = {}
    if replicas > 1:
        error = {k: torch.stack([getattr(r, k) for r in runs]).std(0) / math.sqrt(replicas)
                 for k in mean}
    return LimitResult(runs[0].steps, **mean, error=error, pre=runs[0].pre, post=runs[0].post)


def _linear(problem: Problem, scales: MeanFieldScales, display: int,
            gen: torch.Generator) -> LimitResult:
    x, y, xg = problem.x_train, problem.y_train, problem.x_gram
    d, k = x.shape[1], y.shape[1]
    c, g0 = scales.gain / math.sqrt(d), scales.gamma0
    lmap = torch.eye(k + d, dtype=torch.float64)
    z0 = torch.randn(k + d, display, generator=gen, dtype=torch.float64)
    train, evals, grams, pre = [], [], [], []
    for t in range(problem.steps + 1):
        if t in problem.checkpoints:
            cov = lmap @ lmap.T
            readout = c / g0 * cov[k:, :k]
            train.append(x @ readout)
            evals.append(problem.x_eval @ readout)
            grams.append(c**2 * xg @ cov[k:, k:] @ xg.T)
            pre.append(c * xg @ (lmap[k:] @ z0))
        if t == problem.steps:
            break
        rows, lr = problem.batch(t)
        xb = x[rows]
        f = c / g0 * xb @ (lmap[k:] @ lmap[:k].T)
        u = c * xb.T @ ((y[rows] - f) / len(xb))
        step = scales.eta * lr * g0
        lmap = torch.cat([lmap[:k] + step * u.T @ lmap[k:], lmap[k:] + step * scales.rho * u @ lmap[:k]])
    extra = {"pre": torch.stack(pre), "post": torch.stack(pre)} if display else {}
    return finish(problem, sorted(set(problem.checkpoints)), train, evals, grams, **extra)


def _particles(problem: Problem, scales: MeanFieldScales, activation: str, particles: int,
               display: int, gen: torch.Generator) -> LimitResult:
    x, y = problem.x_train, problem.y_train
    d, k = x.shape[1], y.shape[1]
    c, g0 = scales.gain / math.sqrt(d), scales.gamma0
    half = particles // 2
    w = torch.randn(half, d, generator=gen, dtype=torch.float64).repeat(2, 1)
    a = torch.randn(half, k, generator=gen, dtype=torch.float64)
    a = torch.cat([a, -a])

    def out(xs: torch.Tensor) -> torch.Tensor:
        return phi(activation, c * xs @ w.T) @ a / (g0 * particles)

    train, evals, grams, pre = [], [], [], []
    for t in range(problem.steps + 1):
        if t in problem.checkpoints:
            train.append(out(x))
            evals.append(out(problem.x_eval))
            h = c * problem.x_gram @ w.T
            feats = phi(activation, h)
            grams.append(feats @ feats.T / particles)
            pre.append(h[:, :display])
        if t == problem.steps:
            break
        rows, lr = problem.batch(t)
        xb = x[rows]
        h = c * xb @ w.T
        feats = phi(activation, h)
        delta = (y[rows] - feats @ a / (g0 * particles)) / len(xb)
        step = scales.eta * lr * g0
        grad_w = (dphi(activation, h) * (delta @ a.T)).T @ xb
        a = a + step * feats.T @ delta
        w = w + step * scales.rho * c * grad_w
    extra = {"pre": torch.stack(pre), "post": phi(activation, torch.stack(pre))} if display else {}
    return finish(problem, sorted(set(problem.checkpoints)), train, evals, grams, **extra)
