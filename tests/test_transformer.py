"""The transformer on HookedRootModule + HookPoint (TL 3.x and 4.x) against TL 3.x's
HookedTransformer: the same θ0 for a seed, parameters, hooks and activations."""

import importlib.metadata

import pytest
import torch

from tangentlens import linearize
from tangentlens.models import build_model
from tangentlens.models.transformer import ACTIVATIONS, NORMALIZATION_TYPES

TL_MAJOR = int(importlib.metadata.version("transformer-lens").split(".")[0])


def _cfg(**kw):
    from types import SimpleNamespace

    return SimpleNamespace(**{"kind": "transformer", "n_layers": 2, "d_model": 16, "n_heads": 2,
                              "d_mlp": 24, "d_vocab": 7, **kw})


@pytest.mark.skipif(TL_MAJOR >= 4, reason="HookedTransformer was removed in TransformerLens 4")
@pytest.mark.parametrize("norm,act", [(n, "relu") for n in NORMALIZATION_TYPES]
                         + [(None, a) for a in ACTIVATIONS if a != "relu"])
def test_matches_hooked_transformer(norm, act):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    model = build_model(_cfg(normalization_type=norm, act_fn=act), (3,), 5, seed=4)
    tl_cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=24,
                                     act_fn=act, normalization_type=norm, n_ctx=3, d_vocab=7,
                                     d_vocab_out=5, device="cpu", init_weights=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        ref = HookedTransformer(tl_cfg, move_to_device=False)
    ours, theirs = dict(model.named_parameters()), dict(ref.named_parameters())
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[n], theirs[n]) for n in ours)  # θ0 bit for bit
    tokens = torch.randint(0, 7, (6, 3), generator=torch.Generator().manual_seed(0))
    out, cache = model.run_with_cache(tokens)
    logits, ref_cache = ref.run_with_cache(tokens)
    assert torch.allclose(out, logits[:, -1], atol=1e-5)
    hooks = [h for h in model.hook_names if h != "hook_logits"]
    assert hooks == [h for h in ref_cache.keys()]
    for h in hooks:
        assert torch.allclose(cache[h], ref_cache[h], atol=1e-5), h


def test_hooks_and_linearization_on_this_transformer_lens():
    model = build_model(_cfg(normalization_type="LN"), (3,), 5, seed=0).double()
    tokens = torch.randint(0, 7, (4, 3), generator=torch.Generator().manual_seed(1))
    out, cache = model.run_with_cache(tokens)
    assert model.hook_names[0] == "hook_embed" and "blocks.1.attn.hook_pattern" in cache
    assert torch.allclose(cache["blocks.0.attn.hook_pattern"].sum(-1), torch.ones(4, 2, 3,
                                                                                  dtype=torch.double))
    assert torch.equal(cache["blocks.0.attn.hook_pattern"][..., 0, 1:], torch.zeros(4, 2, 2,
                                                                                   dtype=torch.double))
    lin = linearize(model)
    assert torch.allclose(lin(tokens), out)  # at θ0 the Taylor model is the network
    _, tangent = lin.run_with_cache(tokens, view="tangent", names_filter=["blocks.1.mlp.hook_post"])
    assert torch.allclose(tangent["blocks.1.mlp.hook_post"], cache["blocks.1.mlp.hook_post"])
