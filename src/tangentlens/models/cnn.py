"""Hooked CNN for (C, L) signals or (C, H, W) images.

depth × [ScaledConv (same padding) → hook_pre → act → hook_post] → global average pool →
``hook_pooled`` → ScaledLinear readout → ``hook_logits``. Width = number of channels.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint

from .layers import ScaledConv, ScaledLinear
from .mlp import Block, ScaledNet, read_config, scaled_kwargs
from .options import cfg_get
from .parametrization import layer_scale, with_gamma


class CNN(ScaledNet):
    """Conv net; hooks ``layers.{i}.hook_pre/post``, ``hook_pooled``, ``hook_logits``."""

    def __init__(self, input_shape: tuple[int, ...], n_outputs: int, *, kernel_size: int,
                 width: int, depth: int, activation: str, bias: bool, parametrization: str,
                 base_width: int, gain: float, gamma: float = 1.0):
        if len(input_shape) not in (2, 3):
            raise ValueError(f"cnn input_shape={input_shape!r}; valid: (C, L) or (C, H, W)")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"model.kernel_size={kernel_size!r}; must be a positive odd integer")
        super().__init__({"kind": "cnn", "input_shape": list(input_shape), "n_outputs": n_outputs,
                          "width": width, "depth": depth, "activation": activation, "bias": bias,
                          "parametrization": parametrization, "base_width": base_width,
                          "gain": gain, "gamma": gamma, "kernel_size": kernel_size})
        self.dim = len(input_shape) - 1
        patch = kernel_size**self.dim
        sizes = dict(width=width, base_width=base_width)
        blocks = []
        for i in range(depth):
            kind, c_in, c_in_base = ("input", input_shape[0], input_shape[0]) if i == 0 else (
                "hidden", width, base_width)
            scale = with_gamma(layer_scale(parametrization, kind, fan_in_base=c_in_base * patch,
                                           gain=gain, **sizes), gamma, output=False)
            conv = ScaledConv(self.dim, c_in, width, kernel_size, padding=kernel_size // 2,
                              bias=bias, **scaled_kwargs(scale))
            blocks.append(Block("conv", conv, activation))
        self.layers = nn.ModuleList(blocks)
        self.hook_pooled = HookPoint()
        scale = with_gamma(layer_scale(parametrization, "output", fan_in_base=base_width,
                                       gain=1.0, **sizes), gamma, output=True)
        self.readout = ScaledLinear(width, n_outputs, bias=bias, **scaled_kwargs(scale))
        self.hook_logits = HookPoint()
        self.setup()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for block in self.layers:
            h = block(h)
        pooled = self.hook_pooled(h.mean(dim=tuple(range(2, 2 + self.dim))))
        return self.hook_logits(self.readout(pooled))


def build_cnn(cfg: Any, input_shape: tuple[int, ...], n_outputs: int, seed: int) -> CNN:
    model = CNN(input_shape, n_outputs, kernel_size=int(cfg_get(cfg, "kernel_size", 3)),
                **read_config(cfg))
    model.reset_parameters(seed)
    return model
