"""Functional building blocks shared by the eNTK implementations: parameter dicts, output
dimension, per-sample Jacobian features and their contraction to a kernel layout."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

Params = dict[str, torch.Tensor]
def check_choice(name: str, value: str, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise ValueError(f"{name}={value!r}; valid: {', '.join(valid)}")
    return value


def default_params(model: nn.Module, params: Params | None = None) -> Params:
    """``params`` (or the model's own parameters), detached."""
    params = dict(model.named_parameters()) if params is None else params
    return {k: v.detach() for k, v in params.items()}


def output_dim(model: nn.Module, params: Params, x: torch.Tensor) -> int:
    """O, checking that the model maps (n, ...) to (n, O)."""
    with torch.no_grad():
        out = functional_call(model, params, (x[:1],))
    if out.ndim != 2:
        raise ValueError(f"model output must have shape (n, O); got {tuple(out.shape)}")
    return out.shape[1]


def jacobian_features(model: nn.Module, params: Params, names: list[str],
                      x: torch.Tensor) -> torch.Tensor:
    """Per-sample Jacobian (b, O, P_names) w.r.t. the parameters ``names`` (others fixed)."""
    fixed = {k: v for k, v in params.items() if k not in names}

    def f(p: Params, xi: torch.Tensor) -> torch.Tensor:
        return functional_call(model, {**fixed, **p}, (xi.unsqueeze(0),)).squeeze(0)

    jac = vmap(jacrev(f), in_dims=(None, 0))({k: params[k] for k in names}, x)
    return torch.cat([j.flatten(2) for j in jac.values()], dim=2)


def contract(a1: torch.Tensor, a2: torch.Tensor, mode: str) -> torch.Tensor:
    """Σ_d a1[i,a,d] a2[j,b,d] for (b, O, D) factors, reduced to ``mode``'s layout."""
    (b1, n_out, dim), b2 = a1.shape, a2.shape[0]
    if mode == "trace":
        return a1.reshape(b1, -1) @ a2.reshape(b2, -1).T
    if mode == "diagonal":
        return torch.bmm(a1.transpose(0, 1), a2.permute(1, 2, 0)).permute(1, 2, 0)
    k = a1.reshape(b1 * n_out, dim) @ a2.reshape(b2 * n_out, dim).T
    return k.view(b1, n_out, b2, n_out).permute(0, 2, 1, 3)
