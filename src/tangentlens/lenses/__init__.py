"""Run-level analyses ("lenses"): each module reads a run and writes tidy rows, CSV and PNG.

One file per analysis, each exporting ``ANALYSIS`` (``spec.Analysis``); ``registry.NAMES``
lists them and ``registry.analyze`` runs them. ``tables`` and ``spec`` are the shared
support. Adding an analysis = one module here + one line in ``registry.NAMES``.
"""
