"""``analyze(runs, out_dir, only=None)``: every applicable analysis over one or more runs.

Each analysis turns a run into a tidy frame (``tables.COLUMNS``); frames of several runs
are concatenated, written to ``<out>/<name>.csv``, drawn as PNG figures, and summarized
in ``<out>/summary.json`` (schema: docs/analyses.md).
"""

from __future__ import annotations

import importlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .spec import Analysis
from .tables import config_columns, run_label

# The registry: one line per analysis module (each exports ANALYSIS), in report order.
NAMES = (
    "change",
    "gradient_span",
    "kernel_drift",
    "probing",
    "featviz",
    "fourier",
)
ANALYSES: dict[str, Analysis] = {
    n: importlib.import_module(f"{__package__}.{n}").ANALYSIS for n in NAMES}


def run_files(runs: Sequence[str | os.PathLike]) -> list[Path]:
    """Run files from paths that are run files or run directories holding ``run.h5``."""
    out = []
    for r in runs:
        p = Path(r)
        if p.is_dir():
            p = p / "run.h5"
        if not p.is_file():
            raise FileNotFoundError(f"no run file at {str(p)!r} (give run.h5 files or run "
                                    "directories that contain one)")
        out.append(p)
    return out


def jsonable(x: Any) -> Any:
    """NaN/inf → None, numpy scalars → Python numbers, recursively."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "item"):
        x = x.item()
    return None if isinstance(x, float) and not math.isfinite(x) else x


def analyze(runs: Sequence[str | os.PathLike] | str | os.PathLike, out_dir: str | os.PathLike,
            only: Sequence[str] | None = None, model: Any = None, data: Any = None) -> Path:
    """Run every applicable analysis (or those named in ``only``); returns summary.json's path.

    ``model`` / ``data``: the nn.Module and data of runs made by ``tangentlens.run(cfg,
    model=..., data=...)`` (their config cannot rebuild them); without them the analyses that
    need them are skipped with that reason.

    BLAS and torch run on one thread meanwhile (torch's setting is restored afterwards):
    the matrices are small, and multithreaded OpenBLAS / torch slowed these analyses down
    2–100× when the cores were oversubscribed.

    >>> import json, tempfile
    >>> from tangentlens import analyze, load_config, run
    >>> out = tempfile.mkdtemp()
    >>> cfg = load_config(None, ["model.width=16", "train.steps=4", "train.checkpoints=2",
    ...                          "train.regimes=[sgd,linearized]", "probe.n_train=8",
    ...                          "probe.n_test=8", "train.batch_size=16"])
    >>> summary = analyze(run(cfg, out).path, out + "/analysis", only=["change"])
    >>> json.loads(summary.read_text())["analyses"]["change"]["csv"]
    'change.csv'
    """
    import torch
    from threadpoolctl import threadpool_limits

    from ..rebuild import using_model
    from ..store import open_run
    from ..store.lock import refuse_if_being_written
    from ..version import __version__

    names = list(only) if only else list(ANALYSES)
    bad = [n for n in names if n not in ANALYSES]
    if bad:
        raise ValueError(f"unknown analysis {bad}; valid: {list(ANALYSES)}")
    paths = run_files([runs] if isinstance(runs, (str, os.PathLike)) else runs)
    for p in paths:
        refuse_if_being_written(p)
    opened = [open_run(p) for p in paths]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").unlink(missing_ok=True)  # a killed analysis leaves no stale summary
    summary: dict[str, Any] = {
        "tangentlens_version": __version__,
        "runs": [{"path": str(r.path), "label": run_label(r), **config_columns(r),
                  "regimes": {g: r.steps(g) for g in r.regimes}, "hooks": r.hooks}
                 for r in opened],
        "analyses": {}, "skipped": {}}
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1, user_api="blas"), using_model(model, data):
            _run_analyses(names, opened, out, summary)
    finally:
        torch.set_num_threads(torch_threads)
        for run in opened:
            run.close()
    path, tmp = out / "summary.json", out / "summary.json.tmp"
    tmp.write_text(json.dumps(jsonable(summary), indent=1))
    os.replace(tmp, path)  # written last and atomically: present means every output is
    return path


def _run_analyses(names: list[str], opened: list[Any], out: Path, summary: dict) -> None:
    """Compute, write and summarize each analysis in ``names`` over the opened runs."""
    for name in names:
        a = ANALYSES[name]
        frames, skipped = [], []
        for i, run in enumerate(opened):
            reason = a.skip_reason(run)
            fig_dir = out if len(opened) == 1 else out / f"run{i}"
            df = a.compute(run, fig_dir) if reason is None else None
            if df is not None and df.empty:
                reason = "no rows: the analysis does not apply to this run"
            if reason is None:
                frames.append(df)
            else:
                skipped.append(f"{run_label(run)}: {reason}")
        if skipped:
            summary["skipped"][name] = skipped
        if not frames:
            continue
        df = pd.concat(frames, ignore_index=True)
        df.to_csv(out / f"{name}.csv", index=False)
        figures = a.plot(df, out)
        summary["analyses"][name] = {
            "csv": f"{name}.csv", "rows": len(df), "headline": a.headline(df),
            "figures": [p.relative_to(out).as_posix() for p in figures]}
