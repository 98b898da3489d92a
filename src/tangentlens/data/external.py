"""A user's data: an ``.npz`` file, a torchvision dataset on disk, or torch Datasets from Python.

Integer labels make a classification task (n_outputs = largest label + 1, or the dataset's
``classes``); float targets a regression with n_outputs = prod(y.shape[1:]). Images from
torchvision are scaled to [0, 1] (``ToTensor``) and standardized per channel with
train-split statistics; npz and Python data are used as given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .record import Dataset, check_range, rng, subset

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _record(name: str, x_tr: Any, y_tr: Any, x_te: Any, y_te: Any, seed: int,
            n_train: int | None, n_test: int | None, n_classes: int | None = None,
            info: dict | None = None) -> Dataset:
    """The Dataset record of four arrays, with seeded (stratified) train/test subsets."""
    arrays = [np.asarray(a) for a in (x_tr, y_tr, x_te, y_te)]
    for (key, a), (key_y, b) in ((("x_train", arrays[0]), ("y_train", arrays[1])),
                                 (("x_test", arrays[2]), ("y_test", arrays[3]))):
        if len(a) != len(b) or len(a) == 0:
            raise ValueError(f"{name}: {key} has {len(a)} rows and {key_y} {len(b)}; they must "
                             "match and be non-empty")
    if arrays[0].shape[1:] != arrays[2].shape[1:]:
        raise ValueError(f"{name}: x_train rows {arrays[0].shape[1:]} and x_test rows "
                         f"{arrays[2].shape[1:]} differ in shape")
    classify = np.issubdtype(arrays[1].dtype, np.integer)
    x_tr, y_tr, x_te, y_te = arrays
    x_tr, y_tr = subset("train", n_train, [x_tr, y_tr], rng(seed, 1), y_tr if classify else None)
    x_te, y_te = subset("test", n_test, [x_te, y_te], rng(seed, 2), y_te if classify else None)
    if classify:
        n_out = n_classes or int(max(arrays[1].max(), arrays[3].max())) + 1
        y_tr, y_te = (torch.as_tensor(y, dtype=torch.int64) for y in (y_tr, y_te))
    else:
        n_out = int(np.prod(y_tr.shape[1:]))
        y_tr, y_te = (torch.as_tensor(y, dtype=torch.float32) for y in (y_tr, y_te))
    x_tr, x_te = (torch.as_tensor(x) for x in (x_tr, x_te))
    if x_tr.is_floating_point():
        x_tr, x_te = x_tr.float(), x_te.float()
    return Dataset(name, "classification" if classify else "regression", n_out,
                   tuple(x_tr.shape[1:]), x_tr.contiguous(), y_tr, x_te.contiguous(), y_te,
                   info=info or {})


def load_npz(*, seed: int = 0, n_train: int | None = None, n_test: int | None = None,
             path: str | None = None) -> Dataset:
    """``np.load(path)`` (no pickles) with arrays x_train, y_train, x_test, y_test."""
    if path is None:
        raise ValueError("data.name='npz' needs data.path=<file.npz> holding "
                         f"{', '.join(NPZ_KEYS)}")
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"data.path={path!r}: no such file")
    with np.load(p, allow_pickle=False) as f:
        missing = [k for k in NPZ_KEYS if k not in f.files]
        if missing:
            raise ValueError(f"data.path={path!r} lacks arrays {missing}; it has {f.files}, "
                             f"an npz needs {', '.join(NPZ_KEYS)}")
        arrays = [f[k] for k in NPZ_KEYS]
    return _record("npz", *arrays, seed, n_train, n_test, info={"source": str(p.resolve())})


def load_torchvision(*, seed: int = 0, n_train: int | None = None, n_test: int | None = None,
                     dataset: str | None = None, root: str | None = None) -> Dataset:
    """``torchvision.datasets.<dataset>(root, train=True/False, download=False)``."""
    try:
        import torchvision
        from torchvision.transforms import ToTensor
    except ImportError as e:
        raise ValueError(f"data.name='torchvision' needs the torchvision package built for "
                         f"torch {torch.__version__} ({e})") from None
    names = sorted(n for n in dir(torchvision.datasets) if n[:1].isupper())
    cls = getattr(torchvision.datasets, dataset, None) if isinstance(dataset, str) else None
    if cls is None:
        raise ValueError(f"data.dataset={dataset!r} is not a torchvision dataset; valid: "
                         f"{', '.join(names)}")
    if root is None:
        raise ValueError(f"data.name='torchvision' needs data.root, the folder of the "
                         f"{dataset} files")
    try:
        train, test = (cls(root, train=flag, download=False, transform=ToTensor())
                       for flag in (True, False))
    except (RuntimeError, OSError) as e:
        raise FileNotFoundError(f"data.dataset={dataset!r}: files not found under "
                                f"data.root={root!r} ({e}); download them once with "
                                f"torchvision.datasets.{dataset}(root, download=True)") from None
    ds = from_torch(train, test, seed=seed, n_train=n_train, n_test=n_test, name=dataset)
    if ds.x_train.ndim == 4:
        mean = ds.x_train.mean((0, 2, 3), keepdim=True)
        std = ds.x_train.std((0, 2, 3), keepdim=True).clamp_min(1e-8)
        ds.x_train, ds.x_test = (ds.x_train - mean) / std, (ds.x_test - mean) / std
        ds.info["normalization"] = {"mean": mean.flatten().tolist(), "std": std.flatten().tolist()}
    ds.info["source"] = str(Path(root).expanduser().resolve())
    return ds


def _stack(ds: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) arrays of every (x, y) item of a map-style torch Dataset."""
    try:
        items = [ds[i] for i in range(len(ds))]
    except TypeError:
        raise ValueError(f"{what}={type(ds).__name__} is not a map-style torch Dataset "
                         "(len() and [i] returning (x, y))") from None
    if not items or not all(isinstance(it, (tuple, list)) and len(it) == 2 for it in items):
        raise ValueError(f"{what}: every item must be an (x, y) pair; got {type(items[0])}"
                         if items else f"{what} is empty")
    xs = np.stack([np.asarray(x) for x, _ in items])
    ys = np.asarray([np.asarray(y) for _, y in items])
    return xs, ys


def from_torch(train: Any, test: Any = None, *, seed: int = 0, n_train: int | None = None,
               n_test: int | None = None, name: str = "python",
               test_fraction: float = 0.2) -> Dataset:
    """A Dataset record from torch Datasets of (x, y) items; one Dataset is split seeded."""
    x_tr, y_tr = _stack(train, "data")
    if test is None:
        check_range("test_fraction", test_fraction, 0.0, 1.0)
        perm = rng(seed, 3).permutation(len(x_tr))
        cut = len(x_tr) - max(1, int(round(test_fraction * len(x_tr))))
        (x_tr, x_te), (y_tr, y_te) = ((a[perm[:cut]], a[perm[cut:]]) for a in (x_tr, y_tr))
    else:
        x_te, y_te = _stack(test, "data (test)")
    classes = getattr(train, "classes", None)
    return _record(name, x_tr, y_tr, x_te, y_te, seed, n_train, n_test,
                   len(classes) if classes else None, info={"source": type(train).__name__})
