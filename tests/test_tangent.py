"""The structured engine against a straightforward torch.func jvp(functional_call), float64."""

from types import SimpleNamespace as NS

import pytest
import torch
from torch.func import functional_call, jvp

from tangentlens.config import RunConfig
from tangentlens.linearized import linearize
from tangentlens.models import ACTIVATIONS, build_model
from tangentlens.regimes import Trainer

CASES = {f"mlp-{a}": (NS(kind="mlp", width=12, depth=2, activation=a, parametrization="ntk"), (5,))
         for a in ACTIVATIONS}
CASES |= {
    "mlp-nobias-mup": (NS(kind="mlp", width=12, depth=3, activation="relu", bias=False,
                          parametrization="mup"), (2, 3)),
    "cnn2d-relu": (NS(kind="cnn", width=4, depth=2, activation="relu", parametrization="ntk"), (2, 6, 6)),
    "cnn1d-tanh": (NS(kind="cnn", width=3, depth=2, activation="tanh", kernel_size=5,
                      parametrization="mup"), (2, 9)),
}


def make(case, n=6, seed=1):
    cfg, shape = CASES[case]
    model = build_model(cfg, shape, 3, seed=0).double()
    x = torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return model, x


def moved(lin, scale=0.3, seed=2):
    """Move θ away from θ0 by a random Δθ (in place) and return Δθ."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in lin.model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return {n: d.detach() for n, d in lin.delta().items()}


def reference(model, theta0, delta, x, hooks=()):
    """f(θ0) + JΔθ and every hook's h(θ0) + J_hΔθ from one plain jvp(functional_call)."""
    mods = dict(model.named_modules())

    def f(params):
        acts = {}
        handles = [mods[h].register_forward_hook(lambda _m, _i, o, h=h: acts.__setitem__(h, o))
                   for h in hooks]
        out = functional_call(model, params, (x,))
        for handle in handles:
            handle.remove()
        return out, acts

    (out0, acts0), (dout, dacts) = jvp(f, (theta0,), (delta,))
    return out0 + dout, {h: acts0[h] + dacts[h] for h in hooks}


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("case", list(CASES))
def test_structured_outputs_and_tangent_views_equal_jvp(case):
    model, x = make(case)
    theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    lin = linearize(model, mode="structured")
    assert lin.engine == "structured"
    delta = moved(lin)
    out_ref, views_ref = reference(build_model(CASES[case][0], CASES[case][1], 3).double(),
                                   theta0, delta, x, model.hook_names)
    assert rel(lin(x), out_ref) < 1e-12
    out, cache = lin.run_with_cache(x, view="tangent")
    assert rel(out, out_ref) < 1e-12
    assert set(cache.keys()) == set(model.hook_names)
    for h in model.hook_names:
        assert rel(cache[h], views_ref[h]) < 1e-12, h


@pytest.mark.parametrize("case", ["mlp-relu", "mlp-gelu", "mlp-nobias-mup", "cnn2d-relu",
                                  "cnn1d-tanh"])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_structured_training_equals_jvp_training(case, optimizer):
    model, x = make(case, n=16)
    y = torch.randint(0, 3, (16,), generator=torch.Generator().manual_seed(3))
    cfg = RunConfig()
    cfg.train.optimizer, cfg.train.lr, cfg.train.momentum = optimizer, 0.05, 0.9
    cfg.train.weight_decay = 1e-3
    trainers = {}
    for mode in ("structured", "jvp"):
        trainers[mode] = Trainer("linearized", model, cfg)
        trainers[mode].module.mode = mode
    trainers["structured"].module.cache_primals(x)
    for step in range(5):
        idx = torch.randperm(16, generator=torch.Generator().manual_seed(step))[:8]
        losses = [t.step(x[idx], y[idx]) for t in trainers.values()]
        assert abs(losses[0] - losses[1]) <= 1e-12 * abs(losses[1])
    for (n, p), (_, q) in zip(*(t.module.model.named_parameters() for t in trainers.values())):
        assert not torch.equal(p, model.get_parameter(n)), n  # θ moved
        assert rel(p - model.get_parameter(n), q - model.get_parameter(n)) < 1e-10, n


def test_primal_cache_hits_misses_and_follows_theta0():
    model, x = make("mlp-tanh", n=40)
    lin = linearize(model)
    moved(lin)
    fresh = lin(x[[5, 0, 5, 39]]).detach()
    assert lin.cache_primals(x)
    _, cache = lin._cache
    assert cache.lookup(x[[5, 0, 5, 39]]) is not None
    assert rel(lin(x[[5, 0, 5, 39]]), fresh) < 1e-14
    ref = linearize(make("mlp-tanh")[0], mode="jvp")
    ref.load_state_dict(lin.state_dict())
    other = x[:3].clone()
    other[1, 2] += 1e-9  # not a row of the cached set: computed afresh
    assert cache.lookup(other) is None
    assert rel(lin(other), ref(other)) < 1e-12
    # a new θ0 (load_state_dict into the buffers) rebuilds the cache
    state = lin.state_dict()
    state["theta0.readout__weight"] = state["theta0.readout__weight"] + 1.0
    lin.load_state_dict(state)
    ref.load_state_dict(state)
    assert rel(lin(x[:7]), ref(x[:7])) < 1e-12
    with torch.no_grad():  # so does an in-place change of the cached inputs
        x[3] += 1.0
    assert rel(lin(x[2:5]), ref(x[2:5])) < 1e-12
    assert not lin.cache_primals(x, max_bytes=100)


def test_engine_choice_and_fallbacks():
    transformer = build_model(NS(kind="transformer", n_layers=1, d_model=8, n_heads=2, d_mlp=16,
                                 d_vocab=5), (3,), 5)
    assert linearize(transformer).engine == "jvp"
    assert not linearize(transformer).cache_primals(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"mode='structured' needs .* \(got TransformerClassifier\)"):
        linearize(transformer, mode="structured")
    with pytest.raises(ValueError, match="mode='fast'; valid: auto, jvp, structured"):
        linearize(transformer, mode="fast")
    model, x = make("cnn2d-relu")

    class Shifted(type(model)):
        def forward(self, x):
            return super().forward(x) + 1.0

    sub = make("cnn2d-relu")[0]
    sub.__class__ = Shifted
    assert linearize(sub).engine == "jvp"
    lin = linearize(model)
    assert lin.engine == "structured"
    handle = model.layers[0].hook_post.register_forward_hook(lambda _m, _i, o: 2 * o)
    assert lin.engine == "jvp"  # hooks run only in the jvp engine
    theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    delta = moved(lin)
    assert rel(lin(x), reference(model, theta0, delta, x)[0]) < 1e-12
    lin.mode = "structured"
    with pytest.raises(RuntimeError, match="forward hooks"):
        lin(x)
    handle.remove()
    assert lin.engine == "structured"
