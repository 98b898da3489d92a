"""Hooked transformer classifier on TransformerLens's ``HookedRootModule`` + ``HookPoint``.

TransformerLens 4 removed ``HookedTransformer`` but kept ``HookedRootModule``/``HookPoint``
(its supported way to hook any module), so this attention-only-standard transformer is
written here on those two, for TL 3.x and 4.x alike. It reproduces the HookedTransformer
it replaces: the same parameter names and shapes (``embed.W_E``, ``blocks.0.attn.W_Q``,
...), hook names (``hook_embed``, ``blocks.0.attn.hook_pattern``, ``blocks.0.mlp.hook_post``,
...), computation (causal attention, LN/LNPre/RMS/RMSPre with TL's hook placement) and
GPT-2 init N(0, (0.8/√d_model)²) in TL's parameter order, so θ0 for a seed is TL 3.9's
(tests/test_transformer.py checks both against HookedTransformer where TL 3.x is installed).
``hook_logits`` is the output: logits at the last position, (n, n_outputs). Only the
``sp`` parametrization (lr scale 1) is implemented.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from .options import cfg_get

NORMALIZATION_TYPES = (None, "LN", "LNPre", "RMS", "RMSPre")
EPS = 1e-5


def _gelu_new(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def _gelu_fast(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "gelu_new": _gelu_new,
               "gelu_fast": _gelu_fast}


class Norm(nn.Module):
    """TL's LayerNorm (LN), LayerNormPre (LNPre), RMSNorm (RMS), RMSNormPre (RMSPre)."""

    def __init__(self, kind: str, d: int):
        super().__init__()
        self.kind = kind
        if kind in ("LN", "RMS"):
            self.w = nn.Parameter(torch.ones(d))
        if kind == "LN":
            self.b = nn.Parameter(torch.zeros(d))
        self.hook_scale, self.hook_normalized = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind.startswith("LN"):
            x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + EPS).sqrt())
        x = self.hook_normalized(x / scale)
        if self.kind == "LN":
            return x * self.w + self.b
        return x * self.w if self.kind == "RMS" else x


class Attention(nn.Module):
    """Causal multi-head attention with TL's parameters, hooks and order."""

    def __init__(self, d_model: int, n_heads: int, d_head: int, n_ctx: int):
        super().__init__()
        empty = lambda *s: nn.Parameter(torch.empty(*s))  # noqa: E731
        zeros = lambda *s: nn.Parameter(torch.zeros(*s))  # noqa: E731
        self.W_Q, self.W_O = empty(n_heads, d_model, d_head), empty(n_heads, d_head, d_model)
        self.b_Q, self.b_O = zeros(n_heads, d_head), zeros(d_model)
        self.W_K, self.W_V = empty(n_heads, d_model, d_head), empty(n_heads, d_model, d_head)
        self.b_K, self.b_V = zeros(n_heads, d_head), zeros(n_heads, d_head)
        self.register_buffer("mask", torch.tril(torch.ones(n_ctx, n_ctx, dtype=torch.bool)),
                             persistent=False)
        self.attn_scale = math.sqrt(d_head)
        for name in ("k", "q", "v", "z", "attn_scores", "pattern"):
            setattr(self, f"hook_{name}", HookPoint())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.hook_q(torch.einsum("bpd,hde->bphe", x, self.W_Q) + self.b_Q)
        k = self.hook_k(torch.einsum("bpd,hde->bphe", x, self.W_K) + self.b_K)
        v = self.hook_v(torch.einsum("bpd,hde->bphe", x, self.W_V) + self.b_V)
        scores = q.permute(0, 2, 1, 3) @ k.permute(0, 2, 3, 1) / self.attn_scale
        n = x.shape[1]
        scores = self.hook_attn_scores(torch.where(self.mask[:n, :n], scores, -torch.inf))
        pattern = self.hook_pattern(F.softmax(scores, dim=-1))
        z = self.hook_z((pattern @ v.permute(0, 2, 1, 3)).permute(0, 2, 1, 3))
        w = self.W_O.reshape(-1, self.W_O.shape[-1]).T  # (d_model, heads · d_head)
        return F.linear(z.reshape(*z.shape[:2], -1), w, self.b_O)


class MLP(nn.Module):
    def __init__(self, d_model: int, d_mlp: int, act_fn: str):
        super().__init__()
        self.W_in, self.b_in = nn.Parameter(torch.empty(d_model, d_mlp)), nn.Parameter(torch.zeros(d_mlp))
        self.W_out = nn.Parameter(torch.empty(d_mlp, d_model))
        self.b_out = nn.Parameter(torch.zeros(d_model))
        self.act = ACTIVATIONS[act_fn]
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        post = self.hook_post(self.act(self.hook_pre(x @ self.W_in + self.b_in)))
        return post @ self.W_out + self.b_out


class Block(nn.Module):
    def __init__(self, s: SimpleNamespace):
        super().__init__()
        norm = s.normalization_type
        self.ln1 = Norm(norm, s.d_model) if norm else nn.Identity()
        self.ln2 = Norm(norm, s.d_model) if norm else nn.Identity()
        self.attn = Attention(s.d_model, s.n_heads, s.d_head, s.n_ctx)
        self.mlp = MLP(s.d_model, s.d_mlp, s.act_fn)
        for name in ("attn_out", "mlp_out", "resid_pre", "resid_mid", "resid_post"):
            setattr(self, f"hook_{name}", HookPoint())

    def forward(self, resid: torch.Tensor) -> torch.Tensor:
        resid = self.hook_resid_pre(resid)
        resid = self.hook_resid_mid(resid + self.hook_attn_out(self.attn(self.ln1(resid))))
        return self.hook_resid_post(resid + self.hook_mlp_out(self.mlp(self.ln2(resid))))


class Unembed(nn.Module):
    def __init__(self, d_model: int, d_out: int):
        super().__init__()
        self.W_U, self.b_U = nn.Parameter(torch.empty(d_model, d_out)), nn.Parameter(torch.zeros(d_out))
        self.hook_in, self.hook_out = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hook_out(F.linear(self.hook_in(x), self.W_U.T, self.b_U))


class TransformerClassifier(HookedRootModule):
    """Tokens (n, n_ctx) → last-position logits (n, n_outputs); ``cfg`` holds the sizes."""

    def __init__(self, summary: dict[str, Any]):
        super().__init__()
        s = self.cfg = SimpleNamespace(**summary, d_vocab_out=summary["n_outputs"])
        self.embed = nn.Module()
        self.embed.W_E = nn.Parameter(torch.empty(s.d_vocab, s.d_model))
        self.hook_embed = HookPoint()
        self.pos_embed = nn.Module()
        self.pos_embed.W_pos = nn.Parameter(torch.empty(s.n_ctx, s.d_model))
        self.hook_pos_embed = HookPoint()
        self.blocks = nn.ModuleList(Block(s) for _ in range(s.n_layers))
        if s.normalization_type:
            self.ln_final = Norm(s.normalization_type, s.d_model)
        self.unembed = Unembed(s.d_model, s.n_outputs)
        self.hook_logits = HookPoint()
        std = 0.8 / math.sqrt(s.d_model)  # TL's GPT-2 init, in its parameter order
        with torch.no_grad():
            for name, p in self.named_parameters():
                if "W_" in name:
                    p.normal_(0.0, std)
        self.setup()
        self.parametrization = "sp"
        self._summary = summary
        with torch.no_grad():
            _, cache = self.run_with_cache(torch.zeros(1, s.n_ctx, dtype=torch.long))
        self.hook_names: list[str] = list(cache)  # hooks that fire, in forward order

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n = tokens.shape[-1]
        resid = self.hook_embed(self.embed.W_E[tokens]) + self.hook_pos_embed(
            self.pos_embed.W_pos[:n].expand(len(tokens), n, -1))
        for block in self.blocks:
            resid = block(resid)
        if hasattr(self, "ln_final"):
            resid = self.ln_final(resid)
        return self.hook_logits(self.unembed(resid)[:, -1, :])

    def config_summary(self) -> dict[str, Any]:
        return {**self._summary, "n_params": sum(p.numel() for p in self.parameters())}


def build_transformer(cfg: Any, input_shape: tuple[int, ...], n_outputs: int,
                      seed: int) -> TransformerClassifier:
    """TransformerClassifier from a ModelConfig-like object; θ0 from ``seed``."""
    parametrization = cfg_get(cfg, "parametrization", "sp")
    if parametrization != "sp":
        raise ValueError(f"model.parametrization={parametrization!r} for a transformer; valid: "
                         "sp (abc parametrizations are implemented for mlp and cnn)")
    act_fn = cfg_get(cfg, "act_fn", "relu")
    if act_fn not in ACTIVATIONS:
        raise ValueError(f"model.act_fn={act_fn!r}; valid: {', '.join(ACTIVATIONS)}")
    normalization_type = getattr(cfg, "normalization_type", None)
    if normalization_type not in NORMALIZATION_TYPES:
        raise ValueError(f"model.normalization_type={normalization_type!r}; valid: "
                         f"{', '.join(map(str, NORMALIZATION_TYPES))}")
    d_vocab = getattr(cfg, "d_vocab", None)
    if d_vocab is None:
        raise ValueError("model.d_vocab is None; a transformer needs the vocabulary size")
    d_model, n_heads = int(cfg_get(cfg, "d_model", 128)), int(cfg_get(cfg, "n_heads", 4))
    summary = {
        "kind": "transformer", "input_shape": list(input_shape), "n_outputs": n_outputs,
        "n_layers": int(cfg_get(cfg, "n_layers", 1)), "d_model": d_model, "n_heads": n_heads,
        "d_head": int(cfg_get(cfg, "d_head", d_model // n_heads)),
        "d_mlp": int(cfg_get(cfg, "d_mlp", 4 * d_model)), "act_fn": act_fn,
        "normalization_type": normalization_type,
        "n_ctx": int(cfg_get(cfg, "n_ctx", input_shape[-1])), "d_vocab": int(d_vocab),
        "parametrization": "sp", "seed": seed,
    }
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return TransformerClassifier(summary)
