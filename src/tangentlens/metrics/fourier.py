"""Fourier analysis over Z_p for modular-addition models (Nanda et al. 2023 style)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tangentlens.metrics.arrays import to_numpy


def fourier_basis(p: int) -> np.ndarray:
    """Rows of the real orthonormal Fourier basis of Z_p (p odd), shape (p, p).

    Row order: constant, then cos(2πkx/p), sin(2πkx/p) for k = 1..(p−1)/2; column x is the token.
    """
    if not isinstance(p, (int, np.integer)) or p < 3 or p % 2 == 0:
        raise ValueError(f"p must be an odd integer >= 3, got {p!r}")
    x = np.arange(p)
    rows = [np.full(p, 1 / np.sqrt(p))]
    for k in range(1, (p + 1) // 2):
        rows += [np.cos(2 * np.pi * k * x / p), np.sin(2 * np.pi * k * x / p)]
    basis = np.stack(rows)
    basis[1:] *= np.sqrt(2 / p)
    return basis


def frequency_power(w: Any, p: int) -> dict:
    """Power of W's first p rows (indexed by tokens 0..p−1) per Fourier frequency.

    W is e.g. W_E (d_vocab, d_model); rows beyond p are ignored, trailing axes flattened.
    Returns frequencies (1..(p−1)/2), power[k−1] = Σ (cos_k² + sin_k²) over W's columns, and
    constant = the squared constant component, kept separate.
    """
    a = to_numpy(w, "W")
    if a.ndim == 0 or a.shape[0] < p:
        raise ValueError(f"W must have at least p = {p} rows (one per token), got {a.shape}")
    sq = np.sum((fourier_basis(p) @ a[:p].reshape(p, -1)) ** 2, axis=1)
    return {
        "frequencies": np.arange(1, (p + 1) // 2),
        "power": sq[1::2] + sq[2::2],
        "constant": float(sq[0]),
    }


def top_k_fraction(power: Any, k: int = 5) -> float:
    """Fraction of the total of `power` held by its k largest entries."""
    pw = to_numpy(power, "power").ravel()
    if not 1 <= k <= pw.size:
        raise ValueError(f"k must be in 1..{pw.size} (number of power entries), got {k}")
    if np.any(pw < 0) or pw.sum() == 0:
        raise ValueError("power must be non-negative with a positive total")
    return float(np.sort(pw)[::-1][:k].sum() / pw.sum())
