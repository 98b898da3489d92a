"""Structured-derivative empirical NTK (Novak et al. 2022, "Fast Finite Width NTK").

For a linear layer y = w·x Wᵀ + β·b (``ScaledLinear`` multipliers w, β; nn.Linear: 1, 1),
∂f_a/∂W = w·g_a ⊗ x with g_a = ∂f_a/∂y, so its NTK contribution is

    K_l[i,j,a,b] = (G1_a G2_bᵀ)[i,j] · (w²·X1 X2ᵀ + β²)[i,j].

One forward (hooks capture every linear layer's input X and output y) and one batched
backward over the O output one-hots give all G; the readout's G is the identity, so its
term is δ_ab·(w²·X1 X2ᵀ + β²). Parameters of other modules (convolutions, attention,
norms), and linear layers called more than once, with tied weights or with inputs of
more than 2 dims, go through the per-sample Jacobian path and are added.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from tangentlens.models.layers import ScaledLinear
from tangentlens.ntk.jacobian import Params, contract, jacobian_features


@dataclass(frozen=True)
class LinearInfo:
    """A linear layer handled by the structured rule."""

    names: tuple[str, ...]  # its parameter names in ``params``
    weight_mult: float
    bias_mult: float  # 0 when it has no trainable bias
    fan_in: int
    fan_out: int
    readout: bool  # its output is the model's output


def linear_layers(model: nn.Module, params: Params, x: torch.Tensor) -> dict[str, LinearInfo]:
    """Linear layers eligible for the structured rule, found by one hooked forward on ``x``."""
    all_ids = [id(p) for _, p in model.named_parameters(remove_duplicate=False)]
    tied = {i for i in all_ids if all_ids.count(i) > 1}
    cand = {n: m for n, m in model.named_modules()
            if isinstance(m, (ScaledLinear, nn.Linear)) and f"{n}.weight" in params
            and id(m.weight) not in tied and (m.bias is None or id(m.bias) not in tied)}
    seen: dict[str, list[tuple[int, torch.Tensor]]] = {n: [] for n in cand}
    handles = [m.register_forward_hook(lambda _, a, y, n=n: seen[n].append((a[0].ndim, y)))
               for n, m in cand.items()]
    try:
        with torch.no_grad():
            out = functional_call(model, params, (x,))
    finally:
        for h in handles:
            h.remove()
    layers = {}
    for n, m in cand.items():
        if len(seen[n]) != 1 or seen[n][0][0] != 2:
            continue
        has_bias = f"{n}.bias" in params and m.bias is not None
        names = (f"{n}.weight", f"{n}.bias") if has_bias else (f"{n}.weight",)
        mults = (m.weight_mult, m.bias_mult) if isinstance(m, ScaledLinear) else (1.0, 1.0)
        layers[n] = LinearInfo(names, mults[0], mults[1] if has_bias else 0.0,
                               m.weight.shape[1], m.weight.shape[0], seen[n][0][1] is out)
    return layers


def structured_ops(model: nn.Module, params: Params, x_probe: torch.Tensor, mode: str,
                   n_out: int) -> tuple[Callable, Callable]:
    """(features(x), pair(f1, f2)) for ``empirical._blocked``."""
    layers = linear_layers(model, params, x_probe[:1])
    mods = dict(model.named_modules())
    covered = {k for info in layers.values() for k in info.names}
    rest = [k for k in params if k not in covered]

    def features(x: torch.Tensor) -> tuple[dict, torch.Tensor | None]:
        xs, ys = {}, {}

        def hook(name: str) -> Callable:
            def h(_: nn.Module, args: tuple, y: torch.Tensor) -> torch.Tensor:
                xs[name] = args[0].detach()
                ys[name] = y if y.requires_grad else y.detach().requires_grad_()
                return ys[name]
            return h

        handles = [mods[n].register_forward_hook(hook(n)) for n in layers]
        try:
            with torch.enable_grad():
                out = functional_call(model, params, (x,))
        finally:
            for h in handles:
                h.remove()
        hidden = [n for n in layers if ys[n] is not out]
        gs = [None] * len(hidden)
        if hidden:
            eye = torch.eye(n_out, dtype=out.dtype, device=out.device)
            seed = eye[:, None, :].expand(n_out, len(x), n_out).contiguous()
            gs = torch.autograd.grad(out, [ys[n] for n in hidden], seed,
                                     is_grads_batched=True, allow_unused=True)
        sig = {n: None for n in layers if n not in hidden}  # readout: G is the identity
        sig.update({n: g.transpose(0, 1).contiguous()  # (b, O, fan_out); unused layers skipped
                    for n, g in zip(hidden, gs) if g is not None})
        jac = jacobian_features(model, params, rest, x) if rest else None
        return {n: (xs[n], sig[n]) for n in layers if n in sig}, jac

    def pair(f1: tuple, f2: tuple) -> torch.Tensor:
        (l1, j1), (l2, j2) = f1, f2
        k = None if j1 is None else contract(j1, j2, mode)
        for n in [n for n in l1 if n in l2]:
            (x1, g1), (x2, g2), info = l1[n], l2[n], layers[n]
            s = info.weight_mult**2 * (x1 @ x2.T) + info.bias_mult**2
            if g1 is None:
                if k is None:
                    shape = {"full": (n_out, n_out), "trace": (), "diagonal": (n_out,)}[mode]
                    k = s.new_zeros(*s.shape, *shape)
                if mode == "full":
                    k.diagonal(dim1=2, dim2=3).add_(s[..., None])
                else:
                    k.add_(s[..., None] if mode == "diagonal" else n_out * s)
                continue
            s = s[..., None, None] if mode == "full" else s[..., None] if mode == "diagonal" else s
            gg = contract(g1, g2, mode)
            k = gg.mul_(s) if k is None else k.addcmul_(gg, s)
        return k

    return features, pair
