"""Infinite-width limits: the μP limit against wide μP networks, the NTK limit as γ0 → 0,
feature learning at γ0 = 1, and the kernels against closed forms and Monte Carlo."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tangentlens.limits import Problem, feature_kernels, mup_limit, ntk_limit
from tangentlens.limits.kernels import _gauss_expectations
from tangentlens.models import build_model, param_groups
from tangentlens.models.parametrization import MeanFieldScales, mean_field_scales

N_TRAIN, D, STEPS, LR, GAMMA, BASE = 16, 8, 30, 0.02, 8.0, 64


def data(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N_TRAIN, D, generator=g, dtype=torch.float64)
    y = torch.sin(2 * x[:, :1]) + x[:, 1:2]
    return x, y, torch.randn(8, D, generator=g, dtype=torch.float64)


def gain_of(activation: str) -> float:
    return math.sqrt(2) if activation == "relu" else 1.0


def finite_mup(width: int, activation: str, seed: int, x, y, x_eval) -> torch.Tensor:
    """Eval outputs of the package's μP MLP after STEPS full-batch GD steps."""
    cfg = SimpleNamespace(kind="mlp", width=width, depth=1, activation=activation, bias=False,
                          parametrization="mup", base_width=BASE, gamma=GAMMA)
    model = build_model(cfg, (D,), 1, seed=seed).double()
    groups = [{k: v for k, v in g.items() if k != "names"} for g in param_groups(model, LR)]
    opt = torch.optim.SGD(groups, lr=LR)
    for _ in range(STEPS):
        opt.zero_grad()
        (0.5 * ((model(x) - y) ** 2).sum(-1).mean()).backward()
        opt.step()
    with torch.no_grad():
        return model(x_eval)


def scales(activation: str, width: int = 1024) -> MeanFieldScales:
    return mean_field_scales("mup", width=width, base_width=BASE, lr=LR, d=D,
                             gain=gain_of(activation), gamma=GAMMA)


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean().sqrt())


def slope(xs, ys) -> float:
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def test_mean_field_scales_are_width_independent_for_mup_and_mf():
    for p, rho in (("mup", D / (2 * BASE)), ("mf", 1.0)):
        s = [mean_field_scales(p, width=w, base_width=BASE, lr=0.1, d=D, gain=math.sqrt(2),
                               gamma=2.0) for w in (256, 4096)]
        assert s[0].gamma0 == pytest.approx(2.0 / math.sqrt(BASE))
        assert s[0].gamma0 == pytest.approx(s[1].gamma0) and s[0].eta == pytest.approx(s[1].eta)
        assert s[0].rho == pytest.approx(rho) and s[1].rho == pytest.approx(rho)
    ntk = mean_field_scales("ntk", width=4096, base_width=BASE, lr=0.1, d=D, gain=1.0, gamma=2.0)
    assert ntk.gamma0 == pytest.approx(2.0 / 64) and ntk.eta == pytest.approx(0.1)


def test_linear_limit_equals_very_wide_mup_network():
    x, y, xe = data()
    lim = mup_limit(Problem(x, y, STEPS, [STEPS], x_eval=xe), scales("linear"), "linear")
    errs = {w: np.mean([rms(finite_mup(w, "linear", s, x, y, xe), lim.eval[-1]) for s in range(2)])
            for w in (1024, 16384)}
    signal = float(lim.eval[-1].pow(2).mean().sqrt())
    assert errs[16384] < 0.01 * signal and errs[16384] < errs[1024] / 2.5, (errs, signal)


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_finite_width_error_slope(activation):
    x, y, xe = data()
    problem = Problem(x, y, STEPS, [STEPS], x_eval=xe)
    lim = mup_limit(problem, scales(activation), activation, particles=2**18, replicas=2)
    widths = [256, 512, 1024, 2048, 4096, 8192]
    errs = [math.sqrt(np.mean([rms(finite_mup(w, activation, s, x, y, xe), lim.eval[-1]) ** 2
                               for s in range(4)])) for w in widths]
    assert -0.7 <= slope(widths, errs) <= -0.3, errs
    if activation == "relu":  # the reference's own Monte-Carlo error is well below the widest net's
        assert float(lim.error["eval"][-1].pow(2).mean().sqrt()) < errs[-1] / 3


@pytest.mark.parametrize("activation, particles", [("linear", 0), ("tanh", 2**13)])
def test_mup_limit_approaches_ntk_limit_as_gamma_squared(activation, particles):
    x, y, xe = data()
    problem = Problem(x, y, STEPS, [STEPS], x_eval=xe)
    gain = gain_of(activation)
    # Reference: γ0 → 0 of the same particles for tanh (its kernel's Monte-Carlo error
    # cancels); the analytic NTK limit for linear (exact). Both checked against ntk_limit below.
    ref = (ntk_limit(problem, MeanFieldScales(1.0, 1.0, 0.5, gain), activation).eval[-1]
           if activation == "linear" else
           mup_limit(problem, MeanFieldScales(1e-6, 1.0, 0.5, gain), activation, particles, 1).eval[-1])
    gammas = [0.02, 0.04, 0.08, 0.16]
    errs = [rms(mup_limit(problem, MeanFieldScales(g, 1.0, 0.5, gain), activation, particles,
                          1).eval[-1], ref) for g in gammas]
    assert 1.9 <= slope(gammas, errs) <= 2.1, errs


@pytest.mark.parametrize("activation", ["relu", "tanh", "erf"])
def test_small_gamma_particles_match_analytic_ntk_limit_within_reported_error(activation):
    x, y, xe = data()
    problem = Problem(x, y, STEPS, [STEPS], x_eval=xe)
    s = MeanFieldScales(1e-4, 1.0, 0.5, gain_of(activation))
    lim = mup_limit(problem, s, activation, particles=2**13, replicas=8)
    ntk = ntk_limit(problem, s, activation)
    z = (lim.eval[-1] - ntk.eval[-1]).abs() / lim.error["eval"][-1]
    assert float(z.max()) < 5 and rms(lim.eval[-1], ntk.eval[-1]) < 0.05 * float(ntk.eval[-1].std())


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_limit_gram_moves_at_gamma_one_where_ntk_gram_is_frozen(activation):
    x, y, xe = data()
    problem = Problem(x, y, STEPS, [0, 10, STEPS], x_eval=xe)
    s = MeanFieldScales(1.0, 1.0, 0.5, gain_of(activation))
    lim = mup_limit(problem, s, activation, particles=2**12, replicas=2)
    ntk = ntk_limit(problem, s, activation)
    assert torch.equal(ntk.gram_change, torch.zeros(3, dtype=torch.float64))
    assert lim.gram_change[0] == 0 and lim.gram_change[-1] > 0.05
    if lim.error:
        assert lim.gram_change[-1] > 10 * lim.error["gram_change"][-1]
    assert lim.alignment[-1] > ntk.alignment[-1]  # the kernel aligns with the target


def test_full_batch_ntk_limit_converges_to_kernel_regression():
    x, y, xe = data()
    s = MeanFieldScales(1.0, 1.0, 0.5, 1.0)
    ntk = ntk_limit(Problem(x, y, 20000, [20000], x_eval=xe), s, "erf")
    phi, dk = feature_kernels(torch.cat([x, xe]), x, "erf", 1.0)
    k = phi + 0.5 * dk
    expected = k[N_TRAIN:] @ torch.linalg.solve(k[:N_TRAIN], y)
    assert torch.allclose(ntk.eval[-1], expected, atol=1e-6)


def test_kernels_closed_forms_quadrature_and_monte_carlo():
    x, _, xe = data()
    gain = 1.0
    # erf: Gauss–Hermite quadrature (the tanh path) against the analytic (Williams) kernel
    n1, n2 = gain**2 * (x**2).sum(1) / D, gain**2 * (xe**2).sum(1) / D
    k12 = gain**2 * x @ xe.T / D
    e_phi, e_dphi = _gauss_expectations(n1[:, None].expand(-1, 8), n2[None].expand(N_TRAIN, -1),
                                        k12, "erf")
    phi, dk = feature_kernels(x, xe, "erf", gain)
    assert torch.allclose(e_phi, phi, atol=1e-7)
    assert torch.allclose(gain**2 * e_dphi * (x @ xe.T) / D, dk, atol=1e-7)
    # tanh quadrature and linear closed form against 2^20 Monte-Carlo features
    w = torch.randn(2**20, D, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    h1, h2 = gain / D**0.5 * x[:4] @ w.T, gain / D**0.5 * xe[:4] @ w.T
    for act, f, df in (("tanh", torch.tanh, lambda t: 1 - torch.tanh(t) ** 2),
                       ("linear", lambda t: t, torch.ones_like)):
        phi, dk = feature_kernels(x[:4], xe[:4], act, gain)
        mc_phi = f(h1) @ f(h2).T / len(w)
        mc_d = df(h1) @ df(h2).T / len(w) * (gain**2 * x[:4] @ xe[:4].T / D)
        assert torch.allclose(phi, mc_phi, atol=5e-3) and torch.allclose(dk, mc_d, atol=5e-3)


def test_bad_inputs_are_one_line_errors():
    from tangentlens.config import RunConfig
    from tangentlens.limits import scales_for

    x, y, _ = data()
    with pytest.raises(ValueError, match="the limits support: linear, relu, tanh, erf"):
        ntk_limit(Problem(x, y, 1, [1]), MeanFieldScales(1, 1, 1, 1), "gelu")
    for model, match in (({"depth": 2}, "model.depth=2"), ({"kind": "cnn"}, "model.kind='cnn'"),
                         ({"kind": "transformer"}, "model.kind='transformer'"),
                         ({"parametrization": "sp"}, "model.parametrization='sp'")):
        cfg = RunConfig.from_dict({"model": {"depth": 1, "bias": False, "parametrization": "mup", **model}})
        with pytest.raises(ValueError, match=match) as info:
            scales_for(cfg, D)
        assert "\n" not in str(info.value) and "1-hidden-layer MLP" in str(info.value) or match.startswith("model.param")
