"""Hooked models (MLP, CNN, transformer) with abc width-parametrizations.

``import tangentlens.models`` is cheap: torch and transformer_lens are imported by
``build_model`` / ``param_groups`` only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .options import cfg_get
from .parametrization import PARAMETRIZATIONS

if TYPE_CHECKING:
    import torch
    from transformer_lens import HookedRootModule

MODEL_KINDS = ("mlp", "cnn", "transformer", "python")
ACTIVATIONS = ("relu", "tanh", "gelu", "erf", "linear")
OPTIMIZERS = ("sgd", "adam", "adamw")

__all__ = ["ACTIVATIONS", "MODEL_KINDS", "OPTIMIZERS", "PARAMETRIZATIONS", "build_model",
           "param_groups"]


def _choice(field: str, value: Any, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise ValueError(f"{field}={value!r}; valid: {', '.join(valid)}")
    return value


def build_model(model_cfg: Any, input_shape: tuple[int, ...], n_outputs: int,
                seed: int = 0) -> HookedRootModule | torch.nn.Module:
    """Build a model from any object with ModelConfig-like attributes.

    ``kind="python"`` returns ``factory(**options)`` (``models.user``), any nn.Module;
    the other kinds are HookedRootModules.

    θ0 is a deterministic function of ``seed``; torch's global RNG is not touched.

    >>> import torch
    >>> from tangentlens import build_model, load_config
    >>> model = build_model(load_config(None, ["model.width=32"]).model, (64,), 10, seed=0)
    >>> model(torch.zeros(5, 64)).shape
    torch.Size([5, 10])
    >>> [h for h in model.hook_dict][:2]
    ['layers.0.hook_pre', 'layers.0.hook_post']
    """
    kind = _choice("model.kind", cfg_get(model_cfg, "kind", "mlp"), MODEL_KINDS)
    if kind == "python":
        from .user import build_user_model

        return build_user_model(model_cfg, seed)
    _choice("model.parametrization", cfg_get(model_cfg, "parametrization", "sp"), PARAMETRIZATIONS)
    input_shape = tuple(int(s) for s in input_shape)
    if kind == "transformer":
        from .transformer import build_transformer

        return build_transformer(model_cfg, input_shape, n_outputs, seed)
    _choice("model.activation", cfg_get(model_cfg, "activation", "relu"), ACTIVATIONS)
    if kind == "mlp":
        from .mlp import build_mlp

        return build_mlp(model_cfg, input_shape, n_outputs, seed)
    from .cnn import build_cnn

    return build_cnn(model_cfg, input_shape, n_outputs, seed)


def param_groups(model: torch.nn.Module, lr: float, optimizer: str = "sgd") -> list[dict]:
    """Optimizer param groups applying each scaled layer's ``lr_scale``.

    Returns ``[{"params", "lr": lr * scale, "lr_scale", "names"}]``, one group per
    distinct scale; parameters outside ``ScaledLinear``/``ScaledConv`` get scale 1.
    """
    from .layers import ScaledConv, ScaledLinear

    suffix = "" if _choice("optimizer", optimizer, OPTIMIZERS) == "sgd" else "@adam"
    scale = {id(p): mod.lr_scale[name + suffix]
             for mod in model.modules() if isinstance(mod, ScaledLinear | ScaledConv)
             for name, p in mod.named_parameters(recurse=False)}
    groups: dict[float, dict] = {}
    for name, p in model.named_parameters():
        s = scale.get(id(p), 1.0)
        group = groups.setdefault(s, {"params": [], "lr": lr * s, "lr_scale": s, "names": []})
        group["params"].append(p)
        group["names"].append(name)
    return list(groups.values())
