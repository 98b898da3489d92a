"""MNIST-1D (Greydanus 2020), generated offline by the `mnist1d` package."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np

from .record import Dataset, check_range, rng, subset, to_tensors


def load_mnist1d(
    *, seed: int = 0, n_train: int | None = None, n_test: int | None = None,
    num_samples: int = 5000, train_split: float = 0.8, shuffle_seq: bool = False,
) -> Dataset:
    """Signals of shape (1, 40), 10 classes; `seed` is the generator's seed (mnist1d's own
    default is 42). Other generator arguments keep mnist1d's defaults. The package
    standardizes with the scalar mean/std of all samples. numpy's and `random`'s global
    RNG states, which the generator reseeds, are restored afterwards.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    check_range("seed", seed, 0, 2**32 - 1, integer=True)  # np.random.seed's range
    check_range("num_samples", num_samples, 10, 10**7, integer=True)
    check_range("train_split", train_split, 0.0, 1.0)
    args = get_dataset_args(as_dict=True)
    args.update(seed=seed, num_samples=num_samples, train_split=train_split,
                shuffle_seq=bool(shuffle_seq))
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        raw = make_dataset(SimpleNamespace(**args))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    if len(raw["y"]) == 0 or len(raw["y_test"]) == 0:
        raise ValueError(f"train_split={train_split!r} with num_samples={num_samples} "
                         "leaves an empty split; expected a value strictly between 0 and 1")
    x_tr, y_tr = subset("train", n_train, [raw["x"][:, None], raw["y"]], rng(seed, 1), raw["y"])
    x_te, y_te = subset(
        "test", n_test, [raw["x_test"][:, None], raw["y_test"]], rng(seed, 2), raw["y_test"])
    args.pop("url")
    return Dataset(
        "mnist1d", "classification", 10, (1, args["final_seq_length"]),
        *to_tensors(x_tr, y_tr, x_te, y_te),
        info={"source": "mnist1d.data.make_dataset", "generator_args": args,
              "split": f"mnist1d's first {train_split:.0%} train, rest test",
              "normalization": "scalar mean/std over all generated samples (mnist1d)"},
    )
