"""Notebook API over one run file: ``open_run(path) -> Run``; data is read lazily."""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import h5py
import numpy as np

from .arrays import Activations, Probe
from .layout import KIND_RUN, SPLITS, VIEWS, RunFileError, StoreKeyError, regime_key, unknown
from .opening import check_kind, open_hdf5

if TYPE_CHECKING:
    import pandas as pd


class Run:
    """One run file, opened read-only; see docs/file-format.md for the layout."""

    def __init__(self, path: str | os.PathLike, include_incomplete: bool = False):
        self.path, self.include_incomplete = Path(path), include_incomplete
        self._h5: h5py.File | None = None
        self._flags: dict[str, dict[int, bool]] = {}
        f = self._file
        try:
            check_kind(self.path, f, KIND_RUN)
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
    """Open a run file; unfinished steps are hidden unless ``include_incomplete``.

    >>> import tempfile
    >>> from tangentlens import load_config, open_run, run
    >>> out = tempfile.mkdtemp()
    >>> cfg = load_config(None, ["model.width=16", "train.steps=4", "train.checkpoints=2",
    ...                          "train.regimes=[sgd,linearized]", "probe.n_train=8",
    ...                          "probe.n_test=8", "train.batch_size=16"])
    >>> path = run(cfg, out).path
    >>> r = open_run(path)
    >>> r.regimes, r.steps("sgd")[-1]
    (['sgd', 'linearized'], 4)
    >>> r.activations("linearized", 4, "layers.0.hook_post", view="tangent").shape  # test rows
    (8, 16)
    >>> r.activations("sgd", 0, "layers.0.hook_post", split="all")[:3].shape    # lazy slice
    (3, 16)
    >>> r.close()
    """
    return Run(path, include_incomplete)
