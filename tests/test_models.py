"""tangentlens.models: hooks, shapes, determinism, param groups, dtypes, config errors."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from tangentlens.models import build_model, param_groups


def cfg(**kw) -> SimpleNamespace:
    return SimpleNamespace(**kw)


def tokens(n: int, n_ctx: int, d_vocab: int) -> torch.Tensor:
    return torch.randint(0, d_vocab, (n, n_ctx), generator=torch.Generator().manual_seed(0))


def inputs(shape: tuple[int, ...], n: int = 5) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(0))


TRANSFORMER = dict(kind="transformer", d_model=32, n_heads=4, d_vocab=13)
CASES = [  # (config, input_shape)
    (dict(kind="mlp", width=16, depth=2), (1, 8, 8)),
    (dict(kind="cnn", width=8, depth=2), (1, 40)),
    (dict(kind="cnn", width=8, depth=1, activation="tanh"), (3, 8, 8)),
    (TRANSFORMER, (3,)),
]


def example(kw: dict, shape: tuple[int, ...], n: int = 5) -> torch.Tensor:
    return tokens(n, shape[0], kw["d_vocab"]) if kw["kind"] == "transformer" else inputs(shape, n)


@pytest.mark.parametrize("depth", [1, 2, 4])
@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu", "erf", "linear"])
def test_mlp_hooks(depth, activation):
    model = build_model(cfg(kind="mlp", width=16, depth=depth, activation=activation),
                        (1, 8, 8), 10)
    out, cache = model.run_with_cache(inputs((1, 8, 8)))
    names = [f"layers.{i}.hook_{s}" for i in range(depth) for s in ("pre", "post")]
    assert model.hook_names == list(cache) == names + ["hook_logits"]
    assert out.shape == (5, 10) and torch.equal(cache["hook_logits"], out)
    assert all(cache[name].shape == (5, 16) for name in names)


@pytest.mark.parametrize("shape", [(1, 40), (1, 8, 8), (3, 32, 32)])
def test_cnn_hooks(shape):
    model = build_model(cfg(kind="cnn", width=6, depth=2, kernel_size=5), shape, 10)
    out, cache = model.run_with_cache(inputs(shape, 3))
    assert model.hook_names == list(cache) == [
        "layers.0.hook_pre", "layers.0.hook_post", "layers.1.hook_pre", "layers.1.hook_post",
        "hook_pooled", "hook_logits"]
    assert cache["layers.1.hook_post"].shape == (3, 6, *shape[1:])
    assert cache["hook_pooled"].shape == (3, 6) and out.shape == (3, 10)


def test_transformer_hooks():
    model = build_model(cfg(**TRANSFORMER, n_layers=2), (3,), 11, seed=1)
    out, cache = model.run_with_cache(tokens(5, 3, 13))
    assert out.shape == (5, 11) and torch.equal(cache["hook_logits"], out)
    assert model.hook_names == list(cache.keys())
    assert model.hook_names[0] == "hook_embed" and model.hook_names[-1] == "hook_logits"
    assert cache["blocks.1.attn.hook_pattern"].shape == (5, 4, 3, 3)
    assert cache["blocks.0.mlp.hook_post"].shape == (5, 3, 128)
    assert cache["hook_embed"].shape == (5, 3, 32)
    assert model.config_summary()["d_head"] == 8 and model.parametrization == "sp"


@pytest.mark.parametrize("kw,shape", CASES)
def test_determinism_and_global_rng(kw, shape):
    state = torch.get_rng_state()
    a, b, c = (build_model(cfg(**kw), shape, 7, seed=s) for s in (3, 3, 4))
    assert torch.equal(state, torch.get_rng_state())
    params = [dict(m.named_parameters()) for m in (a, b, c)]
    assert all(torch.equal(params[0][k], params[1][k]) for k in params[0])
    assert any(not torch.equal(params[0][k], params[2][k]) for k in params[0])


@pytest.mark.parametrize("kw,shape", CASES)
def test_float64(kw, shape):
    model = build_model(cfg(**kw), shape, 7).to(torch.float64)
    x = example(kw, shape)
    out, cache = model.run_with_cache(x if kw["kind"] == "transformer" else x.double())
    assert out.dtype == torch.float64
    assert all(v.dtype == torch.float64 for v in cache.values() if v.is_floating_point())


def test_param_groups_mlp():
    model = build_model(cfg(kind="mlp", width=256, depth=2, parametrization="mup"), (8,), 3)
    (sgd,) = param_groups(model, 0.1, "sgd")  # mup: c = 0 everywhere for SGD
    assert sgd["lr"] == 0.1 and sgd["names"] == [n for n, _ in model.named_parameters()]
    adam = {g["lr"]: g["names"] for g in param_groups(model, 0.1, "adam")}  # m = 4
    assert adam == {0.05: ["layers.0.linear.weight", "layers.0.linear.bias",
                           "layers.1.linear.bias", "readout.weight"],
                    0.025: ["layers.1.linear.weight"], 0.1: ["readout.bias"]}
    mf = param_groups(build_model(cfg(kind="mlp", width=256, parametrization="mf"), (8,), 3),
                      0.1, "adamw")
    assert {g["lr"]: len(g["params"]) for g in mf} == {0.1: 5, 0.05: 1}
    mf_sgd = {g["lr"]: g["names"] for g in param_groups(
        build_model(cfg(kind="cnn", width=256, depth=1, parametrization="mf"), (1, 8), 3), 0.1)}
    assert mf_sgd == {0.4: ["layers.0.conv.weight", "layers.0.conv.bias", "readout.weight"],
                      0.1: ["readout.bias"]}
    torch.optim.SGD(param_groups(model, 0.1))  # accepted by torch


def test_param_groups_transformer():
    model = build_model(cfg(**TRANSFORMER), (3,), 5)
    (group,) = param_groups(model, 0.01, "adam")
    assert group["lr"] == 0.01 and len(group["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize("kw,shape,match", [
    (dict(kind="rnn"), (4,), "model.kind='rnn'; valid: mlp, cnn, transformer"),
    (dict(kind="mlp", activation="swish"), (4,), "'swish'; valid: relu, tanh"),
    (dict(kind="mlp", parametrization="xyz"), (4,), "'xyz'; valid: sp, ntk, mup, mf"),
    (dict(kind="mlp", width=0), (4,), "model.width=0"),
    (dict(kind="cnn"), (4,), r"\(C, L\) or \(C, H, W\)"),
    (dict(kind="cnn", kernel_size=4), (1, 8), "kernel_size=4"),
    (dict(TRANSFORMER, parametrization="mup"), (3,), "implemented for mlp and cnn"),
    (dict(TRANSFORMER, act_fn="tanh"), (3,), "act_fn='tanh'; valid: .*relu"),
    (dict(TRANSFORMER, normalization_type="BN"), (3,), "'BN'; valid: None, LN"),
    (dict(TRANSFORMER, d_vocab=None), (3,), "d_vocab"),
])
def test_bad_config(kw, shape, match):
    with pytest.raises(ValueError, match=match):
        build_model(cfg(**kw), shape, 3)


def test_bad_optimizer():
    with pytest.raises(ValueError, match="optimizer='lbfgs'; valid: sgd, adam, adamw"):
        param_groups(build_model(cfg(kind="mlp"), (4,), 3), 0.1, "lbfgs")


def test_config_summary_and_defaults():
    summary = build_model(cfg(kind="mlp"), (1, 2, 2), 3, seed=5).config_summary()
    assert summary["width"] == 256 and summary["depth"] == 2 and summary["seed"] == 5
    assert summary["gain"] == pytest.approx(2**0.5) and summary["parametrization"] == "sp"
    assert summary["n_params"] == 4 * 256 + 256 + 256 * 256 + 256 + 256 * 3 + 3


def test_import_is_lazy():
    code = "import sys, tangentlens.models; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
