"""CIFAR-10 from the standard python-pickle batches (`cifar-10-batches-py`)."""

from __future__ import annotations

import os
import pickle
import tarfile
from pathlib import Path

import numpy as np

from .record import (
    Dataset, data_root, download, md5, rng, standardize_uint8, subset, to_tensors, uint8_stats,
)

FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
TAR_MD5 = "c58f30108f718f92721af3b95e74349a"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck"]


def _find(root: Path) -> Path:
    """The directory holding all six batch files: root, or a cifar-10-batches-py below it."""
    for d in (root, root / "cifar-10-batches-py", root / "cifar10" / "cifar-10-batches-py"):
        if all((d / f).is_file() for f in FILES):
            return d
    raise FileNotFoundError(
        f"CIFAR-10 batches not found in {root} (nor in {root / 'cifar-10-batches-py'}); "
        f"expected {', '.join(FILES)}. Download with:\n"
        f"  python -c \"import tangentlens.data as d; d.download_cifar10('{root}')\"\n"
        "or pass data_dir=... / set TANGENTLENS_DATA to the directory holding them."
    )


def _read(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for path in paths:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        xs.append(np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(batch[b"labels"], np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def load_cifar10(
    *, seed: int = 0, n_train: int | None = None, n_test: int | None = None,
    data_dir: str | os.PathLike | None = None,
) -> Dataset:
    """CIFAR-10 (3, 32, 32); /255 then standardized per channel with train-split stats."""
    d = _find(data_root(data_dir))
    x_tr, y_tr = _read([d / f for f in FILES[:5]])
    x_te, y_te = _read([d / FILES[5]])
    mean, std = zip(*(uint8_stats(x_tr[:, c], 1 / 255) for c in range(3)))
    x_tr, y_tr = subset("train", n_train, [x_tr, y_tr], rng(seed, 1), y_tr)
    x_te, y_te = subset("test", n_test, [x_te, y_te], rng(seed, 2), y_te)
    m, s = (np.array(v)[:, None, None] for v in (mean, std))
    x_tr, x_te = (standardize_uint8(x, 1 / 255, m, s) for x in (x_tr, x_te))
    return Dataset(
        "cifar10", "classification", 10, (3, 32, 32), *to_tensors(x_tr, y_tr, x_te, y_te),
        info={"source": str(d), "split": "standard: data_batch_1..5 train, test_batch test",
              "classes": CLASSES,
              "normalization": {"scale": 1 / 255, "mean": list(mean), "std": list(std)}},
    )


def download_cifar10(directory: str | os.PathLike) -> Path:
    """Download and unpack the CIFAR-10 python tarball (md5-checked) into `directory`."""
    d = Path(directory).expanduser()
    tar = d / "cifar-10-python.tar.gz"
    if not tar.is_file() or md5(tar) != TAR_MD5:
        download(URL, tar, TAR_MD5)
    with tarfile.open(tar) as f:
        f.extractall(d, filter="data")
    return d / "cifar-10-batches-py"

