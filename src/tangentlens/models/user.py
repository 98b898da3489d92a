"""A user's model: ``model.kind=python`` builds ``factory(**options)``; ``init_from`` loads weights.

``factory`` is ``"module:function"`` (dotted attributes allowed), imported with
``factory_path`` (default: the config file's directory) searched before ``sys.path``.
θ0 is the factory's init under ``torch.manual_seed(seed)`` (global RNG state restored).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .options import cfg_get

SHOW = 5  # names listed in a checkpoint-mismatch message


def load_factory(spec: Any, factory_path: str | None = None) -> Callable[..., Any]:
    """The callable named by ``spec`` = ``"module:function"``; one-line errors otherwise."""
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ValueError(f"model.factory={spec!r} is not valid; use 'module:function', e.g. "
                         "'mypkg.models:make_resnet'")
    module_name, attr = spec.split(":")
    added = factory_path is not None and factory_path not in sys.path
    if added:
        sys.path.insert(0, factory_path)
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - any import failure is the user's factory
        where = f"{factory_path} or " if factory_path else ""
        raise ValueError(f"model.factory={spec!r}: cannot import {module_name!r} from {where}"
                         f"PYTHONPATH ({type(e).__name__}: {e})") from None
    finally:
        if added:
            sys.path.remove(factory_path)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"model.factory={spec!r}: module {module_name!r} has no "
                             f"attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"model.factory={spec!r} is a {type(obj).__name__}, not a callable")
    return obj


def build_user_model(cfg: Any, seed: int) -> nn.Module:
    """``factory(**options)`` under ``torch.manual_seed(seed)``, checked to be an nn.Module."""
    spec = cfg_get(cfg, "factory", None)
    if spec is None:
        raise ValueError("model.kind='python' needs model.factory='module:function' (or pass "
                         "model=<nn.Module> to tangentlens.run)")
    factory = load_factory(spec, cfg_get(cfg, "factory_path", None))
    options = dict(cfg_get(cfg, "options", {}))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = factory(**options)
        except TypeError as e:
            raise ValueError(f"model.factory={spec!r} rejected model.options={options!r}: {e}"
                             ) from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"model.factory={spec!r} returned a {type(model).__name__}, not a "
                         "torch.nn.Module")
    return model


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict from ``.safetensors`` or a torch file (``weights_only=True``: no pickled code)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"model.init_from={str(path)!r}: no such file")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - report any unreadable file in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"model.init_from={str(path)!r} cannot be loaded as weights only: "
                         f"{first}") from None
    if isinstance(state, dict) and set(state) == {"state_dict"}:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ValueError(f"model.init_from={str(path)!r} does not hold a state_dict "
                         "{name: tensor}")
    return state


def _few(names: list[str]) -> str:
    more = f" (+{len(names) - SHOW} more)" if len(names) > SHOW else ""
    return f"[{', '.join(names[:SHOW])}]{more}"


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load ``path`` into ``model`` exactly (same keys, same shapes), in place."""
    state, own = read_checkpoint(path), model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or extra or shapes:
        parts = [f"{what} {_few(names)}" for what, names in
                 (("missing", missing), ("unexpected", extra), ("shape mismatch", shapes)) if names]
        raise ValueError(f"model.init_from={str(path)!r} does not match the model: "
                         + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    return model
