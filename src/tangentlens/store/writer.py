"""Streaming, crash-safe writer of one run file.

Every change happens in a *session*: the file is opened through a rollback journal
(``journal.py``), written, closed and committed; the file stays closed between sessions.
A session killed at any moment — or ended by an exception — is undone, so the file on disk
always holds the state after the last committed session.  A step takes two sessions: one
creates its group flagged ``complete=False``, the second writes its data and metrics and sets
``complete=True`` last.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import h5py
import numpy as np

from .journal import JournaledFile, rollback
from .layout import (
    CHUNK_BYTES,
    COMPRESSIONS,
    DTYPES,
    FORMAT_VERSION,
    KIND_RUN,
    RESUME_MUTABLE,
    VIEWS,
    check_name,
    flatten,
)
from .lock import lock_for_writing
from .provenance import git_sha, version_of


def _numpy(a: Any) -> np.ndarray:
    """numpy view of an array or (CPU/GPU, bfloat16 too) torch tensor; no torch import."""
    if hasattr(a, "detach"):
        a = a.detach().cpu()
        if str(a.dtype) == "torch.bfloat16":
            a = a.float()
        a = a.numpy()
    return np.asarray(a)


class StepWriter:
    """Writes one (regime, step): activations streamed batch by batch, optional θ snapshot."""

    def __init__(self, writer: RunWriter, group: h5py.Group):
        self._w, self._group = writer, group
        self._written: dict[tuple[str, str], np.ndarray] = {}  # rows written, per dataset

    def write(self, view: str, hook: str, start_row: int, array: Any) -> None:
        """Store ``array`` (b, ...) as rows [start_row, start_row + b) of ``<view>/<hook>``."""
        if view not in VIEWS:
            raise ValueError(f"view {view!r} is not one of {list(VIEWS)}")
        check_name("hook", hook)
        a = np.ascontiguousarray(_numpy(array), dtype=self._w.dtype)
        n, stop = self._w.n_probe, start_row + (len(a) if a.ndim else 0)
        if a.ndim == 0 or start_row < 0 or stop > n:
            raise ValueError(
                f"{view}/{hook}: rows [{start_row}, {stop}) of an array of shape "
                f"{a.shape} do not fit in the {n} probe rows"
            )
        key = (view, hook)
        if key not in self._written:
            if view not in self._group:
                self._group.create_group(view, track_order=True)
            row_bytes = max(1, a[0].nbytes)
            chunks = (max(1, min(n, CHUNK_BYTES // row_bytes)), *a.shape[1:])
            self._group[view].create_dataset(
                hook,
                (n, *a.shape[1:]),
                self._w.dtype,
                chunks=chunks,
                **COMPRESSIONS[self._w.compression],
            )
            self._written[key] = np.zeros(n, bool)
        dset = self._group[view][hook]
        if dset.shape[1:] != a.shape[1:]:
            raise ValueError(
                f"{view}/{hook}: batch rows have shape {a.shape[1:]}, "
                f"earlier batches {dset.shape[1:]}"
            )
        dset[start_row:stop] = a
        self._written[key][start_row:stop] = True

    def write_params(self, params: dict[str, Any]) -> None:
        """Snapshot of θ: ``{name: tensor}``, stored in its own dtype (bfloat16 as float32)."""
        if "params" not in self._group:
            self._group.create_group("params", track_order=True)
        group = self._group["params"]
        for name, value in params.items():
            a = _numpy(value)
            group.create_dataset(
                check_name("parameter", name),
                data=a,
                **(COMPRESSIONS[self._w.compression] if a.ndim else {}),
            )

    def _finish(self) -> None:
        for (view, hook), rows in self._written.items():
            if not rows.all():
                raise ValueError(
                    f"{view}/{hook}: {int((~rows).sum())} of {len(rows)} probe rows "
                    "were never written; the step stays incomplete"
                )
        self._group.attrs["complete"] = True


class RunWriter:
    """Writer of one run file (layout in docs/file-format.md).

    ``probe``: dict with ``x``, ``y``, ``split`` (0 train / 1 test, train rows first) and
    optional ``latents``, ``latent_names``.  ``resume=True`` reopens an existing file with a
    compatible config, drops unfinished steps and the metrics rows after each regime's last
    complete step.  Without ``resume`` the file must not exist yet.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        config: dict,
        probe: dict,
        *,
        compression: str = "none",
        dtype: str = "float32",
        resume: bool = False,
        seed: int = 0,
    ):
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression {compression!r} is not one of {list(COMPRESSIONS)}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r} is not one of {list(DTYPES)}")
        self.path, self.compression, self.dtype = Path(path), compression, np.dtype(dtype)
        self._config = json.loads(json.dumps(config, default=str))
        self._completed: dict[str, set[int]] = {}
        self._file: h5py.File | None = None  # open only inside a step
        self._closed = False
        self._lock = None  # open file holding the writer lock
        x, split = _numpy(probe["x"]), _numpy(probe["split"]).astype(np.uint8)
        self.n_probe = len(x)
        if resume and self.path.exists():
            self._lock = lock_for_writing(self.path)  # before rolling back anyone's session
            try:
                self._resume(x.shape, split)
            except BaseException:
                self.release()
                raise
        elif self.path.exists():
            raise FileExistsError(
                f"{self.path} exists; pass resume=True to continue it or delete it"
            )
        else:
            self._create(probe, x, split, seed)
            self._lock = lock_for_writing(self.path)

    # -- sessions -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _session(self) -> Iterator[h5py.File]:
        """Open the file for one atomic change: committed on success, rolled back otherwise."""
        if self._closed:
            raise RuntimeError(f"{self.path}: the writer is closed")
        jf = JournaledFile(self.path)
        try:
            with h5py.File(jf, "r+") as f:
                yield f
        except BaseException:
            jf.close()
            rollback(self.path)
            raise
        jf.commit()

    def _create(self, probe: dict, x: np.ndarray, split: np.ndarray, seed: int) -> None:
        if np.any(np.diff(split.astype(np.int8)) < 0) or np.any(split > 1) or len(split) != len(x):
            raise ValueError("probe['split'] must hold 0 (train) then 1 (test), one per row of x")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with h5py.File(tmp, "w") as f:
            f.attrs.update(
                kind=KIND_RUN,
                format_version=FORMAT_VERSION,
                tangentlens_version=version_of("tangentlens"),
                config=json.dumps(self._config, sort_keys=True),
                seed=int(seed),
                created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                git_sha=git_sha(),
                torch_version=version_of("torch"),
                transformer_lens_version=version_of("transformer-lens"),
                complete=False,
            )
            g = f.create_group("probe")
            for name in ("x", "y", "latents"):
                if probe.get(name) is not None:
                    g.create_dataset(name, data=_numpy(probe[name]))
            g.create_dataset("split", data=split)
            names = np.array(probe.get("latent_names") or [], dtype=h5py.string_dtype())
            g.attrs.update(
                n_train=int((split == 0).sum()), n_test=int((split == 1).sum()), latent_names=names
            )
            f.create_group("regimes", track_order=True)
        os.replace(tmp, self.path)

    def _resume(self, x_shape: tuple, split: np.ndarray) -> None:
        from .reader import open_run  # validates kind and format_version with clear errors

        rollback(self.path)
        with open_run(self.path, include_incomplete=True) as run:
            old = flatten(run.config)
            new = flatten(self._config)
            diff = sorted(
                k
                for k in old.keys() | new.keys()
                if old.get(k) != new.get(k) and k not in RESUME_MUTABLE
            )
            if diff:
                raise ValueError(f"{self.path}: cannot resume, the config differs in {diff}")
            stored = run._file["probe/x"].shape, run._file["probe/split"][:]
        if stored[0] != x_shape or not np.array_equal(stored[1], split):
            raise ValueError(
                f"{self.path}: cannot resume, the probe set differs from the stored one"
            )
        with self._session() as f:
            for regime, rg in f["regimes"].items():
                steps = rg.get("steps", {})
                for name in list(steps):
                    if not steps[name].attrs.get("complete", False):
                        del steps[name]
                done = self._completed[regime] = {int(s) for s in steps}
                if "metrics" in rg:
                    keep = rg["metrics/step"][:] <= max(done, default=-1)
                    for col in rg["metrics"].values():
                        kept = col[:][keep]
                        col.resize(kept.shape)
                        col[:] = kept
            f.attrs.update(config=json.dumps(self._config, sort_keys=True), complete=False)

    # -- public API -----------------------------------------------------------------------
    @contextlib.contextmanager
    def step(self, regime: str, step: int) -> Iterator[StepWriter]:
        """Context for one checkpoint; its group is marked complete only on a clean exit."""
        check_name("regime", regime)
        if self._file is not None:
            raise RuntimeError("a step is already open")
        step = int(step)
        if step < 0 or step in self._completed.get(regime, ()):
            raise ValueError(f"step {step} of regime {regime!r} is negative or already complete")
        with self._session() as f:
            steps = f.require_group(f"regimes/{regime}/steps")
            if str(step) in steps:  # left incomplete by an earlier exception
                del steps[str(step)]
            steps.create_group(str(step)).attrs["complete"] = False
        with self._session() as f:
            self._file = f
            try:
                sw = StepWriter(self, f[f"regimes/{regime}/steps/{step}"])
                yield sw
                sw._finish()
            finally:
                self._file = None
        self._completed.setdefault(regime, set()).add(step)

    def append_metrics(self, regime: str, row: dict[str, Any]) -> None:
        """Append one row (must contain ``step``; other columns float, new ones NaN-backfilled).

        Inside a ``step`` context the row commits together with that step.
        """
        check_name("regime", regime)
        if "step" not in row:
            raise ValueError("metrics row needs a 'step' entry")
        try:
            values = {k: int(v) if k == "step" else float(v) for k, v in row.items()}
        except (TypeError, ValueError) as e:
            raise ValueError(f"metrics row values must be numbers: {row!r}") from e
        if self._file is not None:
            self._append(self._file, regime, values)
        else:
            with self._session() as f:
                self._append(f, regime, values)

    @staticmethod
    def _append(f: h5py.File, regime: str, values: dict[str, float]) -> None:
        if f"regimes/{regime}/metrics" not in f:
            f.require_group(f"regimes/{regime}").create_group("metrics", track_order=True)
        g = f[f"regimes/{regime}/metrics"]
        n = len(g["step"]) if "step" in g else 0
        for col in [c for c in values if c not in g]:
            check_name("metrics column", col)
            g.create_dataset(
                col,
                data=np.full(n, np.nan),
                maxshape=(None,),
                chunks=(256,),
                dtype=np.int64 if col == "step" else np.float64,
            )
        for col, d in g.items():
            d.resize((n + 1,))
            d[n] = values.get(col, math.nan)

    def completed_steps(self, regime: str) -> list[int]:
        return sorted(self._completed.get(regime, ()))

    def close(self) -> None:
        """Mark the run complete (idempotent)."""
        if self._file is not None:
            raise RuntimeError("close() inside an open step")
        if not self._closed:
            with self._session() as f:
                f.attrs["complete"] = True
            self._closed = True
        self.release()

    def release(self) -> None:
        """End writing without marking the run complete, and drop the lock (idempotent)."""
        self._closed = True
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        self._closed = True
        self.release()
