"""Hooked MLP: flatten → depth × [ScaledLinear → hook_pre → act → hook_post] → readout.

Also holds what the CNN shares with it: activations, the hooked block, the base class
(θ0 from a seed via one ``torch.Generator``) and the reading of the model config.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from .layers import ScaledConv, ScaledLinear
from .options import cfg_get
from .parametrization import LayerScale, layer_scale, with_gamma


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


_ACTIVATIONS = {"relu": F.relu, "tanh": torch.tanh, "gelu": F.gelu, "erf": torch.erf,
                "linear": _identity}


class Activation(nn.Module):
    """Elementwise nonlinearity by name (gelu is the exact, erf-based one)."""

    def __init__(self, name: str):
        super().__init__()
        self.activation, self.fn = name, _ACTIVATIONS[name]  # ``name`` is set by setup()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.activation


class Block(nn.Module):
    """``layer → hook_pre → activation → hook_post``; the layer is registered as ``name``."""

    def __init__(self, name: str, layer: nn.Module, activation: str):
        super().__init__()
        self.layer_name = name
        self.add_module(name, layer)
        self.hook_pre, self.act, self.hook_post = HookPoint(), Activation(activation), HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hook_post(self.act(self.hook_pre(getattr(self, self.layer_name)(x))))


def scaled_kwargs(scale: LayerScale) -> dict[str, Any]:
    """Keyword arguments of ScaledLinear/ScaledConv for one LayerScale."""
    return {"weight_mult": scale.weight_mult, "weight_std": scale.weight_std,
            "bias_mult": scale.bias_mult, "lr_scale": scale.lr_scale()}


def read_config(cfg: Any) -> dict[str, Any]:
    """The MLP/CNN settings of a ModelConfig-like object, with defaults, validated."""
    s = {"width": int(cfg_get(cfg, "width", 256)), "depth": int(cfg_get(cfg, "depth", 2)),
         "activation": cfg_get(cfg, "activation", "relu"), "bias": bool(cfg_get(cfg, "bias", True)),
         "parametrization": cfg_get(cfg, "parametrization", "sp"),
         "base_width": int(cfg_get(cfg, "base_width", 64)),
         "gamma": float(cfg_get(cfg, "gamma", 1.0))}
    for field in ("width", "depth", "base_width"):
        if s[field] < 1:
            raise ValueError(f"model.{field}={s[field]!r}; must be a positive integer")
    if not (s["gamma"] > 0 and math.isfinite(s["gamma"])):
        raise ValueError(f"model.gamma={s['gamma']!r}; must be a finite number > 0")
    s["gain"] = float(cfg_get(cfg, "gain", math.sqrt(2) if s["activation"] == "relu" else 1.0))
    return s


class ScaledNet(HookedRootModule):
    """Base of the MLP and CNN: every weight is in a ScaledLinear/ScaledConv."""

    def __init__(self, summary: dict[str, Any]):
        super().__init__()
        self.parametrization: str = summary["parametrization"]
        self._summary = summary

    def reset_parameters(self, seed: int) -> None:
        """θ0 from ``seed``, layers in module order; the global RNG is not used."""
        generator = torch.Generator().manual_seed(seed)
        self._summary["seed"] = seed
        for module in self.modules():
            if isinstance(module, ScaledLinear | ScaledConv):
                module.reset_parameters(generator)

    @property
    def hook_names(self) -> list[str]:
        return list(self.hook_dict)

    def config_summary(self) -> dict[str, Any]:
        n_params = sum(p.numel() for p in self.parameters())
        return {**self._summary, "n_params": n_params}


class MLP(ScaledNet):
    """Fully connected net on flattened inputs.

    Hooks: ``layers.{i}.hook_pre``, ``layers.{i}.hook_post``, ``hook_logits``.
    """

    def __init__(self, input_shape: tuple[int, ...], n_outputs: int, *, width: int, depth: int,
                 activation: str, bias: bool, parametrization: str, base_width: int,
                 gain: float, gamma: float = 1.0):
        super().__init__({"kind": "mlp", "input_shape": list(input_shape), "n_outputs": n_outputs,
                          "width": width, "depth": depth, "activation": activation, "bias": bias,
                          "parametrization": parametrization, "base_width": base_width,
                          "gain": gain, "gamma": gamma})
        d_in = math.prod(input_shape)
        sizes = dict(width=width, base_width=base_width)
        blocks = []
        for i in range(depth):
            kind, fan_in, fan_in_base = ("input", d_in, d_in) if i == 0 else (
                "hidden", width, base_width)
            scale = with_gamma(layer_scale(parametrization, kind, fan_in_base=fan_in_base,
                                           gain=gain, **sizes), gamma, output=False)
            linear = ScaledLinear(fan_in, width, bias=bias, **scaled_kwargs(scale))
            blocks.append(Block("linear", linear, activation))
        self.layers = nn.ModuleList(blocks)
        scale = with_gamma(layer_scale(parametrization, "output", fan_in_base=base_width,
                                       gain=1.0, **sizes), gamma, output=True)
        self.readout = ScaledLinear(width, n_outputs, bias=bias, **scaled_kwargs(scale))
        self.hook_logits = HookPoint()
        self.setup()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        for block in self.layers:
            h = block(h)
        return self.hook_logits(self.readout(h))


def build_mlp(cfg: Any, input_shape: tuple[int, ...], n_outputs: int, seed: int) -> MLP:
    model = MLP(input_shape, n_outputs, **read_config(cfg))
    model.reset_parameters(seed)
    return model
