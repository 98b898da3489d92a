"""The linearized model against explicit Jacobians and finite differences (float64)."""

from types import SimpleNamespace as NS

import pytest
import torch
from torch.func import functional_call, jacrev

from tangentlens.linearized import linearize
from tangentlens.models import build_model

CASES = {
    "mlp": (NS(kind="mlp", width=16, depth=2, activation="tanh", parametrization="ntk"), (5,), 3),
    "cnn": (NS(kind="cnn", width=4, depth=2, activation="gelu", parametrization="mup"), (1, 6, 6), 3),
    "transformer": (NS(kind="transformer", n_layers=1, d_model=16, n_heads=2, d_mlp=32,
                       act_fn="gelu", d_vocab=7, parametrization="sp"), (3,), 5),
}


def make(kind, seed=0):
    cfg, shape, n_out = CASES[kind]
    model = build_model(cfg, shape, n_out, seed=seed).double()
    g = torch.Generator().manual_seed(1)
    if kind == "transformer":
        x = torch.randint(0, 7, (4, 3), generator=g)
    else:
        x = torch.randn(4, *shape, generator=g, dtype=torch.float64)
    return model, x


def random_delta(model, scale, seed=2):
    g = torch.Generator().manual_seed(seed)
    return {n: scale * torch.randn(p.shape, generator=g, dtype=p.dtype) for n, p in model.named_parameters()}


def shifted(model, delta, eps):
    return {n: p.detach() + eps * delta[n] for n, p in model.named_parameters()}


@pytest.mark.parametrize("kind", list(CASES))
def test_output_equals_explicit_jacobian(kind):
    model, x = make(kind)
    theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    delta = random_delta(model, 0.1)
    jac = jacrev(lambda p: functional_call(model, p, (x,)))(theta0)  # explicit J, per parameter
    f0 = functional_call(model, theta0, (x,))
    jd = sum((jac[n].reshape(*f0.shape, -1) @ delta[n].reshape(-1)) for n in theta0)
    lin = linearize(model)
    with torch.no_grad():
        for n, p in lin.model.named_parameters():
            p.add_(delta[n])
        out = lin(x)
    expected = f0 + jd
    assert torch.linalg.norm(out - expected) / torch.linalg.norm(expected) < 1e-10
    # the trainable θ moved but θ0 did not
    assert all(torch.equal(lin.params0()[n], theta0[n]) for n in theta0)


@pytest.mark.parametrize("kind", list(CASES))
def test_tangent_view_is_first_order_and_network_view_is_forward(kind):
    model, x = make(kind)
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    delta = random_delta(model, 1.0)
    hooks = model.hook_names
    _, cache0 = model.run_with_cache(x, names_filter=hooks)
    errors = {}
    for eps in (2e-3, 1e-3):
        lin = linearize(build_model(*CASES[kind], seed=0).double(), base)
        with torch.no_grad():
            for n, p in lin.model.named_parameters():
                p.add_(eps * delta[n])
        _, tan = lin.run_with_cache(x, view="tangent", names_filter=hooks)
        _, net = lin.run_with_cache(x, view="network", names_filter=hooks)
        ref = build_model(*CASES[kind], seed=0).double()
        with torch.no_grad():
            for n, p in ref.named_parameters():
                p.copy_(base[n] + eps * delta[n])
        minus = build_model(*CASES[kind], seed=0).double()
        with torch.no_grad():
            for n, p in minus.named_parameters():
                p.copy_(base[n] - eps * delta[n])
        _, plus_cache = ref.run_with_cache(x, names_filter=hooks)
        _, minus_cache = minus.run_with_cache(x, names_filter=hooks)
        for h in hooks:
            assert torch.equal(net[h], plus_cache[h]), h  # network view = plain forward at θ
            # masked attention scores are -inf in every view: compare the finite entries
            fin = lambda t: torch.nan_to_num(t, posinf=0.0, neginf=0.0)  # noqa: E731
            central = (fin(plus_cache[h]) - fin(minus_cache[h])) / 2  # = ε J_h Δ + O(ε³)
            first = fin(tan[h]) - fin(cache0[h])
            scale = central.norm() + 1e-300
            assert (first - central).norm() / scale < 1e-3, h
            errors.setdefault(h, []).append((fin(plus_cache[h]) - fin(tan[h])).norm().item())
    for h, (e1, e2) in errors.items():
        if e1 > 1e-12:  # remainder of a first-order expansion shrinks like ε²: halving ε → /4
            assert 3.0 < e1 / e2 < 5.0, (h, e1, e2)


def test_params0_any_checkpoint_and_gradients_match_jtg():
    model, x = make("mlp")
    trained = {n: p.detach() + 0.05 * torch.randn_like(p) for n, p in model.named_parameters()}
    lin = linearize(model, trained)
    assert all(torch.equal(p, trained[n]) for n, p in lin.model.named_parameters())
    y = torch.randn(4, 3, dtype=torch.float64)
    loss = ((lin(x) - y) ** 2).sum()
    loss.backward()
    # at θ = θ0 the linearized gradient equals the network's gradient J^T (2 (f - y))
    ref = build_model(*CASES["mlp"], seed=0).double()
    with torch.no_grad():
        for n, p in ref.named_parameters():
            p.copy_(trained[n])
    ((ref(x) - y) ** 2).sum().backward()
    for (n, p), (_, q) in zip(lin.model.named_parameters(), ref.named_parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-10, atol=1e-12), n


def test_bad_inputs():
    model, x = make("mlp")
    with pytest.raises(KeyError, match="missing"):
        linearize(model, {"layers.0.linear.weight": torch.zeros(16, 5)})
    lin = linearize(model)
    with pytest.raises(ValueError, match="tangent, network"):
        lin.run_with_cache(x, view="both")
    with pytest.raises(KeyError, match="layers.0.hook_pre"):
        lin.run_with_cache(x, names_filter=["layers.9.hook_post"])
