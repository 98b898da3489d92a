"""What a run hands a notebook: the probe set and lazy, row-sliced activation arrays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np


@dataclass(frozen=True)
class Probe:
    """Probe-set arrays (rows: train first, then test); ``.train`` / ``.test`` select rows."""

    x: np.ndarray
    y: np.ndarray
    split: np.ndarray  # uint8: 0 train, 1 test
    latents: np.ndarray | None = None
    latent_names: list[str] | None = None

    def _rows(self, mask: np.ndarray) -> Probe:
        return Probe(
            self.x[mask],
            self.y[mask],
            self.split[mask],
            None if self.latents is None else self.latents[mask],
            self.latent_names,
        )

    @property
    def train(self) -> Probe:
        return self._rows(self.split == 0)

    @property
    def test(self) -> Probe:
        return self._rows(self.split == 1)

    def __len__(self) -> int:
        return len(self.x)


class Activations:
    """Lazy (rows, ...) view of one cached activation dataset; ``a[i:j]`` reads only those rows."""

    def __init__(self, run: Any, name: str, start: int, stop: int, label: str):
        self._run, self._name, self._start, self._stop, self.label = run, name, start, stop, label

    @property
    def _dset(self) -> h5py.Dataset:
        return self._run._file[self._name]

    @property
    def shape(self) -> tuple[int, ...]:
        return (self._stop - self._start, *self._dset.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self._dset.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self._stop - self._start

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if not key or key[0] is Ellipsis:
            rows, rest = slice(None), key
        else:
            rows, rest = key[0], key[1:]
        span = range(self._start, self._stop)
        with self._run._guard():
            if isinstance(rows, (int, np.integer)):
                return self._dset[(span[rows], *rest)]
            if isinstance(rows, slice):
                r = span[rows]
                if r.step > 0:
                    return self._dset[(slice(r.start, r.stop if r else r.start, r.step), *rest)]
                return self[(np.asarray(r) - self._start, *rest)]
            idx = np.asarray(rows)
            idx = np.flatnonzero(idx) if idx.dtype == bool else idx.astype(np.int64)
            idx = np.asarray(span)[idx] if len(idx) else idx  # bounds check, negative indices
            uniq, inverse = np.unique(idx, return_inverse=True)
            if not len(uniq):
                return self._dset[(slice(0, 0), *rest)]
            return self._dset[(uniq, *rest)][inverse.reshape(idx.shape)]

    def numpy(self) -> np.ndarray:
        return self[...]

    def torch(self):
        import torch

        return torch.from_numpy(self.numpy())

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def __repr__(self) -> str:
        return f"Activations({self.label}, shape={self.shape}, dtype={self.dtype})"
