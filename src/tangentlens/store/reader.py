"""Notebook API over one run file: ``open_run(path) -> Run``; data is read lazily."""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import h5py
import numpy as np

from .journal import SnapshotFile, journal_path
from .layout import (
    FORMAT_VERSION,
    KIND_INDEX,
    KIND_RUN,
    SPLITS,
    VIEWS,
    RunFileError,
    StoreKeyError,
    regime_key,
    unknown,
)

if TYPE_CHECKING:
    import pandas as pd

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _has_hdf5_signature(path: Path) -> bool:
    with open(path, "rb") as fh:
        for offset in (0, 512, 1024, 2048):
            fh.seek(offset)
            if fh.read(8) == _HDF5_SIGNATURE:
                return True
    return False


def open_hdf5(path: str | os.PathLike) -> h5py.File:
    """Open any tangentlens file read-only, as of its last committed write; clear errors."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such run file: {path}")
    if path.is_dir():
        raise RunFileError(
            f"{path}: is a directory, not a run file (use open_runs for directories)"
        )
    if path.stat().st_size == 0:
        raise RunFileError(f"{path}: empty file (0 bytes), not a tangentlens run file")
    try:  # a journal means an unfinished write session: read the state before it
        return (
            h5py.File(SnapshotFile(path), "r")
            if journal_path(path).exists()
            else h5py.File(path, "r", locking=False)
        )
    except OSError as e:
        problem = (
            "truncated or corrupted HDF5 file" if _has_hdf5_signature(path) else "not an HDF5 file"
        )
        raise RunFileError(f"{path}: {problem} ({str(e).split(' (')[0]})") from None


def _check_kind(path: Path, f: h5py.File, kind: str) -> None:
    found, version = f.attrs.get("kind"), f.attrs.get("format_version")
    if found != kind or version is None:
        what = {
            KIND_INDEX: "a tangentlens index: use open_runs()",
            KIND_RUN: "a tangentlens run file: use open_run()",
        }.get(found, "an HDF5 file not written by tangentlens (no 'kind' attribute)")
        raise RunFileError(f"{path}: is {what}")
    if int(version) > FORMAT_VERSION:
        raise RunFileError(
            f"{path}: format_version {int(version)} is newer than the {FORMAT_VERSION} "
            "this tangentlens reads; upgrade tangentlens"
        )


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

    def __init__(self, run: Run, name: str, start: int, stop: int, label: str):
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


class Run:
    """One run file, opened read-only; see docs/file-format.md for the layout."""

    def __init__(self, path: str | os.PathLike, include_incomplete: bool = False):
        self.path, self.include_incomplete = Path(path), include_incomplete
        self._h5: h5py.File | None = None
        self._flags: dict[str, dict[int, bool]] = {}
        f = self._file
        try:
            _check_kind(self.path, f, KIND_RUN)
        except RunFileError:
            self.close()
            raise
        self.attrs: dict[str, Any] = {
            k: v.item() if isinstance(v, np.generic) else v
            for k, v in f.attrs.items()
            if k != "config"
        }
        self.config: dict = json.loads(f.attrs["config"])

    # -- file handling ----------------------------------------------------------------------
    @property
    def _file(self) -> h5py.File:
        if self._h5 is None or not self._h5.id.valid:
            self._h5 = open_hdf5(self.path)
        return self._h5

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except OSError as e:
            raise RunFileError(f"{self.path}: cannot read ({e})") from None

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def __getstate__(self) -> dict:
        return {"path": self.path, "include_incomplete": self.include_incomplete}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["include_incomplete"])

    # -- structure --------------------------------------------------------------------------
    @property
    def complete(self) -> bool:
        """True when the writer closed the run normally."""
        return bool(self.attrs.get("complete", False))

    @property
    def seed(self) -> int | None:
        return self.attrs.get("seed")

    @functools.cached_property
    def regimes(self) -> list[str]:
        return sorted(self._file["regimes"], key=regime_key)

    def _step_flags(self, regime: str) -> dict[int, bool]:
        if regime not in self._flags:
            if regime not in self.regimes:
                raise unknown("regime", regime, self.regimes)
            steps = self._file[f"regimes/{regime}"].get("steps", {})
            self._flags[regime] = dict(
                sorted((int(s), bool(g.attrs.get("complete", False))) for s, g in steps.items())
            )
        return self._flags[regime]

    def steps(self, regime: str) -> list[int]:
        """Sorted complete steps of ``regime`` (all steps if ``include_incomplete``)."""
        return [s for s, ok in self._step_flags(regime).items() if ok or self.include_incomplete]

    def incomplete_steps(self, regime: str) -> list[int]:
        """Steps whose write never finished (skipped unless ``include_incomplete``)."""
        return [s for s, ok in self._step_flags(regime).items() if not ok]

    def _step_group(self, regime: str, step: int) -> h5py.Group:
        valid = self.steps(regime)
        if step not in valid:
            if step in self.incomplete_steps(regime):
                raise StoreKeyError(
                    f"step {step} of regime {regime!r} is incomplete (its write never "
                    f"finished); open_run(..., include_incomplete=True) reads it; "
                    f"complete steps: {valid}"
                )
            raise unknown("step", step, valid, f" for regime {regime!r}")
        return self._file[f"regimes/{regime}/steps/{step}"]

    @functools.cached_property
    def views(self) -> dict[str, list[str]]:
        """Views per regime: {'sgd': ['network'], 'linearized': ['network', 'tangent']}."""
        out = {}
        for r in self.regimes:
            found = {v for s in self.steps(r) for v in self._step_group(r, s) if v != "params"}
            out[r] = [v for v in VIEWS if v in found]
        return out

    @functools.cached_property
    def _hook_info(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Hook → (shape, dtype), from the first step of each regime, in model order."""
        info: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        for r in self.regimes:
            steps = self.steps(r)
            for view in self.views[r] if steps else ():
                for hook, d in self._step_group(r, steps[0]).get(view, {}).items():
                    info.setdefault(hook, (d.shape, d.dtype))
        return info

    @property
    def hooks(self) -> list[str]:
        return list(self._hook_info)

    # -- data -------------------------------------------------------------------------------
    @functools.cached_property
    def probe(self) -> Probe:
        g = self._file["probe"]
        with self._guard():
            names = [
                n.decode() if isinstance(n, bytes) else str(n)
                for n in g.attrs.get("latent_names", [])
            ]
            return Probe(
                g["x"][:],
                g["y"][:],
                g["split"][:],
                g["latents"][:] if "latents" in g else None,
                names or None,
            )

    def activations(
        self, regime: str, step: int, hook: str, view: str = "network", split: str = "test"
    ) -> Activations:
        """Lazy array of ``hook`` at ``step`` of ``regime`` on the probe rows of ``split``."""
        group = self._step_group(regime, step)
        if view not in group or view == "params":
            raise unknown("view", view, self.views[regime], f" for regime {regime!r}")
        if hook not in group[view]:
            raise unknown(
                "hook", hook, list(group[view]), f" for {regime!r} step {step} view {view!r}"
            )
        if split not in SPLITS:
            raise unknown("split", split, SPLITS)
        n_train = int(self._file["probe"].attrs["n_train"])
        n = len(self._file["probe/split"])
        start, stop = {"train": (0, n_train), "test": (n_train, n), "all": (0, n)}[split]
        label = f"{regime} step {step} {view} {hook} {split}"
        return Activations(self, group[view][hook].name, start, stop, label)

    def params(self, regime: str, step: int) -> dict[str, Any]:
        """θ snapshot at ``step`` as {name: torch tensor}."""
        group = self._step_group(regime, step)
        if "params" not in group:
            having = [s for s in self.steps(regime) if "params" in self._step_group(regime, s)]
            raise StoreKeyError(
                f"no parameter snapshot for regime {regime!r} step {step}; "
                f"steps with snapshots: {having}"
            )
        import torch

        with self._guard():
            return {
                k: torch.from_numpy(d[()]) if d.ndim else torch.tensor(d[()])
                for k, d in group["params"].items()
            }

    def metrics(self, regime: str | None = None) -> pd.DataFrame:
        """Metrics table of ``regime``; all regimes (with a ``regime`` column) when None."""
        import pandas as pd

        if regime is None:
            frames = [self.metrics(r).assign(regime=r) for r in self.regimes]
            df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"step": []})
            return df[["regime", *[c for c in df.columns if c != "regime"]]] if frames else df
        if regime not in self.regimes:
            raise unknown("regime", regime, self.regimes)
        g = self._file[f"regimes/{regime}"].get("metrics")
        with self._guard():
            return pd.DataFrame({c: d[:] for c, d in g.items()} if g is not None else {"step": []})

    def __repr__(self) -> str:
        size = self.path.stat().st_size if self.path.exists() else 0
        state = "complete" if self.complete else "incomplete: the writer did not finish"
        lines = [f"Run {self.path}  ({size / 2**20:.1f} MiB, {state})", "  regimes:"]
        for r in self.regimes:
            s, bad = self.steps(r), self.incomplete_steps(r)
            shown = ", ".join(map(str, s if len(s) <= 8 else [*s[:4], "…", *s[-2:]]))
            extra = f" + {len(bad)} incomplete" if bad else ""
            lines.append(
                f"    {r:<11} {len(s)} steps [{shown}]{extra}  views: {', '.join(self.views[r])}"
            )
        lines.append(f"  hooks ({len(self.hooks)}):")
        lines += [f"    {h:<28} {shape} {dtype}" for h, (shape, dtype) in self._hook_info.items()]
        g = self._file["probe"]
        lines.append(
            f"  probe: {len(g['split'])} rows ({g.attrs['n_train']} train, {g.attrs['n_test']} "
            f"test), x {g['x'].shape} {g['x'].dtype}"
            + (f", latents {g['latents'].shape}" if "latents" in g else "")
        )
        return "\n".join(lines)


def open_run(path: str | os.PathLike, include_incomplete: bool = False) -> Run:
    """Open a run file; unfinished steps are hidden unless ``include_incomplete``."""
    return Run(path, include_incomplete)
