"""Empirical NTK K[i,j,a,b] = Σ_p ∂f_a(x1_i)/∂θ_p · ∂f_b(x2_j)/∂θ_p, blocked over x1 and x2.

Implementations (neural-tangents names): ``jacobian`` (per-sample Jacobians by vmap(jacrev),
then contracted), ``ntk_vp`` (NTK-vector products: vjp then jvp), ``structured``
(``structured.py``: per-layer Grams for linear layers, Novak et al. 2022), ``auto`` (the
cheapest by a per-pair FLOP estimate). With ``x2=None`` the kernel is symmetric and only
blocks on or above the diagonal are computed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn
from torch.func import functional_call, jvp, vjp, vmap
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from tangentlens.ntk.jacobian import (
    Params,
    check_choice,
    contract,
    default_params,
    jacobian_features,
    output_dim,
)
from tangentlens.ntk.structured import linear_layers, structured_ops

MODES = ("full", "trace", "diagonal")
IMPLEMENTATIONS = ("jacobian", "ntk_vp", "structured", "auto")
CACHE_FLOATS = 2**27  # x2 block features are kept when they fit in max(output, this)


def _vjp_rows(model: nn.Module, params: Params, x2: torch.Tensor, n_out: int) -> Params:
    """Rows J(x2_j)ᵀ e_b for every sample and output, (b2·O, *shape) per parameter."""
    eye = torch.eye(n_out, dtype=next(iter(params.values())).dtype, device=x2.device)

    def rows(xj: torch.Tensor) -> Params:
        _, pull = vjp(lambda p: functional_call(model, p, (xj.unsqueeze(0),)).squeeze(0), params)
        return vmap(pull)(eye)[0]

    return {k: v.flatten(0, 1) for k, v in vmap(rows)(x2).items()}


def _jvp_push(model: nn.Module, params: Params, x1: torch.Tensor, rows: Params, mode: str,
              n_out: int) -> torch.Tensor:
    """K(x1, x2) block from x2's vjp rows pushed through J(x1) by one vmapped jvp."""

    def push(t: Params) -> torch.Tensor:
        return jvp(lambda p: functional_call(model, p, (x1,)), (params,), (t,))[1]

    k = vmap(push)(rows)  # (b2·O, b1, O): [(j, b), i, a]
    k = k.view(-1, n_out, len(x1), n_out).permute(2, 0, 3, 1)
    if mode == "full":
        return k
    diag = k.diagonal(dim1=2, dim2=3)
    return diag if mode == "diagonal" else diag.sum(-1)


def _slices(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _blocked(x1: torch.Tensor, x2: torch.Tensor | None, sizes: tuple[int, int],
             shape: tuple[int, ...], dtype: torch.dtype, feat1: Callable, feat2: Callable,
             pair: Callable, memo: dict[int, object] | None = None) -> torch.Tensor:
    """Fill the (n1, n2, *shape) kernel with pair(feat1(x1 block), feat2(x2 block)).

    x2 blocks are the outer loop (features computed once each); x1 block features are kept
    across x2 blocks when all of them fit in max(output size, CACHE_FLOATS) floats, else
    recomputed, or always kept in a caller's ``memo`` (x1 block start → features). With
    x2=None, blocks below the diagonal are filled by symmetry.
    """
    sym = x2 is None
    x2 = x1 if sym else x2
    out = torch.empty(len(x1), len(x2), *shape, dtype=dtype, device=x1.device)
    s1, s2 = _slices(len(x1), sizes[0]), _slices(len(x2), sizes[1])
    cache, fixed = True, memo is not None
    memo = {} if memo is None else memo

    def get1(r: slice) -> object:
        nonlocal cache
        if r.start in memo:
            return memo[r.start]
        f = feat1(x1[r])
        if cache and not memo and not fixed:  # decided on the first block
            floats = sum(t.numel() for t in tree_leaves(f) if isinstance(t, torch.Tensor))
            cache = floats * len(s1) <= max(out.numel(), CACHE_FLOATS)
        if cache:
            memo[r.start] = f
        return f

    shared = sym and feat1 is feat2 and sizes[0] == sizes[1]
    for c in s2:
        f2 = get1(c) if shared else feat2(x2[c])
        for r in s1:
            if sym and r.start >= c.stop:
                break
            blk = pair(f2 if shared and r == c else get1(r), f2)
            out[r, c] = blk
            if sym:
                out[c, r] = blk.permute(1, 0, 3, 2) if blk.ndim == 4 else blk.transpose(0, 1)
    return out


def pair_flops(model: nn.Module, params: Params, x: torch.Tensor, mode: str,
               n_out: int) -> dict[str, float]:
    """Estimated contraction FLOPs per (x1_i, x2_j) pair of each implementation.

    jacobian 2·O^m·P (m = 2 for full, 1 otherwise); ntk_vp 2·O·F with F the forward FLOPs
    of one sample (the tangent pass of a jvp); structured 2·O^m·(Σ fan_out + P_rest) +
    2·Σ fan_in over its linear layers (readout fan_out excluded: its G is the identity).
    """

    with FlopCounterMode(display=False) as counter:
        layers = linear_layers(model, params, x[:1])
    m = 2 if mode == "full" else 1
    n_params = sum(v.numel() for v in params.values())
    covered = sum(params[k].numel() for info in layers.values() for k in info.names)
    gram = sum(info.fan_in + (0 if info.readout else n_out**m * info.fan_out)
               for info in layers.values())
    return {"jacobian": 2 * n_out**m * n_params,
            "ntk_vp": 2 * n_out * max(counter.get_total_flops(), n_params),
            "structured": 2 * (gram + n_out**m * (n_params - covered))}


def empirical_ntk(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None,
                  params: Params | None = None, mode: str = "full",
                  implementation: str = "auto", block_size: int = 64,
                  x1_features: dict | None = None) -> torch.Tensor:
    """Empirical NTK of ``model`` (x (n, ...) → (n, O)) at ``params`` (default: its own).

    Returns full (n1, n2, O, O), trace (n1, n2) = Σ_a K[..., a, a], or diagonal (n1, n2, O).
    ``x2=None`` means x2 = x1. Memory beyond the output (P parameters, b = block_size), plus
    x1's block features when they are kept across x2 blocks (only if they fit in
    max(output size, ``CACHE_FLOATS``) floats):

    - ``jacobian``: 2·b·O·P floats (two per-sample Jacobian blocks).
    - ``ntk_vp``: x2 is blocked to b' = max(1, b // O) samples: max(b, O)·P floats of vjp
      rows J(x2)ᵀe, pushed through J(x1) (never formed) for b samples of x1 at a time by a
      jvp holding max(b, O)·b activation tangents.
    - ``structured``: 2·b·(O·Σ fan_out + Σ fan_in) floats of layer signals and inputs, plus
      2·b·O·P_rest for parameters outside eligible linear layers, plus b²·O² per Gram.
    - ``auto``: the implementation with the fewest estimated FLOPs per pair (``pair_flops``):
      structured when linear layers carry the cost (MLPs; convnets with a linear readout,
      their convolutions then via Jacobians), jacobian without linear layers, ntk_vp when
      O·P exceeds the FLOPs of one forward (many outputs).

    ``x1_features``: a dict the caller keeps to reuse x1's block features across calls with
    the same x1, implementation and block size (e.g. the tiles of one row, ``tiled.py``).

    >>> import torch
    >>> from tangentlens import build_model, empirical_ntk, load_config
    >>> model = build_model(load_config(None, ["model.width=32"]).model, (8,), 3, seed=0)
    >>> x = torch.randn(5, 8)
    >>> empirical_ntk(model, x).shape                   # full: (n1, n2, O, O)
    torch.Size([5, 5, 3, 3])
    >>> k = empirical_ntk(model, x, mode="trace")
    >>> torch.allclose(k, k.T, atol=1e-5), bool(torch.linalg.eigvalsh(k).min() > -1e-4)
    (True, True)
    """
    check_choice("mode", mode, MODES)
    check_choice("implementation", implementation, IMPLEMENTATIONS)
    if block_size < 1:
        raise ValueError(f"block_size={block_size!r}; must be a positive integer")
    params = default_params(model, params)
    n_out = output_dim(model, params, x1)
    dtype = next(iter(params.values())).dtype
    shape = {"full": (n_out, n_out), "trace": (), "diagonal": (n_out,)}[mode]
    if implementation == "auto":
        flops = pair_flops(model, params, x1, mode, n_out)
        implementation = min(flops, key=flops.get)
    sizes = (block_size, block_size)
    if implementation == "jacobian":
        feat = partial(jacobian_features, model, params, list(params))
        return _blocked(x1, x2, sizes, shape, dtype, feat, feat,
                        lambda a, b: contract(a, b, mode), x1_features)
    if implementation == "ntk_vp":
        return _blocked(x1, x2, (block_size, max(1, block_size // n_out)), shape, dtype,
                        lambda x: x, lambda x: _vjp_rows(model, params, x, n_out),
                        lambda a, b: _jvp_push(model, params, a, b, mode, n_out), x1_features)

    features, pair = structured_ops(model, params, x1, mode, n_out)
    return _blocked(x1, x2, sizes, shape, dtype, features, features, pair, x1_features)
