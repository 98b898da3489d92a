"""Empirical NTK implementations and kernel regression vs explicit Jacobians (float64)."""

from __future__ import annotations

from functools import cache
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev

from tangentlens.models import build_model
from tangentlens.models.layers import ScaledConv, ScaledLinear
from tangentlens.ntk import IMPLEMENTATIONS, MODES, empirical_ntk, kernel_regression
from tangentlens.ntk.empirical import pair_flops
from tangentlens.ntk.structured import linear_layers

O = 3


def _linear(gen: torch.Generator, fan_in: int, fan_out: int, bias: bool = True) -> ScaledLinear:
    layer = ScaledLinear(fan_in, fan_out, bias=bias, weight_mult=fan_in**-0.5, weight_std=1.0,
                         bias_mult=0.7, lr_scale={})
    layer.reset_parameters(gen)
    if bias:
        layer.bias.data.normal_(generator=gen)
    return layer


def _conv(gen: torch.Generator, c_in: int, c_out: int) -> ScaledConv:
    layer = ScaledConv(2, c_in, c_out, 3, padding=1, bias=True, weight_mult=(9 * c_in) ** -0.5,
                       weight_std=1.0, bias_mult=0.5, lr_scale={})
    layer.reset_parameters(gen)
    layer.bias.data.normal_(generator=gen)
    return layer


class Reuse(nn.Module):
    """A linear layer called twice, one on a 3-D input, and a structured readout."""

    def __init__(self, gen: torch.Generator):
        super().__init__()
        self.shared, self.tokens = _linear(gen, 4, 4), _linear(gen, 2, 5)
        self.mix, self.readout = _linear(gen, 9, 6), _linear(gen, 6, O)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.shared(torch.tanh(self.shared(x))))
        t = torch.tanh(self.tokens(x.view(len(x), 2, 2))).mean(1)
        return self.readout(torch.tanh(self.mix(torch.cat([h, t], 1))))


@cache
def _case(name: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    shape: tuple[int, ...] = (4,)
    if name in ("mlp_bias", "mlp_nobias"):
        bias = name == "mlp_bias"
        model = nn.Sequential(_linear(gen, 4, 16, bias), nn.Tanh(), _linear(gen, 16, 12, bias),
                              nn.GELU(), _linear(gen, 12, O, bias))
    elif name == "cnn":
        model, shape = nn.Sequential(_conv(gen, 1, 3), nn.Tanh(), _conv(gen, 3, 4), nn.Tanh(),
                                     nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                     _linear(gen, 4, O)), (1, 5, 5)
    elif name == "plain":
        model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.LayerNorm(8), nn.Linear(8, O))
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(generator=gen)
    elif name == "reuse":
        model = Reuse(gen)
    elif name == "build_transformer":
        cfg = SimpleNamespace(kind="transformer", d_vocab=5, d_model=8, n_heads=2, d_mlp=8)
        model = build_model(cfg, (3,), O, seed=1).double()
        return (model, torch.randint(0, 5, (5, 3), generator=gen),
                torch.randint(0, 5, (7, 3), generator=gen))
    else:
        kind, act = name.split("_")[1:]
        shape = (2, 3) if kind == "mlp" else (1, 6, 6)
        cfg = SimpleNamespace(kind=kind, width=6, depth=2, activation=act, parametrization="ntk")
        model = build_model(cfg, shape, O, seed=1)
    model = model.double()
    return (model, torch.randn(5, *shape, generator=gen, dtype=torch.float64),
            torch.randn(7, *shape, generator=gen, dtype=torch.float64))


CASES = ("mlp_bias", "mlp_nobias", "cnn", "plain", "reuse", "build_mlp_tanh", "build_cnn_relu",
         "build_transformer")


def _flat_fn(model: nn.Module, params: dict | None = None):
    """θ ↦ f(x; θ) on one flattened parameter vector; returns (fn, θ)."""
    params = params or {k: v.detach() for k, v in model.named_parameters()}
    names, shapes = list(params), [v.shape for v in params.values()]
    sizes = [v.numel() for v in params.values()]

    def f(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        split = dict(zip(names, (t.view(s) for t, s in zip(theta.split(sizes), shapes))))
        return functional_call(model, split, (x,))

    return f, torch.cat([v.flatten() for v in params.values()])


def _jac(model: nn.Module, x: torch.Tensor, params: dict | None = None) -> torch.Tensor:
    """Explicit Jacobian (n·O, P)."""
    f, theta = _flat_fn(model, params)
    return jacrev(f)(theta, x).reshape(-1, theta.numel())


def _reference(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor, mode: str,
               params: dict | None = None) -> torch.Tensor:
    j1, j2 = _jac(model, x1, params), _jac(model, x2, params)
    k = (j1 @ j2.T).view(len(x1), O, len(x2), O).permute(0, 2, 1, 3)
    return {"full": k, "diagonal": k.diagonal(dim1=2, dim2=3),
            "trace": k.diagonal(dim1=2, dim2=3).sum(-1)}[mode]


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-10) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    assert (a - b).abs().max() <= rtol * b.abs().max(), (a - b).abs().max() / b.abs().max()


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("name", CASES)
def test_matches_explicit_jacobian(name: str, implementation: str, symmetric: bool) -> None:
    model, x1, x2 = _case(name)
    for mode in MODES:
        k = empirical_ntk(model, x1, None if symmetric else x2, mode=mode,
                          implementation=implementation, block_size=2)
        _close(k, _reference(model, x1, x1 if symmetric else x2, mode))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_explicit_params(implementation: str) -> None:
    model, x1, x2 = _case("mlp_bias")
    params = {k: 1.3 * v.detach() + 0.1 for k, v in model.named_parameters()}
    k = empirical_ntk(model, x1, x2, params, implementation=implementation, block_size=3)
    _close(k, _reference(model, x1, x2, "full", params))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_without_feature_cache(implementation: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """x2 features larger than the output are recomputed per x1 block, same kernel."""
    monkeypatch.setattr("tangentlens.ntk.empirical.CACHE_FLOATS", 0)
    model, x1, x2 = _case("cnn")
    for sym in (False, True):
        k = empirical_ntk(model, x1, None if sym else x2, implementation=implementation,
                          block_size=2)
        _close(k, _reference(model, x1, x1 if sym else x2, "full"))


def test_structured_layer_selection() -> None:
    model, x1, _ = _case("reuse")
    params = dict(model.named_parameters())
    layers = linear_layers(model, params, x1)
    assert set(layers) == {"mix", "readout"} and layers["readout"].readout
    model, x1, _ = _case("build_mlp_tanh")
    assert set(linear_layers(model, dict(model.named_parameters()), x1)) == {
        "layers.0.linear", "layers.1.linear", "readout"}


def test_auto_choice() -> None:
    model, x1, _ = _case("build_mlp_tanh")
    flops = pair_flops(model, dict(model.named_parameters()), x1, "full", O)
    assert min(flops, key=flops.get) == "structured"
    convs = nn.Sequential(_conv(torch.Generator(), 1, 4), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    flops = pair_flops(convs, dict(convs.named_parameters()), torch.ones(1, 1, 8, 8), "full", 4)
    assert min(flops, key=flops.get) == "jacobian"


def test_bad_arguments() -> None:
    model, x1, _ = _case("mlp_bias")
    with pytest.raises(ValueError, match="mode='fool'.*full, trace, diagonal"):
        empirical_ntk(model, x1, mode="fool")
    with pytest.raises(ValueError, match="implementation='fast'.*jacobian"):
        empirical_ntk(model, x1, implementation="fast")
    with pytest.raises(ValueError, match=r"shape \(n, O\)"):
        empirical_ntk(nn.Flatten(0), x1)
    with pytest.raises(ValueError, match="block_size"):
        empirical_ntk(model, x1, block_size=0)


def _gd_reference(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor,
                  ridge: float) -> np.ndarray:
    """Full-batch GD on ½‖f0 + JΔ − Y‖² + ridge/2·‖Δ‖² from Δ = 0; f_lin(x_test) at the end."""
    j, jt = _jac(model, x).numpy(), _jac(model, x_test).numpy()
    with torch.no_grad():
        r, f0t = (y - model(x)).numpy().ravel(), model(x_test).numpy()
    lr = 1.0 / (np.linalg.eigvalsh(j @ j.T)[-1] + ridge)
    delta = np.zeros(j.shape[1])
    for _ in range(200_000):
        grad = j.T @ (j @ delta - r) + ridge * delta
        delta -= lr * grad
        if np.linalg.norm(grad) < 1e-12:
            break
    return f0t + (jt @ delta).reshape(f0t.shape)


@pytest.mark.parametrize("ridge", [0.0, 0.05])
def test_kernel_regression_matches_gradient_descent(ridge: float) -> None:
    model, x, x_test = _case("mlp_bias")
    y = torch.randn(len(x), O, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    reg = kernel_regression(model, x, y, ridge=ridge, block_size=2)
    pred = reg.predict(x_test)
    np.testing.assert_allclose(pred.numpy(), _gd_reference(model, x, y, x_test, ridge), atol=1e-4)
    if ridge == 0:
        _close(reg.predict(x), y, 1e-8)
    delta = reg.delta_params()
    assert {k: v.shape for k, v in delta.items()} == {
        k: v.shape for k, v in model.named_parameters()}
    flat = torch.cat([delta[k].flatten() for k, _ in model.named_parameters()])
    with torch.no_grad():
        f_lin = model(x_test) + (_jac(model, x_test) @ flat).view(len(x_test), O)
    _close(f_lin, pred, 1e-9)


@pytest.mark.parametrize("implementation", ["jacobian", "ntk_vp", "structured"])
def test_kernel_regression_implementations_agree(implementation: str) -> None:
    model, x, x_test = _case("cnn")
    y = torch.randn(len(x), O, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ref = kernel_regression(model, x, y, ridge=1e-3, implementation="jacobian")
    reg = kernel_regression(model, x, y, ridge=1e-3, implementation=implementation, block_size=3)
    _close(reg.alpha, ref.alpha, 1e-8)
    _close(reg.predict(x_test), ref.predict(x_test), 1e-8)


def test_kernel_regression_errors() -> None:
    model, x, _ = _case("mlp_bias")
    y = torch.zeros(len(x), O, dtype=torch.float64)
    xx = torch.cat([x, x[:2]])
    yy = torch.randn(len(xx), O, dtype=torch.float64)
    # singular K (duplicated inputs): the gradient-flow limit, i.e. the least-squares fit —
    # distinct points interpolated, each duplicated point predicts the mean of its targets
    pred = kernel_regression(model, xx, yy).predict(xx)
    n = len(x)
    expected = yy.clone()
    expected[:2] = expected[n:] = (yy[:2] + yy[n:]) / 2
    _close(pred, expected, 1e-6)
    kernel_regression(model, xx, yy, ridge=1e-6)
    with pytest.raises(ValueError, match="y_train shape"):
        kernel_regression(model, x, y[:, 0])
    with pytest.raises(ValueError, match="ridge=-1"):
        kernel_regression(model, x, y, ridge=-1)
