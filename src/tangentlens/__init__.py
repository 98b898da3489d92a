"""tangentlens: train a network and its linearization as a matched pair and compare internals.

Top-level names are imported lazily so ``import tangentlens`` (and the CLI) stay fast.
"""

from __future__ import annotations

import importlib

from .version import __version__

_LAZY = {
    "linearize": "tangentlens.linearize",
    "Linearized": "tangentlens.linearize",
    "empirical_ntk": "tangentlens.ntk",
    "kernel_regression": "tangentlens.ntk",
    "open_run": "tangentlens.store",
    "open_runs": "tangentlens.store",
    "load_config": "tangentlens.config",
    "RunConfig": "tangentlens.config",
    "build_model": "tangentlens.models",
    "run": "tangentlens.train",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tangentlens' has no attribute {name!r}")
