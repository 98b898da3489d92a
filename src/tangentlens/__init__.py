"""tangentlens: train a network and its linearization as a matched pair and compare internals.

The notebook API, imported lazily so ``import tangentlens`` (and the CLI) stay fast:

- ``load_config(path, overrides)`` → ``RunConfig``; ``build_model(model_cfg, input_shape, n_outputs)``
- ``linearize(model)`` → the Taylor model at θ0; ``empirical_ntk(model, x1, x2)``;
  ``kernel_regression(model, x, y)``
- ``run(cfg, out_dir)`` trains every regime from one θ0 and caches activations to run.h5
- ``open_run(path)`` / ``open_runs(dir)`` read runs lazily; ``analyze(runs, out_dir)`` runs
  the registered analyses; ``write_report(runs, out_html)`` makes the HTML page.

Each has a docstring example, run as a doctest by tests/test_api.py.
"""

from __future__ import annotations

import importlib

from .version import __version__

_LAZY = {
    "load_config": "tangentlens.config",
    "RunConfig": "tangentlens.config",
    "build_model": "tangentlens.models",
    "linearize": "tangentlens.linearized",
    "Linearized": "tangentlens.linearized",
    "empirical_ntk": "tangentlens.ntk",
    "kernel_regression": "tangentlens.ntk",
    "run": "tangentlens.train",
    "open_run": "tangentlens.store",
    "open_runs": "tangentlens.store",
    "analyze": "tangentlens.lenses.registry",
    "write_report": "tangentlens.report",
}
API = ("load_config", "build_model", "linearize", "empirical_ntk", "kernel_regression", "run",
       "open_run", "open_runs", "analyze", "write_report")
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tangentlens' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
