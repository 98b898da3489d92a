"""Executors: run ``fn`` over many small picklable items, here, on Ray, or on Slurm.

Every executor has ``map(fn, items)``, yielding ``(i, outcome)`` in completion order, where
``outcome`` is ``fn(items[i])`` or the exception that lost item ``i`` (raised by ``fn``, or a
dead worker, a failed job). A lost item never stops the others. ``fn`` is shipped once per
worker (local pool, Ray), not once per item, so it may carry a model and its data.

- ``LocalExecutor(jobs)``: in-process for ``jobs=1``, else a spawn-context process pool.
- ``RayExecutor(address)``: one Ray task per item, never retried by Ray (a rerun retries),
  at most ``max_in_flight`` at a time; ``address=None`` starts a local Ray, ``"auto"``
  joins a running cluster. Needs ``pip install tangentlens[ray]``.
- ``SlurmExecutor(folder, options)``: one submitit array job per ``map``; ``options`` such
  as ``partition``, ``time`` (minutes), ``gpus``, ``cpus``, ``mem_gb``; ``cluster="local"``
  runs the same jobs as local processes. Needs ``pip install tangentlens[slurm]``.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")
Outcome = tuple[int, Any]  # (item index, fn(item) or the exception that lost it)
EXECUTORS = ("local", "ray", "slurm")


class TasksFailed(RuntimeError):
    """Some items were lost; the message names them, and rerunning the command retries them."""


class Executor(Protocol):
    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[Outcome]: ...


def set_threads(threads: int) -> None:
    """Pin BLAS/OpenMP and torch to ``threads`` threads in this process."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)


_worker_fn: Callable | None = None


def _init_worker(threads: int, fn: Callable) -> None:
    global _worker_fn
    set_threads(threads)
    _worker_fn = fn


def _call_worker_fn(item: Any) -> Any:
    return _worker_fn(item)


class LocalExecutor:
    """In-process for ``jobs=1``; else a spawn-context process pool of ``jobs`` workers with
    ``threads`` torch threads each (default 1)."""

    def __init__(self, jobs: int = 1, threads: int = 1):
        if jobs < 1:
            raise ValueError(f"jobs={jobs!r} is not valid; it must be >= 1")
        self.jobs, self.threads = jobs, threads

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[Outcome]:
        if self.jobs == 1 or len(items) <= 1:
            for i, item in enumerate(items):
                try:
                    out = fn(item)
                except Exception as e:  # noqa: BLE001 — the caller reports lost items
                    out = e
                yield i, out
            return
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(self.jobs, len(items)), mp_context=ctx,
                                 initializer=_init_worker, initargs=(self.threads, fn)) as pool:
            futures = {pool.submit(_call_worker_fn, item): i for i, item in enumerate(items)}
            for future in as_completed(futures):
                exc = future.exception()
                yield futures[future], future.result() if exc is None else exc


_ray_fns: dict[str, Callable] = {}  # fn per ObjectRef, deserialized once per Ray worker


def _ray_call(fn_ref: list, item: Any, threads: int) -> Any:
    import ray

    key = fn_ref[0].hex()
    if key not in _ray_fns:
        set_threads(threads)
        _ray_fns.clear()
        _ray_fns[key] = ray.get(fn_ref[0])
    return _ray_fns[key](item)


class RayExecutor:
    """One Ray task (``cpus`` CPUs) per item on the cluster at ``address`` (None: start a
    local one unless Ray is already initialized; ``"auto"``: the running cluster)."""

    def __init__(self, address: str | None = None, cpus: int = 1,
                 max_in_flight: int | None = None):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ValueError("executor 'ray' needs Ray: pip install 'tangentlens[ray]'") from None
        if cpus < 1:
            raise ValueError(f"cpus={cpus!r} is not valid; it must be >= 1")
        self.address, self.cpus, self.max_in_flight = address, cpus, max_in_flight

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[Outcome]:
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        limit = self.max_in_flight or 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
        task = ray.remote(num_cpus=self.cpus, max_retries=0)(_ray_call)
        fn_ref = ray.put(fn)
        pending: dict[Any, int] = {}
        queue = iter(enumerate(items))
        while True:
            for i, item in queue:
                pending[task.remote([fn_ref], item, self.cpus)] = i
                if len(pending) >= limit:
                    break
            if not pending:
                return
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ref)
            try:
                out = ray.get(ref)
            except Exception as e:  # noqa: BLE001 — task error, dead worker or node
                out = e
            yield i, out


SLURM_KEYS = {"partition": "slurm_partition", "time": "timeout_min", "gpus": "gpus_per_node",
              "cpus": "cpus_per_task", "mem_gb": "mem_gb", "nodes": "nodes",
              "account": "slurm_account", "qos": "slurm_qos", "array_parallelism":
              "slurm_array_parallelism", "constraint": "slurm_constraint"}


class SlurmExecutor:
    """Items as one submitit job array; ``options`` use the names of ``SLURM_KEYS``; job logs
    and pickles go to ``folder``. ``cluster=None`` picks Slurm when present; ``"local"``
    runs the jobs as local processes (for tests and laptops)."""

    def __init__(self, folder: str | os.PathLike, options: dict[str, Any] | None = None,
                 cluster: str | None = None):
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise ValueError("executor 'slurm' needs submitit: pip install 'tangentlens[slurm]'"
                             ) from None
        options = dict(options or {})
        bad = sorted(set(options) - set(SLURM_KEYS))
        if bad:
            raise ValueError(f"slurm option(s) {bad} not valid; valid: {sorted(SLURM_KEYS)}")
        self.folder, self.cluster = os.fspath(folder), cluster
        self.options = {SLURM_KEYS[k]: v for k, v in options.items()}

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[Outcome]:
        import submitit
        from submitit.helpers import as_completed as jobs_completed

        if not items:
            return
        ex = submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        local = ex.cluster != "slurm"
        ex.update_parameters(**{k: v for k, v in self.options.items()
                                if not (local and k.startswith("slurm_"))})
        jobs = ex.map_array(fn, items)
        index = {id(job): i for i, job in enumerate(jobs)}
        for job in jobs_completed(jobs, poll_frequency=0.2 if local else 10):
            try:
                out = job.result()
            except Exception as e:  # noqa: BLE001 — failed or cancelled job
                out = e
            yield index[id(job)], out


def make_executor(name: str, jobs: int = 1, address: str | None = None,
                  folder: str | os.PathLike = ".", options: dict[str, Any] | None = None
                  ) -> Executor:
    """The executor called ``name`` (one of ``EXECUTORS``) with its command-line options."""
    if name == "local":
        return LocalExecutor(jobs)
    if name == "ray":
        return RayExecutor(address)
    if name == "slurm":
        return SlurmExecutor(folder, options)
    raise ValueError(f"executor={name!r}; valid: {', '.join(EXECUTORS)}")
