"""Linear probes: how linearly decodable are labels or latents from a representation."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from tangentlens.metrics.arrays import as_features, to_numpy

C_GRID = np.logspace(-3, 1, 5)
ALPHA_GRID = np.logspace(-3, 6, 19)


def _standardize(xtr: np.ndarray, xte: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature standardization with train statistics, std floored at 0.1 × RMS std.

    The floor keeps near-dead units (e.g. ReLUs active on a few train inputs) from being
    amplified into huge outliers on test inputs; all-constant features become zeros.
    """
    mean, std = xtr.mean(axis=0), xtr.std(axis=0)
    std = np.maximum(std, 0.1 * np.sqrt(np.mean(std**2)))
    std[std == 0] = 1.0
    return (xtr - mean) / std, (xte - mean) / std


def _train_span(xtr: np.ndarray, xte: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in an orthonormal basis of the span of centered train rows (for d > n).

    Exact for L2-penalized linear models: their optimal weights lie in that span, so
    scores are unchanged while fits get cheaper.
    """
    lam, u = np.linalg.eigh(xtr @ xtr.T)
    keep = lam > 1e-10 * max(lam[-1], 1e-300)
    u, root = u[:, keep], np.sqrt(lam[keep])
    return u * root, (xte @ xtr.T) @ (u / root)


def _classify(xtr, ytr, xte, yte, cv: int, seed: int) -> dict:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    classes, counts = np.unique(ytr, return_counts=True)
    if classes.size < 2:
        raise ValueError(f"y_train must contain at least 2 classes, got {classes.tolist()}")

    acc = np.zeros(C_GRID.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for tr, va in StratifiedKFold(cv, shuffle=True, random_state=seed).split(xtr, ytr):
            m = LogisticRegression(max_iter=1000, tol=1e-3, warm_start=True)
            for i, c in enumerate(C_GRID):  # warm-started along the C path
                acc[i] += m.set_params(C=c).fit(xtr[tr], ytr[tr]).score(xtr[va], ytr[va])
        best = float(C_GRID[int(np.argmax(acc))])
        score = LogisticRegression(C=best, max_iter=1000).fit(xtr, ytr).score(xte, yte)
    return {
        "score": float(score),
        "chance": float(np.mean(yte == classes[np.argmax(counts)])),
        "C": best,
    }


def _regress(xtr, ytr, xte, yte) -> dict:
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score

    m = RidgeCV(alphas=ALPHA_GRID, alpha_per_target=True).fit(xtr, ytr)
    r2 = r2_score(yte, m.predict(xte), multioutput="raw_values")
    chance = r2_score(yte, np.broadcast_to(ytr.mean(axis=0), yte.shape), multioutput="raw_values")
    return {
        "score": float(r2.mean()),
        "scores": r2,
        "chance": float(chance.mean()),
        "alpha": np.atleast_1d(m.alpha_).astype(float),
    }


def fit_probe(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    kind: str = "classification",
    cv: int = 3,
    seed: int = 0,
) -> dict:
    """Fit a linear probe on train features and score it on test features.

    Features (n, ...) are flattened and standardized with train statistics (per-feature
    std floored at 0.1 × the RMS feature std; see `_standardize`).
    classification: L2 logistic regression (lbfgs), C picked from C_GRID by `cv`-fold
      stratified CV accuracy (folds shuffled with `seed`, CV fits warm-started along the C
      path with tol 1e-3, final fit tol 1e-4; convergence warnings silenced). When d > n_train the features are first expressed (exactly) in a basis of
      the train span. Returns score (test accuracy), chance (test accuracy of the majority
      train class) and C.
    regression: RidgeCV over ALPHA_GRID with one alpha per target column, chosen by exact
      leave-one-out (`cv` is not used; for d > n it works on the n × n Gram matrix).
      y is (n,) or (n, k). Returns score (mean test R²), scores (R² per column), chance
      (mean test R² of predicting the train mean) and alpha.
    """
    xtr, xte = as_features(x_train, "x_train", 2), as_features(x_test, "x_test")
    if xtr.shape[1] != xte.shape[1]:
        raise ValueError(
            f"x_train and x_test need the same features, got {np.shape(x_train)} "
            f"and {np.shape(x_test)}"
        )
    ytr, yte = (
        y.detach().cpu().numpy() if hasattr(y, "detach") else np.asarray(y)
        for y in (y_train, y_test)
    )
    for name, x, y in (("train", xtr, ytr), ("test", xte, yte)):
        if y.ndim == 0 or y.shape[0] != x.shape[0]:
            raise ValueError(f"y_{name} needs {x.shape[0]} rows to match x_{name}, got {y.shape}")
    if not isinstance(cv, (int, np.integer)) or cv < 2:
        raise ValueError(f"cv must be an integer >= 2, got {cv!r}")
    xtr, xte = _standardize(xtr, xte)
    if kind == "classification":
        if ytr.ndim != 1 or yte.ndim != 1:
            raise ValueError(f"classification needs 1-D labels, got {ytr.shape} and {yte.shape}")
        if xtr.shape[1] > xtr.shape[0]:
            xtr, xte = _train_span(xtr, xte)
        return _classify(xtr, ytr, xte, yte, cv, seed)
    if kind == "regression":
        ytr, yte = to_numpy(ytr, "y_train"), to_numpy(yte, "y_test")
        return _regress(xtr, ytr.reshape(len(ytr), -1), xte, yte.reshape(len(yte), -1))
    raise ValueError(f"kind must be 'classification' or 'regression', got {kind!r}")
