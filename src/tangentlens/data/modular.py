"""Modular addition (a + b) mod p as token sequences [a, b, =] (grokking setup)."""

from __future__ import annotations

import numpy as np

from .record import Dataset, check_range, rng, to_tensors


def load_modular_addition(
    *, seed: int = 0, n_train: int | None = None, n_test: int | None = None,
    p: int = 113, train_frac: float = 0.3,
) -> Dataset:
    """All p² pairs as int64 tokens [a, b, p] (token p is "="), label (a + b) mod p.

    A seeded shuffle of the pairs gives round(train_frac·p²) train pairs and the rest as
    test; n_train / n_test override those counts (train and test never overlap).
    """
    check_range("p", p, 2, 10**4, integer=True)
    check_range("train_frac", train_frac, 0.0, 1.0)
    total = p * p
    n_tr = int(round(train_frac * total)) if n_train is None else n_train
    check_range("n_train", n_tr, 1, total - 1, integer=True)
    n_te = total - n_tr if n_test is None else n_test
    check_range("n_test", n_te, 1, total - n_tr, integer=True)
    a, b = np.divmod(np.arange(total), p)
    x = np.stack([a, b, np.full(total, p)], 1)
    y = (a + b) % p
    order = rng(seed, 0).permutation(total)
    tr, te = order[:n_tr], order[n_tr : n_tr + n_te]
    return Dataset(
        "modular_addition", "classification", p, (3,), *to_tensors(x[tr], y[tr], x[te], y[te]),
        info={"p": p, "d_vocab": p + 1, "equals_token": p,
              "split": f"seeded shuffle of all {total} pairs: {n_tr} train, {n_te} test"},
    )
