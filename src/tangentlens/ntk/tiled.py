"""Tiled, resumable empirical NTK K(x, x) in an HDF5 file, for kernels larger than memory.

``tiled_ntk(model, x, "K.h5", tile=T)`` splits x into tiles of T samples and computes only
the tiles on or above the diagonal (each is also written, transposed, below it), handing
them as items to an executor (``executors.py``: local, Ray, ...); this process alone writes.
The file holds two contiguous datasets whose storage is allocated when it is created:

- ``K``: trace (n, n), or full (n, O, n, O), i.e. the (n·O × n·O) matrix kernel regression
  solves (``solve.solve_tiled``); attrs record the problem (n, tile, mode, ...).
- ``done``: (tiles, tiles) uint8, 1 where tile (I, J ≥ I) is finished.

Their places in the file never change after creation (made under a temporary name, then
renamed), so tiles are written by ``pwrite`` at fixed offsets with no HDF5 metadata update:
nothing a SIGKILL can tear. A tile's bytes are synced before its ``done`` byte is set; a
rerun with the same arguments skips finished tiles and recomputes the rest (tiles are
deterministic, so a resumed K equals an uninterrupted one bitwise). Memory: a few tiles and
their features (``empirical_ntk``), never n².
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tangentlens.executors import TasksFailed
from tangentlens.ntk.empirical import IMPLEMENTATIONS, empirical_ntk, pair_flops
from tangentlens.ntk.jacobian import Params, check_choice, default_params, output_dim

TILE_MODES = ("trace", "full")


class TileError(TasksFailed):
    """Some tiles failed; the finished ones are kept and a rerun computes the rest."""


class FileMatrix:
    """A 2-D C-ordered array at ``offset`` in a file, read and written by blocks (pread/pwrite,
    no mapping, so reading or writing it does not grow this process's memory)."""

    def __init__(self, path: str | os.PathLike, offset: int, shape: tuple[int, int],
                 dtype: np.dtype, writable: bool = False):
        self.path, self.offset, self.shape = os.fspath(path), offset, tuple(shape)
        self.dtype = np.dtype(dtype)
        self._fd = os.open(self.path, os.O_RDWR if writable else os.O_RDONLY)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    __del__ = close

    def _at(self, row: int, col: int) -> int:
        return self.offset + (row * self.shape[1] + col) * self.dtype.itemsize

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        out = np.empty((rows.stop - rows.start, cols.stop - cols.start), self.dtype)
        width = out.shape[1] * self.dtype.itemsize
        for k, r in enumerate(range(rows.start, rows.stop)):
            buf = os.pread(self._fd, width, self._at(r, cols.start))
            out[k] = np.frombuffer(buf, self.dtype)
        return out

    def write(self, row: int, col: int, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, self.dtype)
        for k in range(block.shape[0]):
            view, offset = memoryview(block[k]).cast("B"), self._at(row + k, col)
            while view:
                n = os.pwrite(self._fd, view, offset)
                view, offset = view[n:], offset + n

    def sync(self) -> None:
        os.fdatasync(self._fd)


def _offsets(path: Path) -> tuple[dict, int, tuple[int, ...], np.dtype, int]:
    import h5py

    with h5py.File(path, "r") as f:
        k, done = f["K"], f["done"]
        return (dict(k.attrs), k.id.get_offset(), k.shape, k.dtype, done.id.get_offset())


def open_kernel(path: str | os.PathLike, writable: bool = False) -> FileMatrix:
    """The kernel of a ``tiled_ntk`` file as an (N, N) ``FileMatrix`` (N = n or n·O)."""
    _, offset, shape, dtype, _ = _offsets(Path(path))
    size = int(np.prod(shape[: len(shape) // 2]))
    return FileMatrix(path, offset, (size, size), dtype, writable)


def _create(path: Path, shape: tuple[int, ...], dtype: np.dtype, tiles: int,
            attrs: dict) -> None:
    """Create the file with both datasets allocated (K not filled), atomically by rename."""
    import h5py

    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        dsid = h5py.h5d.create(f.id, b"K", h5py.h5t.py_create(dtype),
                               h5py.h5s.create_simple(shape), dcpl=dcpl)
        f["K"].attrs.update(attrs)
        dsid.close()
        f.create_dataset("done", data=np.zeros((tiles, tiles), np.uint8))
    os.replace(tmp, path)


@dataclass
class TileKernel:
    """Picklable tile computer: ``(I, J)`` → the (rows·O, cols·O) block of K. The features
    of the last tile row's samples are kept (not pickled) for the next tile of that row."""

    model: nn.Module
    x: torch.Tensor
    params: Params
    mode: str
    implementation: str
    block_size: int
    tile: int
    _row: tuple = field(default=(-1, None), init=False, repr=False, compare=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_row": (-1, None)}

    def __call__(self, ij: tuple[int, int]) -> np.ndarray:
        i, j = ij
        rows = self.x[i * self.tile:(i + 1) * self.tile]
        cols = None if i == j else self.x[j * self.tile:(j + 1) * self.tile]
        if self._row[0] != i:
            self._row = (i, {})
        with torch.no_grad():
            k = empirical_ntk(self.model, rows, cols, self.params, self.mode,
                              self.implementation, self.block_size, self._row[1])
        if self.mode == "full":
            k = k.permute(0, 2, 1, 3).reshape(k.shape[0] * k.shape[2], -1)
        return k.cpu().numpy()


@dataclass(frozen=True)
class TiledResult:
    """Where K is, how many tiles this call computed, and how many K has (upper triangle)."""

    path: Path
    computed: int
    total: int


def _fingerprint(kernel: TileKernel) -> str:
    h = hashlib.sha256()
    h.update(kernel.x.detach().cpu().contiguous().numpy().tobytes())
    for name in sorted(kernel.params):
        h.update(name.encode())
        h.update(kernel.params[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def tiled_ntk(model: nn.Module, x: torch.Tensor, out: str | os.PathLike, tile: int = 1024,
              mode: str = "trace", params: Params | None = None, implementation: str = "auto",
              block_size: int = 64, executor=None, progress: bool = False) -> TiledResult:
    """Compute (or finish) K(x, x) of ``model`` tile by tile into the HDF5 file ``out``.

    ``tile`` should be a multiple of ``block_size`` (then every entry equals the one of
    ``empirical_ntk(model, x, mode=mode, block_size=block_size)`` bitwise). ``executor``
    (default: in-process) receives ``TileKernel`` once and the tile indices as items.
    Raises ``TileError`` if tiles failed (the others are kept).
    """
    from tqdm.auto import tqdm

    from tangentlens.executors import LocalExecutor

    check_choice("mode", mode, TILE_MODES)
    check_choice("implementation", implementation, IMPLEMENTATIONS)
    if tile < 1 or block_size < 1:
        raise ValueError(f"tile={tile!r} and block_size={block_size!r} must be positive")
    params = default_params(model, params)
    n, n_out = len(x), output_dim(model, params, x)
    if implementation == "auto":
        flops = pair_flops(model, params, x[:1], mode, n_out)
        implementation = min(flops, key=flops.get)
    kernel = TileKernel(model, x, params, mode, implementation, block_size, tile)
    tiles, m = -(-n // tile), 1 if mode == "trace" else n_out
    attrs = {"n": n, "outputs": n_out, "tile": tile, "mode": mode, "block_size": block_size,
             "implementation": implementation, "fingerprint": _fingerprint(kernel)}
    path = Path(out)
    if not path.exists():
        dtype = np.dtype(str(next(iter(params.values())).dtype).removeprefix("torch."))
        _create(path, (n, n) if mode == "trace" else (n, n_out, n, n_out), dtype, tiles, attrs)
    old, k_off, _, dtype, done_off = _offsets(path)
    diff = sorted(key for key in attrs if old.get(key) != attrs[key])
    if diff:
        raise ValueError(f"{path} holds a kernel of another problem (differs in {diff}); "
                         "delete it or choose another --out")
    matrix = FileMatrix(path, k_off, (n * m, n * m), dtype, writable=True)
    done = FileMatrix(path, done_off, (tiles, tiles), np.uint8, writable=True)
    try:
        flags = done.read(slice(0, tiles), slice(0, tiles))
        todo = [(i, j) for i in range(tiles) for j in range(i, tiles) if not flags[i, j]]
        total = tiles * (tiles + 1) // 2
        executor = executor if executor is not None else LocalExecutor(1)
        failed = []
        with tqdm(total=total, initial=total - len(todo), desc="eNTK tiles", unit="tile",
                  disable=not progress) as bar:
            for idx, block in executor.map(kernel, todo):
                if isinstance(block, BaseException):
                    failed.append((todo[idx], block))
                    continue
                i, j = todo[idx]
                matrix.write(i * tile * m, j * tile * m, block)
                if i != j:
                    matrix.write(j * tile * m, i * tile * m, block.T)
                matrix.sync()
                done.write(i, j, np.ones((1, 1), np.uint8))
                bar.update()
    finally:
        matrix.close()
        done.close()
    if failed:
        (i, j), e = failed[0]
        raise TileError(f"{len(failed)} of {len(todo)} tiles failed (first: tile ({i}, {j}): "
                        f"{type(e).__name__}: {e}); rerun to compute them")
    return TiledResult(path, len(todo), total)
