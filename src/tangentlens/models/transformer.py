"""Hooked transformer classifier built on TransformerLens's ``HookedTransformer``.

``TransformerClassifier`` subclasses ``HookedTransformer`` (built locally, no download,
TL's default init) so every hook keeps its plain TL name (``hook_embed``,
``blocks.0.attn.hook_pattern``, ``blocks.0.mlp.hook_post``, ...); it adds ``hook_logits``
on the output: logits at the last position, (n, n_outputs), with ``d_vocab_out =
n_outputs``. Only the ``sp`` parametrization (TL's init, lr scale 1) is implemented.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.hook_points import HookPoint
from transformer_lens.utilities import SUPPORTED_ACTIVATIONS

from .options import cfg_get

NORMALIZATION_TYPES = (None, "LN", "LNPre", "RMS", "RMSPre")
# The one warning HookedTransformer.__init__ always emits (TL 3.x).
_DEPRECATION_MESSAGE = r"HookedTransformer is deprecated and will be removed in 4\.0"


class TransformerClassifier(HookedTransformer):
    """HookedTransformer whose forward maps tokens (n, n_ctx) to last-position logits."""

    def __init__(self, cfg: HookedTransformerConfig, summary: dict[str, Any]):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning,
                                    message=_DEPRECATION_MESSAGE)
            super().__init__(cfg, move_to_device=False)
        self.hook_logits = HookPoint()
        self.setup()
        self.parametrization = "sp"
        self._summary = summary
        with torch.no_grad():
            _, cache = self.run_with_cache(torch.zeros(1, cfg.n_ctx, dtype=torch.long),
                                           return_cache_object=False)
        self.hook_names: list[str] = list(cache)  # hooks that fire, in forward order

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        logits = super().forward(tokens, return_type="logits")
        return self.hook_logits(logits[:, -1, :])

    def to(self, *args: Any, **kwargs: Any) -> TransformerClassifier:  # type: ignore[override]
        """``nn.Module.to`` that keeps ``cfg.device``/``cfg.dtype`` in sync, silently."""
        device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        if device is not None:
            self.cfg.device = str(device)
        if dtype is not None:
            self.cfg.dtype = dtype
        return torch.nn.Module.to(self, *args, **kwargs)

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
    if act_fn not in SUPPORTED_ACTIVATIONS:
        raise ValueError(f"model.act_fn={act_fn!r}; valid: {', '.join(SUPPORTED_ACTIVATIONS)}")
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
    tl_cfg = HookedTransformerConfig(
        n_layers=summary["n_layers"], d_model=d_model, n_heads=n_heads,
        d_head=summary["d_head"], d_mlp=summary["d_mlp"], act_fn=act_fn,
        normalization_type=normalization_type, n_ctx=summary["n_ctx"],
        d_vocab=summary["d_vocab"], d_vocab_out=n_outputs, device="cpu", init_weights=True)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return TransformerClassifier(tl_cfg, summary)
