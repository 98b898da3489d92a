"""The `Dataset` record and helpers shared by the dataset loaders."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass(repr=False)
class Dataset:
    """Train/test tensors plus metadata; see docs/architecture.md for the contract."""

    name: str
    task: str  # "classification" | "regression"
    n_outputs: int
    input_shape: tuple[int, ...]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    latents_train: torch.Tensor | None = None
    latents_test: torch.Tensor | None = None
    latent_names: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        return len(self.x_train)

    @property
    def n_test(self) -> int:
        return len(self.x_test)

    def summary(self) -> str:
        """A few readable lines: sizes, shapes, dtypes, latents and info keys."""
        lines = [
            f"Dataset {self.name!r}: {self.task}, n_outputs={self.n_outputs}, "
            f"input_shape={self.input_shape}",
            f"  train: x {tuple(self.x_train.shape)} {self.x_train.dtype}, "
            f"y {tuple(self.y_train.shape)} {self.y_train.dtype}",
            f"  test:  x {tuple(self.x_test.shape)}, y {tuple(self.y_test.shape)}",
        ]
        if self.latent_names:
            lines.append(f"  latents: {self.latent_names}")
        lines.append(f"  info: {sorted(self.info)}")
        return "\n".join(lines)

    __repr__ = summary


def rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent numpy Generator per (seed, stream) that never touches global state."""
    return np.random.default_rng([seed, *stream])


def check_range(what: str, value: Any, lo: float, hi: float, *, integer: bool = False) -> None:
    """Raise ValueError naming `what`, the bad value and the valid range [lo, hi]."""
    is_num = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if integer and not isinstance(value, (int, np.integer)):
        is_num = False
    if not is_num or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{what}={value!r} is invalid; expected {kind} in [{lo}, {hi}]")


def check_choice(what: str, value: Any, choices: list[str] | tuple[str, ...]) -> None:
    """Raise ValueError naming `what`, the bad value and the valid choices."""
    if value not in choices:
        raise ValueError(f"{what}={value!r} is invalid; valid choices: {', '.join(choices)}")


def stratified_order(gen: np.random.Generator, labels: np.ndarray | None, n: int) -> np.ndarray:
    """A random permutation of range(n); with labels, every prefix is class-stratified.

    Each item gets the key (rank within its class + 0.5) / class size under a random
    permutation, so classes interleave in proportion and prefixes are nested.
    """
    perm = gen.permutation(n)
    if labels is None:
        return perm
    lab = labels[perm]
    _, inverse, counts = np.unique(lab, return_inverse=True, return_counts=True)
    rank = np.empty(n)
    for c in range(len(counts)):
        idx = np.flatnonzero(inverse == c)
        rank[idx] = (np.arange(len(idx)) + 0.5) / counts[c]
    return perm[np.argsort(rank, kind="stable")]


def split_counts(n_total: int, test_fraction: float) -> int:
    """Number of test items for a test fraction in (0, 1), at least one each side."""
    check_range("test_fraction", test_fraction, 0.0, 1.0)
    n_test = int(round(n_total * test_fraction))
    if not 1 <= n_test <= n_total - 1:
        raise ValueError(
            f"test_fraction={test_fraction!r} leaves an empty split of {n_total} items; "
            f"expected a value in [{1 / n_total:.3g}, {1 - 1 / n_total:.3g}]"
        )
    return n_test


def subset(
    split: str, n: int | None, arrays: list[np.ndarray | None], gen: np.random.Generator,
    labels: np.ndarray | None = None,
) -> list[np.ndarray | None]:
    """Take a seeded (class-stratified if labels given) subset of n rows; None = all rows."""
    available = len(arrays[0])
    if n is None:
        return arrays
    check_range(f"n_{split}", n, 1, available, integer=True)
    idx = np.sort(stratified_order(gen, labels, available)[:n])
    return [None if a is None else a[idx] for a in arrays]


def uint8_stats(a: np.ndarray, scale: float) -> tuple[float, float]:
    """Exact mean and std of scale·a for a uint8 array, from its histogram (no float copy)."""
    counts = np.bincount(a.ravel(), minlength=256)
    v = np.arange(256) * scale
    mean = counts @ v / counts.sum()
    return float(mean), float(np.sqrt(counts @ (v - mean) ** 2 / counts.sum()))


def standardize_uint8(a: np.ndarray, scale: float, mean: Any, std: Any) -> np.ndarray:
    """float32 (scale·a − mean) / std, computed in place on one float copy."""
    x = a.astype(np.float32)
    x *= np.float32(scale)
    x -= np.asarray(mean, np.float32)
    x /= np.asarray(std, np.float32)
    return x


def to_tensors(*arrays: np.ndarray | None) -> list[torch.Tensor | None]:
    """numpy → torch: floats become float32, integers int64, None stays None."""
    out: list[torch.Tensor | None] = []
    for a in arrays:
        if a is None:
            out.append(None)
        elif np.issubdtype(a.dtype, np.floating):
            out.append(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)))
        else:
            out.append(torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)))
    return out


def data_root(data_dir: str | os.PathLike | None) -> Path:
    """data_dir if given, else $TANGENTLENS_DATA, else ./data."""
    return Path(data_dir or os.environ.get("TANGENTLENS_DATA") or "data").expanduser()


def md5(path: Path) -> str:
    """Hex md5 of a file."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest: Path, expected_md5: str) -> None:
    """Fetch url to dest with urllib and verify its md5 (removing the file on mismatch)."""
    import urllib.request

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:
        while chunk := r.read(1 << 20):
            f.write(chunk)
    got = md5(tmp)
    if got != expected_md5:
        tmp.unlink()
        raise OSError(f"md5 mismatch for {url}: got {got}, expected {expected_md5}")
    tmp.replace(dest)
