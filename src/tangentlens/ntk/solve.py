"""Out-of-core kernel solve (K + ridge·I)⁻¹ rhs by a tiled Cholesky, without n×n copies.

The lower triangle of K is factored tile by tile (left-looking): each tile is read, turned
to float64, the ridge added to its diagonal in place, the float64 products of earlier
factor tiles subtracted, and the factor tile written back; then two tiled triangular
solves. Memory: a few ``block``² float64 tiles and rhs. Where the factor goes:

- a numpy array or ``np.memmap``: into the array itself (K's lower triangle is overwritten
  by L, in K's dtype; pass a float64 K for float64 accuracy), unless ``work`` is given;
- a ``tiled_ntk`` file (path): into ``work`` (default ``<path>.chol``); K is kept.

``work`` is a float64 scratch file (N²·8 bytes on disk), removed afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy.linalg import solve_triangular

from tangentlens.ntk.tiled import FileMatrix, open_kernel


class _ArrayMatrix:
    """``FileMatrix``'s read/write on an in-memory or memory-mapped (N, N) array."""

    def __init__(self, a: np.ndarray):
        self.a, self.shape, self.dtype = a, a.shape, a.dtype

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        return np.array(self.a[rows, cols])

    def write(self, row: int, col: int, block: np.ndarray) -> None:
        self.a[row:row + block.shape[0], col:col + block.shape[1]] = block

    def close(self) -> None:
        pass


def _slices(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _scratch(k, work: str | os.PathLike, block: int) -> FileMatrix:
    """A float64 copy of k's lower triangle tiles in the raw file ``work``."""
    n = k.shape[0]
    with open(work, "wb") as f:
        f.truncate(n * n * 8)
    out = FileMatrix(work, 0, (n, n), np.float64, writable=True)
    tiles = _slices(n, block)
    for j, c in enumerate(tiles):
        for r in tiles[j:]:
            out.write(r.start, c.start, k.read(r, c).astype(np.float64))
    return out


def cholesky_tiled(a, ridge: float = 0.0, block: int = 2048) -> None:
    """Overwrite the lower triangle of ``a`` (read/write by blocks) with chol(a + ridge·I);
    the strict upper triangle is left as it was."""
    tiles = _slices(a.shape[0], block)
    for j, c in enumerate(tiles):
        diag = None
        for r in tiles[j:]:
            tile = a.read(r, c)
            acc = tile.astype(np.float64)
            for p in tiles[:j]:
                acc -= a.read(r, p).astype(np.float64) @ a.read(c, p).astype(np.float64).T
            if diag is None:
                acc[np.diag_indices_from(acc)] += ridge
                try:
                    diag = np.linalg.cholesky(acc)
                except np.linalg.LinAlgError:
                    raise ValueError(
                        f"kernel matrix ({a.shape[0]}x{a.shape[0]}) plus ridge={ridge!r} is not "
                        f"positive definite (pivot block at {c.start}); use ridge > 0") from None
                acc = np.where(np.tri(len(acc), dtype=bool), diag, tile)  # keep K's upper part
            else:
                acc = solve_triangular(diag, acc.T, lower=True).T
            a.write(r.start, c.start, acc)


def cholesky_solve_tiled(l, rhs: np.ndarray, block: int = 2048) -> np.ndarray:
    """(L Lᵀ)⁻¹ rhs in float64 for the lower factor tiles of ``l``; rhs (N, m)."""
    tiles = _slices(l.shape[0], block)
    y = np.array(rhs, np.float64)
    for j, c in enumerate(tiles):  # L y = rhs
        for p in tiles[:j]:
            y[c] -= l.read(c, p).astype(np.float64) @ y[p]
        y[c] = solve_triangular(l.read(c, c).astype(np.float64), y[c], lower=True)
    for j in reversed(range(len(tiles))):  # Lᵀ x = y
        c = tiles[j]
        for p in tiles[j + 1:]:
            y[c] -= l.read(p, c).astype(np.float64).T @ y[p]
        y[c] = solve_triangular(l.read(c, c).astype(np.float64), y[c], lower=True, trans="T")
    return y


def solve_tiled(k, rhs, ridge: float = 0.0, block: int = 2048,
                work: str | os.PathLike | None = None) -> np.ndarray:
    """(K + ridge·I)⁻¹ rhs (float64) for a symmetric PSD K given as an (N, N) array/memmap
    (factored in place unless ``work``) or a ``tiled_ntk`` file (factored into ``work``).

    ``rhs``: (N,) or (N, m), N = n (trace) or n·O (full, rows ordered (sample, output)).
    """
    if ridge < 0:
        raise ValueError(f"ridge={ridge!r}; must be >= 0")
    if block < 1:
        raise ValueError(f"block={block!r}; must be a positive integer")
    is_file = isinstance(k, (str, os.PathLike))
    source = open_kernel(k) if is_file else _ArrayMatrix(k)
    n = source.shape[0]
    rhs = np.asarray(rhs)
    if rhs.shape[0] != n or rhs.ndim > 2:
        raise ValueError(f"rhs shape {rhs.shape} must be ({n},) or ({n}, m)")
    if is_file and work is None:
        work = Path(f"{os.fspath(k)}.chol")
    try:
        factor = source if work is None else _scratch(source, work, block)
        try:
            cholesky_tiled(factor, ridge, block)
            x = cholesky_solve_tiled(factor, rhs.reshape(n, -1), block)
        finally:
            factor.close()
    finally:
        source.close()
        if work is not None and Path(work).exists():
            Path(work).unlink()
    return x.reshape(rhs.shape)
