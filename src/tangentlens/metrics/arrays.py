"""Array inputs of every metric: numpy or torch in, finite float64 features out."""

from __future__ import annotations

from typing import Any

import numpy as np


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


def paired(h: Any, h0: Any, names: tuple[str, str] = ("h", "h0")) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_features(h, names[0]), as_features(h0, names[1])
    if a.shape != b.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape, got "
            f"{np.shape(h)} and {np.shape(h0)}"
        )
    return a, b


def centered(x: np.ndarray) -> np.ndarray:
    return x - x.mean(axis=0, keepdims=True)
