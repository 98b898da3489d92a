"""Hand-derived tangent pass of the MLP and CNN: f(θ0) + J(θ0)Δθ without ``torch.func``.

The θ0 primals (each layer's input h0 and activation derivative σ'(z0)) come from one
no-grad pass; they never change, so a fixed input set can keep them (``PrimalCache``).
Autograd sees only the tangent, which is linear in Δθ = θ − θ0:

    ż = w·(h0 ΔWᵀ + ḣ W0ᵀ) + β·Δb   (w, β: the layer's multipliers),   ȧ = σ'(z0) ⊙ ż.

Per hidden linear layer a step costs two products forward and two backward (ΔW's
gradient, ḣ's) against the network's three; the first layer (ḣ = 0) costs two against
two. Computing the primal too adds one product per layer.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .models.layers import ScaledConv, ScaledLinear

Step = tuple[str, object, str | None]  # (kind, argument, hook name)
Primals = dict[str, torch.Tensor]  # "in{k}": affine steps' inputs, "d{k}": σ'(z0), "out"


def _gelu_derivative(z: torch.Tensor, _a: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(z * math.sqrt(0.5))) + z * torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


DERIVATIVES = {  # σ'(z) from (z, σ(z)); relu keeps σ(z) itself (σ' = [σ(z) > 0]); linear none
    "relu": lambda _z, a: a,
    "tanh": lambda _z, a: 1 - a * a,
    "gelu": _gelu_derivative,
    "erf": lambda z, _a: torch.exp(-z * z) * (2 / math.sqrt(math.pi)),
    "linear": None,
}


def plan(model: nn.Module) -> tuple[list[Step] | None, str]:
    """The forward of an MLP/CNN as steps, or (None, why it is not supported)."""
    from .models.cnn import CNN
    from .models.mlp import _ACTIVATIONS, MLP, Block

    if type(model) not in (MLP, CNN):
        return None, f"got {type(model).__name__}"
    names = {id(m): n for n, m in model.named_modules()}
    steps: list[Step] = [("flatten", None, None)] if type(model) is MLP else []
    for i, block in enumerate(model.layers):
        layer = getattr(block, getattr(block, "layer_name", ""), None)
        if type(block) is not Block or type(layer) not in (ScaledLinear, ScaledConv):
            return None, f"layers.{i} is not a ScaledLinear/ScaledConv block"
        act = block.act.activation
        if act not in DERIVATIVES or block.act.fn is not _ACTIVATIONS[act]:
            return None, f"layers.{i} has an unknown activation {act!r}"
        steps += [("affine", (names[id(layer)], layer), f"layers.{i}.hook_pre"),
                  ("act", act, f"layers.{i}.hook_post")]
    if type(model) is CNN:
        steps.append(("pool", tuple(range(2, 2 + model.dim)), "hook_pooled"))
    steps.append(("affine", ("readout", model.readout), "hook_logits"))
    return steps, ""


def _scaled_conv(layer: ScaledConv, x: torch.Tensor, w: torch.Tensor,
                 b: torch.Tensor | None) -> torch.Tensor:
    """w_mult·(x ⋆ w) + b_mult·b with the multipliers folded into the (small) kernel."""
    conv = F.conv1d if layer.dim == 1 else F.conv2d
    return conv(x, w * layer.weight_mult, None if b is None else b * layer.bias_mult,
                padding=layer.padding)


def _forward(layer: nn.Module, x: torch.Tensor, w: torch.Tensor,
             b: torch.Tensor | None) -> torch.Tensor:
    """The layer's own forward at weights (w, b), op for op: bit-identical to the network."""
    if isinstance(layer, ScaledLinear):
        y = F.linear(x, w) * layer.weight_mult
        return y if b is None else y + b * layer.bias_mult
    conv = F.conv1d if layer.dim == 1 else F.conv2d
    y = conv(x, w, padding=layer.padding) * layer.weight_mult
    return y if b is None else y + (b * layer.bias_mult).view(-1, *([1] * layer.dim))


def primals(steps: list[Step], params0: dict[str, torch.Tensor], x: torch.Tensor,
            record: dict[str, torch.Tensor] | None = None) -> Primals:
    """What the tangent pass needs from θ0 (no grad); ``record`` gets every hook's h(θ0)."""
    from .models.mlp import _ACTIVATIONS

    store: Primals = {}
    with torch.no_grad():
        h = x
        for k, (kind, arg, hook) in enumerate(steps):
            if kind == "flatten":
                h = h.flatten(1)
            elif kind == "pool":
                h = h.mean(dim=arg)
            elif kind == "affine":
                name, layer = arg
                store[f"in{k}"] = h
                h = _forward(layer, h, params0[f"{name}.weight"], params0.get(f"{name}.bias"))
            else:
                z, h = h, _ACTIVATIONS[arg](h)
                if DERIVATIVES[arg] is not None:
                    store[f"d{k}"] = DERIVATIVES[arg](z, h)
            if record is not None and hook is not None:
                record[hook] = h
    store["out"] = h
    return store


def tangent(steps: list[Step], params: dict[str, torch.Tensor],
            params0: dict[str, torch.Tensor], p: Primals,
            record: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """J(θ0)(θ − θ0) from the primals ``p``; ``record`` gets every hook's J_h Δθ."""
    hdot = None  # the input's tangent is zero
    for k, (kind, arg, hook) in enumerate(steps):
        if kind == "affine":
            name, layer = arg
            w0, dw = params0[f"{name}.weight"], params[f"{name}.weight"] - params0[f"{name}.weight"]
            db = None if layer.bias is None else params[f"{name}.bias"] - params0[f"{name}.bias"]
            if isinstance(layer, ScaledLinear):  # multipliers on the (batch, out) side only
                z = torch.mm(p[f"in{k}"], dw.T)
                z = (z if hdot is None else torch.addmm(z, hdot, w0.T)).mul_(layer.weight_mult)
                hdot = z if db is None else z.add_(db * layer.bias_mult)
            else:
                z = _scaled_conv(layer, p[f"in{k}"], dw, db)
                hdot = z if hdot is None else z + _scaled_conv(layer, hdot, w0, None)
        elif kind == "act" and arg == "relu":  # ȧ = ż where a0 > 0, else 0
            hdot = torch.ops.aten.threshold_backward(hdot, p[f"d{k}"], 0)
        elif kind == "act":
            if f"d{k}" in p:
                hdot = hdot * p[f"d{k}"]
        elif hdot is not None:
            hdot = hdot.flatten(1) if kind == "flatten" else hdot.mean(dim=arg)
        if record is not None and hook is not None:
            record[hook] = hdot
    return hdot


def _row_hash(x: torch.Tensor) -> torch.Tensor:
    """An int64 hash of each row's bytes: equal rows hash equal, whatever the batch."""
    bits = x.reshape(len(x), -1).contiguous().view(torch.int16).to(torch.int64)
    g = torch.Generator().manual_seed(bits.shape[1])
    weights = torch.randint(0, 2**24, (bits.shape[1],), generator=g, dtype=torch.int64)
    return (bits * weights.to(bits.device)).sum(1)


class PrimalCache:
    """θ0 primals of a fixed input set, found again for any batch of its rows by content."""

    def __init__(self, steps: list[Step], params0: dict[str, torch.Tensor], x: torch.Tensor,
                 chunk: int = 1024):
        parts = [primals(steps, params0, x[i:i + chunk]) for i in range(0, len(x), chunk)]
        self.x, self.inputs, self.alias, first = x, {}, {}, {}
        for k, v in parts[0].items():
            if v.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
                self.inputs[k] = v.shape[1:]  # the input reshaped: taken from the batch
            elif id(v) in first:
                self.alias[k] = first[id(v)]  # the same tensor as another entry
            else:
                first[id(v)] = k
        self.primals = {k: torch.cat([q[k] for q in parts]) for k in first.values()}
        self.hashes, self.order = _row_hash(x).sort()

    def lookup(self, x: torch.Tensor) -> Primals | None:
        """The primals of ``x`` when every row of it is in the set, else None."""
        if x.shape[1:] != self.x.shape[1:] or x.dtype != self.x.dtype or x.device != self.x.device:
            return None
        pos = torch.searchsorted(self.hashes, _row_hash(x)).clamp_(max=len(self.hashes) - 1)
        idx = self.order[pos]
        if not torch.equal(self.x[idx], x):
            return None
        found = {k: v[idx] for k, v in self.primals.items()}
        found |= {k: found[a] for k, a in self.alias.items()}
        return found | {k: x.reshape(len(x), *shape) for k, shape in self.inputs.items()}


def primal_bytes(p: Primals, rows: int) -> int:
    """Bytes the primals of ``rows`` inputs take, from those of a sample batch ``p``."""
    per_row = sum(v.element_size() * v[0].numel() for v in {id(v): v for v in p.values()}.values())
    return per_row * rows
