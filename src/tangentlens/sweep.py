"""Sweeps: a grid of run configs, executed and indexed; restartable.

``tangentlens sweep CONFIG model.width=64,256 seed=0,1 --out DIR --jobs N`` expands every
override whose value has a top-level comma into a grid axis (``[a,b]`` and ``{k: v}`` stay
whole; ``train.regimes=[sgd],[sgd,linearized]`` is an axis of two lists), trains one run
per grid point into ``DIR/<name>/run.h5`` with ``<name>`` built from the grid values
(``width=64__seed=0``), skips runs already complete, resumes incomplete ones, and writes
``DIR/index.h5`` (``store.write_index``) and ``DIR/sweep.json`` (config, overrides, runs).

Executors (``executors.py``): each run is one item of ``executor.map(execute, tasks)``, a
small picklable ``Task`` that writes its own run file: ``LocalExecutor(jobs)`` (default),
``RayExecutor(address)`` (``--executor ray [--address auto]``) or ``SlurmExecutor``
(``--executor slurm``, its options from the config's top-level ``slurm:`` section, e.g.
``slurm: {partition: gpu, time: 60, gpus: 1}``; job files in ``DIR/slurm``). A failing run,
or one whose worker died, does not stop the others: after the index is written,
``SweepError`` lists the failures, and running the same command again retries exactly
those runs (resuming from their last checkpoint).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ConfigError, RunConfig, apply_overrides
from .executors import Executor, LocalExecutor, TasksFailed

_OPEN, _CLOSE = "[{(", "]})"


class SweepError(TasksFailed):
    """Some runs of a sweep failed; the message names them and their errors."""


def _split_top_level(key: str, raw: str) -> list[str]:
    """Split ``raw`` on commas outside brackets and quotes."""
    parts, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(raw):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
            if depth < 0:
                break
        elif ch == "," and depth == 0:
            parts.append(raw[start:i].strip())
            start = i + 1
    if depth != 0 or quote:
        raise ConfigError(f"override for '{key}' has unbalanced brackets or quotes: {raw!r}")
    parts.append(raw[start:].strip())
    if len(parts) > 1 and not all(parts):
        raise ConfigError(f"override for '{key}' has an empty grid value in {raw!r}")
    return parts


def parse_axes(overrides: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``['seed=0,1', 'train.steps=9']`` → ``[('seed', ['0', '1']), ('train.steps', ['9'])]``."""
    import yaml

    axes: list[tuple[str, list[str]]] = []
    for text in overrides:
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {text!r} is not valid; use key=value or key=v1,v2,... "
                              "e.g. model.width=64,256")
        if key in (k for k, _ in axes):
            raise ConfigError(f"override for '{key}' is given twice")
        values = _split_top_level(key, raw)
        for v in values:
            try:
                yaml.safe_load(v)
            except yaml.YAMLError as e:
                raise ConfigError(f"override for '{key}': {v!r} is not valid YAML ({e.problem})"
                                  ) from None
        axes.append((key, values))
    return axes


def expand_grid(overrides: Sequence[str]) -> list[list[str]]:
    """Every grid point as a list of ``key=value`` overrides (the last axis varies fastest)."""
    axes = parse_axes(overrides)
    return [[f"{k}={v}" for (k, _), v in zip(axes, values)]
            for values in itertools.product(*(vs for _, vs in axes))]


def run_names(overrides: Sequence[str]) -> list[str]:
    """Directory name of every grid point, from its axis values (``run`` without axes)."""
    axes = [(k, vs) for k, vs in parse_axes(overrides) if len(vs) > 1]
    short = [k.rsplit(".", 1)[-1] for k, _ in axes]
    labels = [s if short.count(s) == 1 else k for s, (k, _) in zip(short, axes)]
    names = ["__".join(f"{lab}={re.sub(r'[^A-Za-z0-9._+-]', '_', v)}"
                       for lab, v in zip(labels, values)) or "run"
             for values in itertools.product(*(vs for _, vs in axes))]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise ConfigError(f"grid values give identical run names {clash}; make the values distinct")
    return names


@dataclass(frozen=True)
class Task:
    """One run to execute: its name, config dict, run directory and whether to resume."""

    name: str
    config: dict[str, Any]
    run_dir: str
    resume: bool


def execute(task: Task) -> tuple[str, str | None]:
    """Train one run; returns (name, None) or (name, error message)."""
    from . import train

    try:
        train.run(RunConfig.from_dict(task.config), task.run_dir, resume=task.resume,
                  overwrite=not task.resume)  # a grid point that is not resumable starts afresh
    except Exception as e:  # noqa: BLE001 — reported per run by run_sweep
        return task.name, f"{type(e).__name__}: {e}"
    return task.name, None


def _status(path: Path, cfg: RunConfig) -> str:
    """``complete``, ``incomplete`` (resume it) or ``missing`` (start afresh) for a run file."""
    from .store import RunFileError, open_run
    from .store.layout import RESUME_MUTABLE, flatten

    if not path.exists():
        return "missing"
    try:
        with open_run(path, include_incomplete=True) as run:
            old, complete = flatten(run.config), run.complete
    except RunFileError:
        return "missing"
    new = flatten(json.loads(cfg.to_json()))
    diff = sorted(k for k in old.keys() | new.keys()
                  if old.get(k) != new.get(k) and k not in RESUME_MUTABLE)
    if diff:
        raise ConfigError(f"{path} holds a run whose config differs in {diff}; delete it or "
                          "sweep into another --out")
    return "complete" if complete else "incomplete"


def load_sweep_config(config: str | Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """A sweep's YAML config split into the run fields and its ``slurm:`` options."""
    import yaml

    if config is None:
        return {}, {}
    path = Path(config)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    d = yaml.safe_load(path.read_text()) or {}
    slurm = d.pop("slurm", None) or {}
    if not isinstance(slurm, dict):
        raise ConfigError(f"slurm: in {str(path)!r} must be a mapping, e.g. {{partition: gpu}}")
    return d, slurm


def run_sweep(config: str | Path | None, overrides: Sequence[str], out_dir: str | Path,
              jobs: int = 1, executor: Executor | str | None = None, address: str | None = None,
              progress: bool = True) -> Path:
    """Expand the grid, train every run not yet complete, write and return ``index.h5``.

    ``executor``: an ``Executor``, or ``"local"`` (default, ``jobs`` processes), ``"ray"``
    (at ``address``) or ``"slurm"``. Every grid point's config is validated before anything
    trains.
    """
    from tqdm.auto import tqdm

    from .executors import make_executor
    from .store import write_index

    out = Path(out_dir)
    names, points = run_names(overrides), expand_grid(overrides)
    base, slurm = load_sweep_config(config)
    configs = [RunConfig.from_dict(apply_overrides(copy.deepcopy(base), p)) for p in points]
    if executor is None or isinstance(executor, str):
        executor = make_executor(executor or "local", jobs, address, out / "slurm", slurm)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(
        {"config": None if config is None else str(config), "overrides": list(overrides),
         "runs": dict(zip(names, points))}, indent=1))
    todo = []
    for name, cfg in zip(names, configs):
        status = _status(out / name / "run.h5", cfg)
        if status != "complete":
            serial = isinstance(executor, LocalExecutor) and executor.jobs == 1
            cfg.train.progress = cfg.train.progress and serial
            todo.append(Task(name, cfg.to_dict(), str(out / name), status == "incomplete"))
    failed = {}
    with tqdm(total=len(names), initial=len(names) - len(todo), desc="sweep", unit="run",
              disable=not progress) as bar:
        for i, outcome in executor.map(execute, todo):
            if isinstance(outcome, BaseException):  # the worker or job died
                first = next(iter(str(outcome).strip().splitlines()), "")
                outcome = (todo[i].name, f"{type(outcome).__name__}: {first}")
            name, error = outcome
            if error is not None:
                failed[name] = error
            bar.update()
    index = write_index(out)
    if failed:
        lines = "; ".join(f"{n}: {e}" for n, e in sorted(failed.items()))
        raise SweepError(f"{len(failed)} of {len(names)} runs failed ({lines}); rerun the same "
                         "command to retry them")
    return index
