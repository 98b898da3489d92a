"""Analytic infinite-width kernels vs Monte-Carlo averages over wide random networks.

Tolerance: each kernel entry must lie within 5 standard errors (seed-to-seed std / √seeds)
plus 2/width relative (the O(1/width) finite-width bias) of the analytic value, and the
standard errors must be below 5% of the largest entry. Width 512 runs by default, 2048 is slow.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tangentlens.models import build_model
from tangentlens.models.layers import ScaledLinear
from tangentlens.ntk import empirical_ntk, infinite_width_predict, nngp_kernel, ntk_kernel

D, SEEDS, OUTPUTS, NTK_OUTPUTS = 6, 24, 1024, 16
WIDTHS = [512, pytest.param(2048, marks=pytest.mark.slow)]


def _inputs() -> torch.Tensor:
    x = torch.randn(4, D, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return torch.cat([x, 2 * x[:1], -x[1:2]])  # cos = 1 and cos = -1 pairs included


class Erf(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.erf(x)


def _ntk_net(seed: int, width: int, activation: str, sigma_w: float,
             sigma_b: float) -> nn.Module:
    """Depth-2 NTK-parametrized MLP with N(0, 1) weights and biases."""
    gen, layers = torch.Generator().manual_seed(seed), []
    for fan_in, fan_out in ((D, width), (width, width), (width, OUTPUTS)):
        layer = ScaledLinear(fan_in, fan_out, bias=True, weight_mult=sigma_w / math.sqrt(fan_in),
                             weight_std=1.0, bias_mult=sigma_b, lr_scale={})
        layer.reset_parameters(gen)
        layer.bias.data.normal_(generator=gen)
        layers += [layer, nn.ReLU() if activation == "relu" else Erf()]
    return nn.Sequential(*layers[:-1]).double()


class Head(nn.Module):
    """The first NTK_OUTPUTS outputs of a model (the NTK needs fewer samples than the NNGP)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, :NTK_OUTPUTS]


def _monte_carlo(make) -> tuple[torch.Tensor, ...]:
    """Per-seed NNGP (output covariance averaged over outputs) and NTK (trace / O)."""
    x, nngp, ntk = _inputs(), [], []
    for seed in range(SEEDS):
        model = make(seed)
        with torch.no_grad():
            f = model(x)
        nngp.append(f @ f.T / OUTPUTS)
        ntk.append(empirical_ntk(Head(model), x, mode="trace", implementation="structured")
                   / NTK_OUTPUTS)
    return torch.stack(nngp), torch.stack(ntk)


def _assert_mc(samples: torch.Tensor, analytic: torch.Tensor, width: int) -> None:
    se = samples.std(0) / math.sqrt(len(samples))
    err = (samples.mean(0) - analytic).abs()
    assert (err <= 5 * se + 2 / width * analytic.abs()).all(), (err / se).max()
    assert (se <= 0.05 * analytic.abs().max()).all()  # the check has power


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize(("activation", "sigma_w", "sigma_b"), [("relu", 1.4, 0.3),
                                                                ("erf", 1.2, 0.4)])
def test_kernels_match_wide_networks(activation: str, sigma_w: float, sigma_b: float,
                                     width: int) -> None:
    nngp, ntk = _monte_carlo(lambda s: _ntk_net(s, width, activation, sigma_w, sigma_b))
    args = dict(depth=2, activation=activation, sigma_w=sigma_w, sigma_b=sigma_b)
    _assert_mc(nngp, nngp_kernel(_inputs(), **args), width)
    _assert_mc(ntk, ntk_kernel(_inputs(), **args), width)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_kernels_match_build_model(activation: str, width: int) -> None:
    """build_model's ntk MLP without biases: hidden gain g (√2 for relu), readout gain 1."""
    cfg = SimpleNamespace(kind="mlp", width=width, depth=2, activation=activation, bias=False,
                          parametrization="ntk", base_width=64)
    nngp, ntk = _monte_carlo(lambda s: build_model(cfg, (D,), OUTPUTS, seed=s).double())
    gain = math.sqrt(2) if activation == "relu" else 1.0
    args = dict(depth=2, activation=activation, sigma_w=gain, sigma_b=0.0)
    _assert_mc(nngp, nngp_kernel(_inputs(), **args) / gain**2, width)
    _assert_mc(ntk, ntk_kernel(_inputs(), **args) / gain**2, width)


def test_depth_zero_is_linear() -> None:
    x = _inputs()
    lin = 1.5**2 * x @ x.T / D + 0.2**2
    for fn in (nngp_kernel, ntk_kernel):
        torch.testing.assert_close(fn(x, depth=0, sigma_w=1.5, sigma_b=0.2), lin)
    torch.testing.assert_close(ntk_kernel(x[:2], x[2:], activation="erf"),
                               ntk_kernel(x, activation="erf")[:2, 2:])


@pytest.mark.parametrize("kernel", ["ntk", "nngp"])
def test_infinite_width_predict(kernel: str) -> None:
    x = _inputs()[:4]
    x_test = torch.randn(3, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.randn(4, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    fn = ntk_kernel if kernel == "ntk" else nngp_kernel
    torch.testing.assert_close(infinite_width_predict(x, y, x, kernel=kernel, depth=2), y)
    pred = infinite_width_predict(x, y, x_test, kernel=kernel, depth=2, ridge=0.1)
    expected = fn(x_test, x, depth=2) @ torch.linalg.solve(fn(x, depth=2) + 0.1 * torch.eye(4), y)
    torch.testing.assert_close(pred, expected)


def test_bad_arguments() -> None:
    x = _inputs()
    with pytest.raises(ValueError, match="activation='tanh'; valid: relu, erf"):
        ntk_kernel(x, activation="tanh")
    with pytest.raises(ValueError, match="kernel='gp'; valid: ntk, nngp"):
        infinite_width_predict(x, x, x, kernel="gp")
    with pytest.raises(ValueError, match="depth=-1"):
        nngp_kernel(x, depth=-1)
