"""Dimensionality of a representation from its covariance spectrum."""

from __future__ import annotations

from typing import Any

import numpy as np

from .arrays import as_features, centered


def _cov_spectrum(h: Any) -> np.ndarray:
    x = as_features(h, "h", min_rows=2)
    lam = np.linalg.svd(centered(x), compute_uv=False) ** 2 / (x.shape[0] - 1)
    if lam.sum() == 0:
        raise ValueError("h has zero variance; its covariance spectrum is empty")
    return lam


def participation_ratio(h: Any) -> float:
    """(Σλ)² / Σλ² of the eigenvalues λ of the covariance of h."""
    lam = _cov_spectrum(h)
    return float(lam.sum() ** 2 / np.sum(lam**2))


def effective_rank(h: Any) -> float:
    """Roy & Vetterli (2007) effective rank exp(−Σ p log p), p = λ / Σλ, of the covariance of h."""
    lam = _cov_spectrum(h)
    p = lam[lam > 0] / lam.sum()
    return float(np.exp(-np.sum(p * np.log(p))))
