"""Rebuild a run's model (deterministic by seed) and load its θ snapshots.

A model or data passed from Python (``tangentlens.run(cfg, model=m, data=d)``) cannot be
rebuilt from the run's config; ``using_model(m, d)`` (``analyze(..., model=m, data=d)``) lends
them, otherwise ``rebuild_error(run)`` says why the analyses needing them are skipped.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch

_LENT: list[tuple[Any, Any]] = []  # (model, data) lent by using_model, innermost last


@contextlib.contextmanager
def using_model(model: torch.nn.Module | None, data: Any = None) -> Iterator[None]:
    """Within the block, runs of ``kind: python`` without a factory are rebuilt from ``model``
    and runs of ``data.name: python`` load ``data`` (as ``tangentlens.run`` took it)."""
    _LENT.append((model, data))
    try:
        yield
    finally:
        _LENT.pop()


def model_at_init(run: Any) -> torch.nn.Module:
    """The run's model at θ0 in eval mode (``train.prepare`` of its config: same seed, same θ0).

    When the run holds a step-0 θ snapshot, that snapshot is loaded, so the model is the
    recorded θ0 even if model construction changed since the run was written. A run of a
    ``kind: python`` model is built from its factory alone (its data are not loaded).
    """
    return data_and_model_at_init(run, data=False)[1]


_BUILT: dict[tuple, tuple[Any, torch.nn.Module]] = {}  # the last rebuild, by run file + lent


def data_and_model_at_init(run: Any, data: bool = True) -> tuple[Any, torch.nn.Module]:
    """The run's dataset (its full training set included; None unless ``data``) and
    ``model_at_init(run)`` — a fresh copy each call. The skip checks and every analysis of
    one run file share one data load and model build (keyed by path, mtime and lent objects)."""
    path = getattr(run, "path", None)
    key = None
    if path is not None:
        import os

        lent = _LENT[-1] if _LENT else (None, None)
        key = (os.fspath(path), os.stat(path).st_mtime_ns, data, *map(id, lent))
    if key not in _BUILT:
        built = _rebuild(run, data)
        if key is None:
            return built
        _BUILT.clear()
        _BUILT[key] = built
    ds, model = _BUILT[key]
    return ds, copy.deepcopy(model)


def _rebuild(run: Any, data: bool) -> tuple[Any, torch.nn.Module]:
    from types import SimpleNamespace

    from .config import RunConfig
    from .train import build, load_data, prepare

    cfg = RunConfig.from_dict(run.config)
    lent_model, lent_data = _LENT[-1] if _LENT else (None, None)
    if data and cfg.data.name == "python" and lent_data is None:
        raise ValueError("the data were passed from Python (tangentlens.run(data=...)); pass "
                         "data= to analyze/write_report")
    ds = load_data(cfg, lent_data if cfg.data.name == "python" else None) if data else None
    if cfg.model.kind == "python" and cfg.model.factory is None:
        if lent_model is None:
            raise ValueError("the model was passed from Python (tangentlens.run(model=...)) "
                             "and has no model.factory; pass model= to analyze/write_report")
        model = build(cfg, cfg.model, None, copy.deepcopy(lent_model))
    elif cfg.model.kind == "python" or cfg.data.name == "python":
        o = cfg.data.options
        shapes = ds or SimpleNamespace(input_shape=o.get("input_shape"), n_outputs=o.get("n_outputs"))
        model = build(cfg, cfg.model, shapes)
    else:
        ds, model = prepare(cfg)  # a built-in model's shapes come from its data
    for regime in run.regimes:
        try:
            params = run.params(regime, 0)
        except KeyError:
            continue
        load_params(model, params)
        break
    return ds if data else None, model.eval()


def rebuild_error(run: Any, data: bool = False) -> str | None:
    """None when the run's model (and with ``data`` its dataset) can be rebuilt, else why not."""
    try:
        data_and_model_at_init(run, data)
    except (ValueError, KeyError, FileNotFoundError, ImportError) as e:
        return f"cannot rebuild the {'data or ' if data else ''}model: {e}"
    return None


def load_params(model: torch.nn.Module, params: dict[str, torch.Tensor]) -> torch.nn.Module:
    """Copy a θ snapshot {name: tensor} into ``model`` in place (names must match)."""
    own = dict(model.named_parameters())
    missing, extra = sorted(set(own) - set(params)), sorted(set(params) - set(own))
    if missing or extra:
        raise ValueError(f"θ snapshot does not match the model: missing {missing}, "
                         f"unexpected {extra}")
    with torch.no_grad():
        for name, p in own.items():
            p.copy_(params[name].to(p))
    return model


def has_params(run: Any) -> bool:
    """Whether the run holds θ snapshots (checked at the first step of its first regime)."""
    for regime in run.regimes:
        steps = run.steps(regime)
        if steps:
            try:
                run.params(regime, steps[0])
            except KeyError:
                return False
            return True
    return False
