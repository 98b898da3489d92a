"""Tiled eNTK (vs the dense one; SIGKILL then resume) and the out-of-core kernel solve."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
import torch

from tangentlens.executors import LocalExecutor
from tangentlens.ntk import empirical_ntk
from tangentlens.ntk.tiled import tiled_ntk

PROBLEM = textwrap.dedent("""
    import torch
    from types import SimpleNamespace
    from tangentlens.models import build_model
    model = build_model(SimpleNamespace(kind="mlp", width=32, depth=2, activation="tanh"),
                        (6,), 3, seed=0)
    x = torch.randn(100, 6, generator=torch.Generator().manual_seed(0))
""")


def _problem(dtype=torch.float32):
    ns: dict = {}
    exec(PROBLEM, ns)  # noqa: S102 — the same source runs in the killed subprocess
    return ns["model"].to(dtype), ns["x"].to(dtype)


def _kernel(path, mode="trace") -> np.ndarray:
    with h5py.File(path) as f:
        k = f["K"][()]
    return k.transpose(0, 2, 1, 3) if mode == "full" else k


@pytest.mark.parametrize("mode", ["trace", "full"])
@pytest.mark.parametrize("implementation", ["structured", "jacobian", "ntk_vp"])
def test_tiles_equal_dense_ntk(tmp_path, mode, implementation):
    model, x = _problem()
    res = tiled_ntk(model, x, tmp_path / "K.h5", tile=32, mode=mode, block_size=16,
                    implementation=implementation)
    assert (res.computed, res.total) == (10, 10)  # 4 tile rows, upper triangle only
    dense = empirical_ntk(model, x, mode=mode, block_size=16, implementation=implementation)
    k = _kernel(tmp_path / "K.h5", mode)
    if implementation == "ntk_vp":  # its x2 blocks (block_size // O) straddle tile edges
        np.testing.assert_allclose(k, dense.numpy(), rtol=1e-5, atol=1e-5)
    else:
        assert np.array_equal(k, dense.numpy())
    with h5py.File(tmp_path / "K.h5") as f:
        assert np.array_equal(f["done"][()], np.triu(np.ones((4, 4), np.uint8)))


class Recording(LocalExecutor):
    def __init__(self):
        super().__init__(1)
        self.items: list = []

    def map(self, fn, items):
        self.items += items
        return super().map(fn, items)


@pytest.mark.parametrize("where", ["compute", "write"])
def test_sigkill_then_resume_same_kernel_no_finished_tile_recomputed(tmp_path, where):
    """SIGKILL while tile 4 is computed, or after its bytes are written but not marked."""
    target = {"compute": "TileKernel.__call__", "write": "FileMatrix.sync"}[where]
    script = PROBLEM + textwrap.dedent(f"""
        import os, signal, sys
        from tangentlens.ntk import tiled
        cls, name = "{target}".split(".")
        real, calls = getattr(getattr(tiled, cls), name), []
        def dying(*a):
            calls.append(1)
            if len(calls) == 4:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*a)
        setattr(getattr(tiled, cls), name, dying)
        tiled.tiled_ntk(model, x, sys.argv[1], tile=32, block_size=16)
    """)
    path = tmp_path / "K.h5"
    proc = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                          check=False,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    with h5py.File(path) as f:
        finished = {tuple(ij) for ij in np.argwhere(f["done"][()])}
    assert len(finished) == 3

    model, x = _problem()
    ex = Recording()
    res = tiled_ntk(model, x, path, tile=32, block_size=16, executor=ex)
    assert res.computed == 7 and not finished & set(ex.items)
    assert tiled_ntk(model, x, path, tile=32, block_size=16).computed == 0
    tiled_ntk(model, x, tmp_path / "ref.h5", tile=32, block_size=16)
    assert np.array_equal(_kernel(path), _kernel(tmp_path / "ref.h5"))


def test_resume_with_other_inputs_rejected(tmp_path):
    model, x = _problem()
    tiled_ntk(model, x[:40], tmp_path / "K.h5", tile=32)
    with pytest.raises(ValueError, match="fingerprint"):
        tiled_ntk(model, x[:40] + 1, tmp_path / "K.h5", tile=32)
    with pytest.raises(ValueError, match="mode='diagonal'"):
        tiled_ntk(model, x, tmp_path / "D.h5", mode="diagonal")


def _dense_solve(k: np.ndarray, rhs: np.ndarray, ridge: float) -> np.ndarray:
    return np.linalg.solve(k.astype(np.float64) + ridge * np.eye(len(k)), rhs)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_tiled_solve_in_place_on_array_matches_dense():
    from tangentlens.ntk.solve import solve_tiled

    rng = np.random.default_rng(0)
    a = rng.standard_normal((90, 60))
    k = a @ a.T  # rank 60 < 90: the ridge makes it definite
    rhs = rng.standard_normal((90, 2))
    ref = _dense_solve(k, rhs, 1e-2)
    for block in (16, 90, 128):
        work = k.copy()
        x = solve_tiled(work, rhs, ridge=1e-2, block=block)
        assert _rel(x, ref) <= 1e-8, block
        assert np.array_equal(np.triu(work, 1), np.triu(k, 1))  # only the lower triangle
    with pytest.raises(ValueError, match="ridge=0.0"):
        solve_tiled(k.copy(), rhs, ridge=0.0, block=16)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tiled_solve_on_kernel_file_matches_dense(tmp_path, dtype):
    """Full-mode (n·O × n·O) kernel file: float64 scratch factor, K itself untouched."""
    from tangentlens.ntk.solve import solve_tiled

    model, x = _problem(dtype)
    path = tmp_path / "K.h5"
    tiled_ntk(model, x, path, tile=32, mode="full", block_size=16)
    k = empirical_ntk(model, x, mode="full", block_size=16)
    k = k.permute(0, 2, 1, 3).reshape(300, 300).double().numpy()
    rhs = np.random.default_rng(1).standard_normal((300, 1))
    x_tiled = solve_tiled(path, rhs, ridge=1e-3, block=64)
    lower = np.tril(k) + np.tril(k, -1).T  # the triangle it reads (float32 K: not exactly sym.)
    assert _rel(x_tiled, _dense_solve(lower, rhs, 1e-3)) <= 1e-8
    assert np.array_equal(_kernel(path, "full").transpose(0, 2, 1, 3).reshape(300, 300), k)
    assert not (tmp_path / "K.h5.chol").exists()


def test_cli_ntk_resumes_and_names_bad_n(tmp_path, capsys):
    from tangentlens.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {name: teacher, n_train: 40, n_test: 8, options: {d: 4, k: 2}}\n"
                   "model: {width: 8, depth: 1}\n")
    args = ["ntk", str(cfg), "--n", "40", "--tile", "16", "--out", str(tmp_path / "K.h5")]
    assert main(args) == 0 and "(6 of 6 tiles" in capsys.readouterr().out
    assert main(args) == 0 and "(0 of 6 tiles" in capsys.readouterr().out
    assert main([*args[:3], "41", *args[4:]]) == 2
    assert "--n 41 is not valid" in capsys.readouterr().err
