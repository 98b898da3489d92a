"""Sweeps and tiled eNTKs on a real local Ray cluster (one per module) and on submitit."""

from __future__ import annotations

import os
import signal
import sys

import numpy as np
import pandas as pd
import pytest

from tangentlens.executors import LocalExecutor, RayExecutor, SlurmExecutor
from tangentlens.store import open_run
from tangentlens.sweep import SweepError, run_sweep

ray = pytest.importorskip("ray")  # installed by `make test` (the test extra)

TINY = ["data.name=teacher", "data.n_train=64", "data.n_test=32", "data.options={d: 4, k: 2}",
        "model.depth=1", "train.regimes=[sgd,linearized]", "train.steps=6",
        "train.batch_size=16", "train.checkpoints=[0,3]", "train.progress=false",
        "probe.n_train=8", "probe.n_test=8"]
GRID = [*TINY, "seed=0,1", "model.width=8,16"]  # 4 runs
VICTIM = "seed=1__width=8"


@pytest.fixture(scope="module")
def cluster():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the serial reference uses one thread, like every Ray worker
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(sys.path)}})
    yield
    ray.shutdown()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def serial(tmp_path_factory, cluster):
    out = tmp_path_factory.mktemp("serial")
    run_sweep(None, GRID, out, executor=LocalExecutor(1), progress=False)
    return out


def _metrics(run_dir) -> pd.DataFrame:
    with open_run(run_dir / "run.h5") as run:
        assert run.complete
        return run.metrics()


def _snapshot(run_dir) -> dict:
    """Every completed checkpoint's activations and parameters, as numpy arrays."""
    out = {}
    with open_run(run_dir / "run.h5", include_incomplete=True) as run:
        for regime in run.regimes:
            for step in run.steps(regime):
                for view in run.views[regime]:
                    for hook in run.hooks:
                        out[regime, step, view, hook] = run.activations(
                            regime, step, hook, view, split="all").numpy()
                for k, v in run.params(regime, step).items():
                    out[regime, step, "params", k] = v.numpy()
    return out


@pytest.mark.slow
def test_ray_sweep_equals_serial_bitwise(tmp_path, serial):
    run_sweep(None, GRID, tmp_path, executor=RayExecutor(), progress=False)
    names = sorted(p.name for p in serial.iterdir() if p.is_dir())
    assert len(names) == 4 and sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == names
    for name in names:
        pd.testing.assert_frame_equal(_metrics(tmp_path / name), _metrics(serial / name),
                                      check_exact=True)


def _dies_in_linearized(task):
    """``execute``, but the victim's Ray worker is SIGKILLed at linearized step 4."""
    from tangentlens.regimes import Trainer
    from tangentlens.sweep import execute

    if task.name == VICTIM:
        step, calls = Trainer.step, []

        def dying(self, x, y):
            if self.regime == "linearized":
                calls.append(1)
                if len(calls) == 5:  # after checkpoint 3 of linearized was written
                    os.kill(os.getpid(), signal.SIGKILL)
            return step(self, x, y)

        Trainer.step = dying
    return execute(task)


class _Dying(RayExecutor):
    def map(self, fn, items):
        return super().map(_dies_in_linearized, items)


@pytest.mark.slow
def test_killed_ray_worker_rerun_completes_and_keeps_checkpoints(tmp_path, serial):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        with pytest.raises(SweepError, match=f"1 of 4 runs failed.*{VICTIM}"):
            run_sweep(None, GRID, tmp_path, executor=_Dying(), progress=False)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    with open_run(tmp_path / VICTIM / "run.h5", include_incomplete=True) as run:
        assert not run.complete
        assert run.steps("sgd") == [0, 3, 6] and run.steps("linearized") == [0, 3]
    before = _snapshot(tmp_path / VICTIM)

    run_sweep(None, GRID, tmp_path, executor=RayExecutor(), progress=False)
    after = _snapshot(tmp_path / VICTIM)
    assert before.keys() < after.keys()
    for key, value in before.items():
        assert np.array_equal(after[key], value), key
    for name in [p.name for p in serial.iterdir() if p.is_dir()]:
        pd.testing.assert_frame_equal(_metrics(tmp_path / name), _metrics(serial / name),
                                      check_exact=True)


@pytest.mark.slow
def test_submitit_local_sweep_equals_serial(tmp_path, serial):
    pytest.importorskip("submitit")
    ex = SlurmExecutor(tmp_path / "jobs", {"time": 5, "cpus": 1}, cluster="local")
    run_sweep(None, [*TINY, "model.width=8", "seed=0,1"], tmp_path, executor=ex,
              progress=False)
    for seed in (0, 1):
        pd.testing.assert_frame_equal(_metrics(tmp_path / f"seed={seed}"),
                                      _metrics(serial / f"seed={seed}__width=8"),
                                      check_exact=True)


def test_bad_slurm_option_named():
    pytest.importorskip("submitit")
    with pytest.raises(ValueError, match="partiton"):
        SlurmExecutor(".", {"partiton": "gpu"})


@pytest.mark.slow
def test_tiled_ntk_on_ray_equals_local(tmp_path, cluster):
    from types import SimpleNamespace

    import h5py
    import torch

    from tangentlens.models import build_model
    from tangentlens.ntk.tiled import tiled_ntk

    model = build_model(SimpleNamespace(kind="mlp", width=16, depth=2, activation="tanh"),
                        (5,), 2, seed=0)
    x = torch.randn(70, 5, generator=torch.Generator().manual_seed(0))
    for name, ex in [("ray", RayExecutor()), ("local", LocalExecutor(1))]:
        res = tiled_ntk(model, x, tmp_path / f"{name}.h5", tile=32, mode="full",
                        block_size=16, executor=ex)
        assert res.computed == res.total == 6
    with h5py.File(tmp_path / "ray.h5") as a, h5py.File(tmp_path / "local.h5") as b:
        assert np.array_equal(a["K"][()], b["K"][()])
