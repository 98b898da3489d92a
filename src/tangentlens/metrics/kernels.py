"""Kernel comparisons: kernel distance, relative change, kernel-target alignment."""

from __future__ import annotations

from typing import Any

import numpy as np

from .arrays import centered, to_numpy


def _kernel(k: Any, name: str) -> np.ndarray:
    a = to_numpy(k, name)
    if a.ndim not in (2, 3, 4):
        raise ValueError(f"{name} must be (n1, n2), (n1, n2, O) or (n1, n2, O, O), got {a.shape}")
    return a


def _kernel_pair(k1: Any, k2: Any, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    a, b = _kernel(k1, names[0]), _kernel(k2, names[1])
    if a.shape != b.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape, got {a.shape} and {b.shape}"
        )
    return a, b


def kernel_distance(k1: Any, k2: Any) -> float:
    """Kernel distance 1 − ⟨K1, K2⟩_F / (‖K1‖_F ‖K2‖_F) (Fort et al. 2020).

    (n, n, O, O) kernels are compared as their (nO, nO) flattening (every entry counts).
    """
    a, b = _kernel_pair(k1, k2, ("k1", "k2"))
    den = np.linalg.norm(a) * np.linalg.norm(b)
    if den == 0:
        raise ValueError("kernel distance is undefined for an all-zero kernel")
    return float(1.0 - np.sum(a * b) / den)


def kernel_relative_change(k: Any, k0: Any) -> float:
    """‖K − K0‖_F / ‖K0‖_F over all entries (any of the accepted kernel shapes)."""
    a, b = _kernel_pair(k, k0, ("k", "k0"))
    norm0 = np.linalg.norm(b)
    if norm0 == 0:
        raise ValueError("k0 is all zeros; relative change is undefined")
    return float(np.linalg.norm(a - b) / norm0)


def kernel_target_alignment(k: Any, y: Any, center: bool = True) -> float:
    """Alignment ⟨K, YYᵀ⟩_F / (‖K‖_F ‖YYᵀ‖_F) of a kernel with targets.

    `y` with an integer dtype and shape (n,) is treated as class labels and one-hot encoded;
    otherwise y is (n,) or (n, c) real targets. A per-output kernel (n, n, O, O) or (n, n, O)
    is reduced to (n, n) by the trace over outputs. By default (center=True) K and YYᵀ are
    centered with H = I − 11ᵀ/n (centered alignment, Cortes et al. 2012), so constant offsets
    shared by all inputs do not inflate the score; center=False gives the classic
    Cristianini et al. (2002) alignment.
    """
    kk = _kernel(k, "k")
    if kk.ndim == 4:
        kk = np.einsum("ijoo->ij", kk)
    elif kk.ndim == 3:
        kk = kk.sum(axis=2)
    n = kk.shape[0]
    if kk.shape != (n, n):
        raise ValueError(f"k must be square over inputs (n, n, ...), got {np.shape(k)}")
    yy = y.detach().cpu().numpy() if hasattr(y, "detach") else np.asarray(y)
    if yy.ndim == 1 and np.issubdtype(yy.dtype, np.integer):
        yy = yy[:, None] == np.unique(yy)[None, :]
    yy = to_numpy(yy, "y")
    yy = yy[:, None] if yy.ndim == 1 else yy
    if yy.ndim != 2 or yy.shape[0] != n:
        raise ValueError(f"y must be (n,) or (n, c) with n = {n} to match k, got {np.shape(y)}")
    if center:
        kk = centered(centered(kk).T)
        yy = centered(yy)
    t = yy @ yy.T
    den = np.linalg.norm(kk) * np.linalg.norm(t)
    if den == 0:
        raise ValueError("alignment is undefined: the (centered) kernel or target Gram is zero")
    return float(np.sum(kk * t) / den)
