"""Representation-change metrics: arrays in, numbers out.

Inputs may be numpy arrays or torch tensors. Activations of shape (n, ...) are flattened
to (n, d) features; everything is computed in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "activation_flip_fraction",
    "as_features",
    "effective_rank",
    "gradient_span_fraction",
    "kernel_distance",
    "kernel_relative_change",
    "kernel_target_alignment",
    "linear_cka",
    "participation_ratio",
    "pca_subspace_metrics",
    "per_neuron_change",
    "rbf_cka",
    "relative_change",
    "to_numpy",
]


def to_numpy(x: Any, name: str = "x") -> np.ndarray:
    """Convert an array-like or torch tensor to a finite float64 numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf values; metrics need finite inputs")
    return a


def as_features(x: Any, name: str = "x", min_rows: int = 1) -> np.ndarray:
    """Flatten activations (n, ...) to a float64 feature matrix (n, d)."""
    a = to_numpy(x, name)
    if a.ndim == 0 or a.shape[0] < min_rows:
        raise ValueError(f"{name} must have shape (n, ...) with n >= {min_rows}, got {a.shape}")
    return a.reshape(a.shape[0], -1)


def _pair(h: Any, h0: Any, names: tuple[str, str] = ("h", "h0")) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_features(h, names[0]), as_features(h0, names[1])
    if a.shape != b.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape, got "
            f"{np.shape(h)} and {np.shape(h0)}"
        )
    return a, b


def _centered(x: np.ndarray) -> np.ndarray:
    return x - x.mean(axis=0, keepdims=True)


def relative_change(h: Any, h0: Any) -> float:
    """‖h − h0‖_F / ‖h0‖_F."""
    a, b = _pair(h, h0)
    norm0 = np.linalg.norm(b)
    if norm0 == 0:
        raise ValueError("h0 is all zeros; relative change is undefined")
    return float(np.linalg.norm(a - b) / norm0)


def per_neuron_change(h: Any, h0: Any, threshold: float = 0.1, eps: float = 1e-6) -> dict:
    """Per-neuron relative change ‖h[:, i] − h0[:, i]‖ / ‖h0[:, i]‖ summarized.

    Neurons with ‖h0[:, i]‖ <= eps · max_i ‖h0[:, i]‖ (dead at init) are skipped.
    Returns median, p90, frac_above (fraction of live neurons above `threshold`),
    n_skipped and n_neurons; statistics are NaN when every neuron is dead.
    """
    a, b = _pair(h, h0)
    norm0 = np.linalg.norm(b, axis=0)
    live = norm0 > eps * norm0.max()
    change = np.linalg.norm(a - b, axis=0)[live] / norm0[live]
    stats = (
        (np.median(change), np.quantile(change, 0.9), np.mean(change > threshold))
        if change.size
        else (np.nan,) * 3
    )
    return {
        "median": float(stats[0]),
        "p90": float(stats[1]),
        "frac_above": float(stats[2]),
        "n_skipped": int((~live).sum()),
        "n_neurons": int(live.size),
    }


def linear_cka(x: Any, y: Any) -> float:
    """Linear CKA ‖YᵀX‖_F² / (‖XᵀX‖_F ‖YᵀY‖_F) of column-centered features x (n, dx), y (n, dy).

    Uses the feature-space form (cheap when n ≫ d) or, when n < max(dx, dy), the equal
    Gram-matrix form ⟨XXᵀ, YYᵀ⟩_F / (‖XXᵀ‖_F ‖YYᵀ‖_F).
    """
    a, b = _centered(as_features(x, "x", 2)), _centered(as_features(y, "y", 2))
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
        return float(np.sum(_centered(_centered(k).T) * l))
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
    return np.linalg.svd(_centered(x), full_matrices=False)[2][:k].T


def pca_subspace_metrics(h: Any, h0: Any, k: int) -> dict:
    """Compare the top-k PCA subspaces of h0 and h (both centered).

    Returns `angles` (principal angles in radians, ascending; sine-based for small angles
    for accuracy), `overlap` = mean cos² of the angles, and `variance_explained` = fraction
    of h's centered variance captured by h0's top-k principal directions.
    """
    a, b = _pair(h, h0)
    if not 1 <= k <= min(a.shape):
        raise ValueError(f"k must be in 1..min(n, d) = 1..{min(a.shape)}, got {k}")
    v, v0 = _top_pcs(a, k), _top_pcs(b, k)
    cos = np.clip(np.linalg.svd(v0.T @ v, compute_uv=False), 0.0, 1.0)  # descending
    sin = np.clip(np.linalg.svd(v - v0 @ (v0.T @ v), compute_uv=False)[::-1], 0.0, 1.0)
    angles = np.where(cos**2 >= 0.5, np.arcsin(sin), np.arccos(cos))
    ac = _centered(a)
    total = np.sum(ac**2)
    return {
        "angles": angles,
        "overlap": float(np.mean(cos**2)),
        "variance_explained": float(np.sum((ac @ v0) ** 2) / total) if total else np.nan,
    }


def activation_flip_fraction(pre: Any, pre0: Any) -> float:
    """Fraction of entries whose sign (pre-activation > 0) differs from init."""
    a, b = _pair(pre, pre0, ("pre", "pre0"))
    return float(np.mean((a > 0) != (b > 0)))


def _cov_spectrum(h: Any) -> np.ndarray:
    x = as_features(h, "h", min_rows=2)
    lam = np.linalg.svd(_centered(x), compute_uv=False) ** 2 / (x.shape[0] - 1)
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
        kk = _centered(_centered(kk).T)
        yy = _centered(yy)
    t = yy @ yy.T
    den = np.linalg.norm(kk) * np.linalg.norm(t)
    if den == 0:
        raise ValueError("alignment is undefined: the (centered) kernel or target Gram is zero")
    return float(np.sum(kk * t) / den)
