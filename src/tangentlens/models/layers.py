"""Width-parametrized layers: effective weight = multiplier * raw parameter.

Every trainable weight in the MLP and CNN lives in one of these layers, so the
parametrization (multiplier, init std, learning-rate scale) and the structured
empirical NTK (``tangentlens.ntk``) see the same, small set of building blocks.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ScaledLinear(nn.Module):
    """y = weight_mult * x @ weight.T + bias_mult * bias.

    ``weight`` ~ N(0, weight_std^2), ``bias`` starts at zero. ``lr_scale`` holds the
    per-parameter learning-rate multipliers ({"weight": .., "bias": ..}).
    """

    def __init__(self, fan_in: int, fan_out: int, *, bias: bool, weight_mult: float,
                 weight_std: float, bias_mult: float, lr_scale: dict[str, float]):
        super().__init__()
        self.fan_in, self.fan_out = fan_in, fan_out
        self.weight = nn.Parameter(torch.empty(fan_out, fan_in))
        self.bias = nn.Parameter(torch.zeros(fan_out)) if bias else None
        self.weight_mult, self.bias_mult, self.weight_std = weight_mult, bias_mult, weight_std
        self.lr_scale = dict(lr_scale)

    def reset_parameters(self, generator: torch.Generator) -> None:
        with torch.no_grad():
            self.weight.copy_(torch.randn(self.weight.shape, generator=generator) * self.weight_std)
            if self.bias is not None:
                self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight) * self.weight_mult
        return y if self.bias is None else y + self.bias * self.bias_mult

    def extra_repr(self) -> str:
        return (f"{self.fan_in}->{self.fan_out}, bias={self.bias is not None}, "
                f"weight_mult={self.weight_mult:.4g}, weight_std={self.weight_std:.4g}")


class ScaledConv(nn.Module):
    """N-d convolution (1-D or 2-D) with the same multiplier/std/lr-scale convention."""

    def __init__(self, dim: int, c_in: int, c_out: int, kernel_size: int, *, padding: int,
                 bias: bool, weight_mult: float, weight_std: float, bias_mult: float,
                 lr_scale: dict[str, float]):
        super().__init__()
        if dim not in (1, 2):
            raise ValueError(f"ScaledConv dim={dim!r}; valid: 1, 2")
        self.dim, self.padding = dim, padding
        self.fan_in = c_in * kernel_size**dim
        self.weight = nn.Parameter(torch.empty(c_out, c_in, *([kernel_size] * dim)))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.weight_mult, self.bias_mult, self.weight_std = weight_mult, bias_mult, weight_std
        self.lr_scale = dict(lr_scale)

    reset_parameters = ScaledLinear.reset_parameters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = F.conv1d if self.dim == 1 else F.conv2d
        y = conv(x, self.weight, padding=self.padding) * self.weight_mult
        if self.bias is None:
            return y
        return y + (self.bias * self.bias_mult).view(-1, *([1] * self.dim))
