"""Many runs at once: ``write_index`` (HDF5 external links) and ``open_runs``."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import h5py

from .layout import FORMAT_VERSION, KIND_INDEX, KIND_RUN, flatten
from .opening import check_kind, open_hdf5
from .reader import Run

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_CONFIG_KEYS = ("model.width", "model.parametrization", "seed")


def _kind(path: Path) -> str | None:
    with open_hdf5(path) as f:
        return f.attrs.get("kind")


def _run_files(directory: Path, exclude: Path | None = None) -> list[Path]:
    """Every run file below ``directory`` (recursively), index files left out."""
    files = sorted(p for p in directory.rglob("*.h5") if p.is_file())
    return [p for p in files if p != exclude and _kind(p) != KIND_INDEX]


def write_index(directory: str | os.PathLike, path: str | os.PathLike | None = None) -> Path:
    """Write ``index.h5`` (or ``path``): links ``/runs/run0000 …`` to every run file below
    ``directory``, as HDF5 external links with paths relative to the index file."""
    directory = Path(directory)
    path = Path(path) if path is not None else directory / "index.h5"
    runs = _run_files(directory, exclude=path)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs.update(kind=KIND_INDEX, format_version=FORMAT_VERSION)
        g = f.create_group("runs", track_order=True)
        for i, run in enumerate(runs):
            with open_hdf5(run) as rf:
                check_kind(run, rf, KIND_RUN)
            g[f"run{i:04d}"] = h5py.ExternalLink(
                Path(os.path.relpath(run, path.parent)).as_posix(), "/"
            )
    os.replace(tmp, path)
    return path


def _index_targets(path: Path) -> list[Path]:
    with open_hdf5(path) as f:
        check_kind(path, f, KIND_INDEX)
        links = [f["runs"].get(name, getlink=True) for name in f["runs"]]
    return [path.parent / link.filename for link in links]


class Runs(list):
    """A list of :class:`Run` with tables across runs."""

    def configs(self, keys: Iterable[str] | None = None) -> pd.DataFrame:
        """One row per run: ``run`` (path) and flattened config columns.

        Default columns: those of DEFAULT_CONFIG_KEYS present, plus every scalar key that
        differs between runs.
        """
        import pandas as pd

        flat = [{**flatten(r.config), "seed": r.config.get("seed", r.seed)} for r in self]
        if keys is None:
            scalar = [
                k
                for k in dict.fromkeys(k for d in flat for k in d)
                if all(isinstance(d.get(k), (int, float, str, bool, type(None))) for d in flat)
            ]
            varying = [k for k in scalar if len({repr(d.get(k)) for d in flat}) > 1]
            keys = [k for k in DEFAULT_CONFIG_KEYS if any(k in d for d in flat)]
            keys += [k for k in varying if k not in keys]
        return pd.DataFrame(
            [
                {"run": str(r.path), **{k: d.get(k) for k in keys}}
                for r, d in zip(self, flat, strict=True)
            ],
            columns=["run", *keys],
        )

    def metrics(
        self, regime: str | None = None, config_keys: Iterable[str] | None = None
    ) -> pd.DataFrame:
        """Metrics of every run, with ``run`` and config columns (see :meth:`configs`)."""
        import pandas as pd

        configs = self.configs(config_keys)
        frames = [
            self[i].metrics(regime).assign(**row)
            for i, row in enumerate(configs.to_dict("records"))
        ]
        if not frames:
            return configs
        df = pd.concat(frames, ignore_index=True)
        return df[[*configs.columns, *[c for c in df.columns if c not in configs.columns]]]

    def close(self) -> None:
        for run in self:
            run.close()

    def __repr__(self) -> str:
        return f"Runs({len(self)} runs)" + "".join(f"\n  {r.path}" for r in self)


def open_runs(
    source: str | os.PathLike | Iterable[str | os.PathLike], include_incomplete: bool = False
) -> Runs:
    """Runs from a directory (searched recursively), an index file, a run file, a glob
    pattern (``runs/**/*.h5``) or a list of paths.

    >>> import tempfile
    >>> from tangentlens import load_config, open_runs, run
    >>> out = tempfile.mkdtemp()
    >>> for w in (8, 16):
    ...     cfg = load_config(None, [f"model.width={w}", "train.steps=2", "train.checkpoints=2",
    ...                              "train.regimes=[sgd]", "probe.n_train=4", "probe.n_test=4",
    ...                              "train.batch_size=8"])
    ...     _ = run(cfg, f"{out}/w{w}")
    >>> runs = open_runs(out)
    >>> sorted(r.config["model"]["width"] for r in runs)
    [8, 16]
    """
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if p.is_dir():
            paths = _run_files(p)
        elif p.is_file():
            paths = _index_targets(p) if _kind(p) == KIND_INDEX else [p]
        else:
            paths = [Path(m) for m in sorted(glob.glob(os.fspath(source), recursive=True))]
            if not paths:
                raise FileNotFoundError(f"no run files match {os.fspath(source)!r}")
    else:
        paths = [Path(s) for s in source]
    return Runs(Run(p, include_incomplete) for p in paths)
