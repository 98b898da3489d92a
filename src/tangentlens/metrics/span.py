"""Share of a change that lies in a given span (the gradient-span test)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .arrays import as_features


def gradient_span_fraction(delta_h: Any, grads: Any, rcond: float = 1e-6) -> dict:
    """Fraction of ‖Δh‖² lying in the row span of output-gradient directions `grads` (m, d).

    The span's basis comes from the SVD of grads, keeping singular values > rcond · s_max.
    Returns fraction (NaN if Δh = 0), dim (rank of the span) and random_baseline = dim / d,
    the expected fraction for an isotropic random Δh.
    """
    dh, g = as_features(delta_h, "delta_h"), as_features(grads, "grads")
    if dh.shape[1] != g.shape[1]:
        raise ValueError(
            f"delta_h has d = {dh.shape[1]} features but grads has "
            f"{g.shape[1]}; shapes {np.shape(delta_h)} and {np.shape(grads)}"
        )
    _, s, vt = np.linalg.svd(g, full_matrices=False)
    dim = int(np.sum(s > rcond * s[0])) if s.size and s[0] > 0 else 0
    total = np.sum(dh**2)
    frac = np.sum((dh @ vt[:dim].T) ** 2) / total if total else np.nan
    return {"fraction": float(frac), "dim": dim, "random_baseline": dim / g.shape[1]}
