"""Representation similarity: linear and RBF CKA, PCA-subspace angles and overlap."""

from __future__ import annotations

from typing import Any

import numpy as np

from .arrays import as_features, centered, paired


def linear_cka(x: Any, y: Any) -> float:
    """Linear CKA ‖YᵀX‖_F² / (‖XᵀX‖_F ‖YᵀY‖_F) of column-centered features x (n, dx), y (n, dy).

    Uses the feature-space form (cheap when n ≫ d) or, when n < max(dx, dy), the equal
    Gram-matrix form ⟨XXᵀ, YYᵀ⟩_F / (‖XXᵀ‖_F ‖YYᵀ‖_F).
    """
    a, b = centered(as_features(x, "x", 2)), centered(as_features(y, "y", 2))
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"x and y need the same number of rows n, got {np.shape(x)} and {np.shape(y)}"
        )
    if a.shape[0] < max(a.shape[1], b.shape[1]):
        ka, kb = a @ a.T, b @ b.T
        num, den = np.sum(ka * kb), np.linalg.norm(ka) * np.linalg.norm(kb)
    else:
        num = np.linalg.norm(b.T @ a) ** 2
        den = np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)
    if den == 0:
        raise ValueError("CKA is undefined: x or y has zero variance")
    return float(num / den)


def _rbf_gram(x: np.ndarray, sigma: float | None, name: str) -> np.ndarray:
    sq = np.sum(x**2, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
    np.fill_diagonal(d2, 0.0)
    if sigma is None:
        sigma = float(np.median(np.sqrt(d2[np.triu_indices(len(x), 1)])))
    if not sigma > 0:
        raise ValueError(f"RBF bandwidth for {name} must be > 0, got {sigma} (all rows equal?)")
    return np.exp(-d2 / (2 * sigma**2))


def _hsic(k: np.ndarray, l: np.ndarray, debiased: bool) -> float:
    """HSIC up to a factor common to all pairs: biased tr(KHLH), or Song et al. (2012) unbiased."""
    if not debiased:
        return float(np.sum(centered(centered(k).T) * l))
    n = k.shape[0]
    k, l = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
    s = np.sum(k * l) + k.sum() * l.sum() / ((n - 1) * (n - 2)) - 2 / (n - 2) * k.sum(0) @ l.sum(0)
    return float(s / (n * (n - 3)))


def rbf_cka(x: Any, y: Any, sigma: float | None = None, debiased: bool = False) -> float:
    """CKA with RBF kernels exp(−‖xi − xj‖² / 2σ²) via HSIC on Gram matrices.

    sigma=None uses the median pairwise distance, separately for x and y; a float
    sigma is used for both. debiased=True uses
    the unbiased HSIC estimator (Song et al. 2012; Nguyen et al. 2021), needs n >= 4 and can
    be slightly negative for unrelated data.
    """
    a, b = as_features(x, "x", 4 if debiased else 2), as_features(y, "y", 2)
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"x and y need the same number of rows n, got {np.shape(x)} and {np.shape(y)}"
        )
    k, l = _rbf_gram(a, sigma, "x"), _rbf_gram(b, sigma, "y")
    den = _hsic(k, k, debiased) * _hsic(l, l, debiased)
    if not den > 0:
        raise ValueError("CKA is undefined: the self-HSIC of x or y is not positive")
    return float(_hsic(k, l, debiased) / np.sqrt(den))


def _top_pcs(x: np.ndarray, k: int) -> np.ndarray:
    """Orthonormal (d, k) basis of the top-k principal directions of centered x."""
    return np.linalg.svd(centered(x), full_matrices=False)[2][:k].T


def pca_subspace_metrics(h: Any, h0: Any, k: int) -> dict:
    """Compare the top-k PCA subspaces of h0 and h (both centered).

    Returns `angles` (principal angles in radians, ascending; sine-based for small angles
    for accuracy), `overlap` = mean cos² of the angles, and `variance_explained` = fraction
    of h's centered variance captured by h0's top-k principal directions.
    """
    a, b = paired(h, h0)
    if not 1 <= k <= min(a.shape):
        raise ValueError(f"k must be in 1..min(n, d) = 1..{min(a.shape)}, got {k}")
    v, v0 = _top_pcs(a, k), _top_pcs(b, k)
    cos = np.clip(np.linalg.svd(v0.T @ v, compute_uv=False), 0.0, 1.0)  # descending
    sin = np.clip(np.linalg.svd(v - v0 @ (v0.T @ v), compute_uv=False)[::-1], 0.0, 1.0)
    angles = np.where(cos**2 >= 0.5, np.arcsin(sin), np.arccos(cos))
    ac = centered(a)
    total = np.sum(ac**2)
    return {
        "angles": angles,
        "overlap": float(np.mean(cos**2)),
        "variance_explained": float(np.sum((ac @ v0) ** 2) / total) if total else np.nan,
    }
