"""scikit-learn's bundled 8×8 handwritten digits (1,797 images, no download)."""

from __future__ import annotations

import numpy as np

from .record import Dataset, rng, split_counts, stratified_order, subset, to_tensors


def load_digits(
    *, seed: int = 0, n_train: int | None = None, n_test: int | None = None,
    test_fraction: float = 0.2,
) -> Dataset:
    """Stratified seeded split; pixels/16 standardized with the train split's scalar mean/std."""
    from sklearn.datasets import load_digits as sk_load_digits

    raw = sk_load_digits()
    x = raw.data.reshape(-1, 1, 8, 8) / 16.0
    y = raw.target.astype(np.int64)
    n_te = split_counts(len(y), test_fraction)
    order = stratified_order(rng(seed, 0), y, len(y))
    tr, te = np.sort(order[n_te:]), np.sort(order[:n_te])
    mean, std = float(x[tr].mean()), float(x[tr].std())
    x = (x - mean) / std
    x_tr, y_tr = subset("train", n_train, [x[tr], y[tr]], rng(seed, 1), y[tr])
    x_te, y_te = subset("test", n_test, [x[te], y[te]], rng(seed, 2), y[te])
    return Dataset(
        "digits", "classification", 10, (1, 8, 8), *to_tensors(x_tr, y_tr, x_te, y_te),
        info={
            "source": "sklearn.datasets.load_digits",
            "split": f"stratified seeded split of 1797 images, test_fraction={test_fraction}",
            "normalization": {"scale": 1 / 16, "mean": mean, "std": std},
        },
    )
