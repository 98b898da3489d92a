"""MNIST from the standard IDX .gz files (md5-verified), with a urllib downloader."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from .record import (
    Dataset, data_root, download, md5, rng, split_counts, standardize_uint8, stratified_order,
    subset, to_tensors, uint8_stats,
)

MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
TRAIN, TEST = list(MD5)[:2], list(MD5)[2:]
MIRRORS = ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"]


def read_idx(path: Path) -> np.ndarray:
    """Parse a gzipped IDX file (uint8 payload) into an array of its declared shape."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise ValueError(f"{path} is not a uint8 IDX file (magic {raw[:4].hex()})")
    ndim = raw[3]
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", ndim, offset=4))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find(root: Path) -> tuple[Path, bool]:
    """Directory holding the files (root or root/mnist) and whether the train files exist."""
    for d in (root, root / "mnist"):
        if all((d / f).is_file() for f in TEST):
            return d, all((d / f).is_file() for f in TRAIN)
    raise FileNotFoundError(
        f"MNIST files not found in {root} (nor in {root / 'mnist'}); expected "
        f"{', '.join(MD5)} (the two t10k files alone also work). Download with:\n"
        f"  python -c \"import tangentlens.data as d; d.download_mnist('{root / 'mnist'}')\"\n"
        "or pass data_dir=... / set TANGENTLENS_DATA to the directory holding them."
    )


def _read(d: Path, images: str, labels: str) -> tuple[np.ndarray, np.ndarray]:
    for name in (images, labels):
        got = md5(d / name)
        if got != MD5[name]:
            raise ValueError(
                f"{d / name} is corrupted: md5 {got}, expected {MD5[name]}; "
                "delete it and download it again with tangentlens.data.download_mnist"
            )
    return read_idx(d / images), read_idx(d / labels).astype(np.int64)


def load_mnist(
    *, seed: int = 0, n_train: int | None = None, n_test: int | None = None,
    data_dir: str | os.PathLike | None = None, test_fraction: float = 0.2,
) -> Dataset:
    """MNIST (1, 28, 28); pixels/255 standardized with the train split's scalar mean/std.

    With only the t10k files present, their 10,000 images are split (stratified, seeded,
    `test_fraction`) into train and test; `info["split"]` says which split was used.
    """
    d, full = _find(data_root(data_dir))
    x_te, y_te = _read(d, *TEST)
    if full:
        x_tr, y_tr = _read(d, *TRAIN)
        split = "standard: 60,000 train / 10,000 test files"
    else:
        n_te = split_counts(len(y_te), test_fraction)
        order = stratified_order(rng(seed, 0), y_te, len(y_te))
        tr, te = np.sort(order[n_te:]), np.sort(order[:n_te])
        x_tr, y_tr, x_te, y_te = x_te[tr], y_te[tr], x_te[te], y_te[te]
        split = (f"t10k only: its 10,000 images split into train/test, stratified, "
                 f"seed={seed}, test_fraction={test_fraction}")
    mean, std = uint8_stats(x_tr, 1 / 255)
    x_tr, y_tr = subset("train", n_train, [x_tr, y_tr], rng(seed, 1), y_tr)
    x_te, y_te = subset("test", n_test, [x_te, y_te], rng(seed, 2), y_te)
    x_tr, x_te = (standardize_uint8(x[:, None], 1 / 255, mean, std) for x in (x_tr, x_te))
    return Dataset(
        "mnist", "classification", 10, (1, 28, 28), *to_tensors(x_tr, y_tr, x_te, y_te),
        info={"source": str(d), "split": split,
              "normalization": {"scale": 1 / 255, "mean": mean, "std": std}},
    )


def download_mnist(directory: str | os.PathLike) -> Path:
    """Download the four MNIST .gz files into `directory` (md5-checked); returns it."""
    d = Path(directory).expanduser()
    for name, digest in MD5.items():
        if (d / name).is_file() and md5(d / name) == digest:
            continue
        for i, mirror in enumerate(MIRRORS):
            try:
                download(mirror + name, d / name, digest)
                break
            except OSError:
                if i == len(MIRRORS) - 1:
                    raise
    return d
