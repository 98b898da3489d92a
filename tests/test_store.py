"""tangentlens.store: roundtrip, lazy reads, bounded memory, errors, resume, index."""

from __future__ import annotations

import gc
import os
import pickle
import shutil
import tracemalloc

import h5py
import numpy as np
import pytest

from tangentlens.store import RunWriter, open_run, open_runs, write_index
from tangentlens.store.journal import JournaledFile, journal_path

N_TRAIN, N_TEST, WIDTH, BATCH = 40, 30, 6, 16
N = N_TRAIN + N_TEST
HOOKS = ["layers.0.hook_pre", "layers.0.hook_post", "layers.10.hook_post", "hook_logits"]
VIEWS = {"sgd": ["network"], "linearized": ["network", "tangent"]}
CONFIG = {"seed": 0, "model": {"width": 64, "parametrization": "ntk"}, "train": {"device": "cpu"}}


def probe() -> dict:
    rng = np.random.default_rng(0)
    return {
        "x": rng.standard_normal((N, 5), dtype=np.float32),
        "y": np.arange(N) % 3,
        "split": np.r_[np.zeros(N_TRAIN), np.ones(N_TEST)].astype(np.uint8),
        "latents": rng.standard_normal((N, 2)),
        "latent_names": ["a", "b"],
    }


def act(regime: str, step: int, view: str, hook: str) -> np.ndarray:
    seed = [len(regime), step, VIEWS["linearized"].index(view), HOOKS.index(hook)]
    return np.random.default_rng(seed).standard_normal((N, WIDTH), dtype=np.float32)


def row(step: int) -> dict:
    return {"step": step, "train_loss": 1 / (step + 1), "test_acc": step / 100}


def write_step(w: RunWriter, regime: str, step: int, dtype=np.float32) -> None:
    with w.step(regime, step) as s:
        for view in VIEWS[regime]:
            for hook in HOOKS:
                a = act(regime, step, view, hook)
                for start in range(0, N, BATCH):
                    s.write(view, hook, start, a[start : start + BATCH])
        s.write_params({"layers.0.W": np.full((2, 3), step, np.float32)})
        w.append_metrics(regime, row(step))


def make_run(path, steps=(0, 5, 10), config=CONFIG, **kw) -> str:
    with RunWriter(path, config, probe(), **kw) as w:
        for regime in VIEWS:
            for step in steps:
                write_step(w, regime, step)
    return str(path)


def test_roundtrip(tmp_path):
    with open_run(make_run(tmp_path / "r.h5")) as run:
        assert run.complete and run.config == CONFIG and run.seed == 0
        assert run.regimes == ["sgd", "linearized"] and run.hooks == HOOKS and run.views == VIEWS
        assert run.attrs["format_version"] == 1 and run.attrs["created"]
        p = probe()
        np.testing.assert_array_equal(run.probe.x, p["x"])
        np.testing.assert_array_equal(run.probe.test.y, p["y"][N_TRAIN:])
        np.testing.assert_array_equal(run.probe.train.latents, p["latents"][:N_TRAIN])
        assert run.probe.latent_names == ["a", "b"] and len(run.probe.train) == N_TRAIN
        for regime, views in VIEWS.items():
            assert run.steps(regime) == [0, 5, 10]
            for step in run.steps(regime):
                for view in views:
                    for hook in HOOKS:
                        full = act(regime, step, view, hook)
                        for split, rows in [
                            ("train", slice(0, N_TRAIN)),
                            ("test", slice(N_TRAIN, N)),
                            ("all", slice(None)),
                        ]:
                            a = run.activations(regime, step, hook, view, split)
                            np.testing.assert_array_equal(a.numpy(), full[rows])
                            assert a.shape == full[rows].shape and len(a) == len(full[rows])
                np.testing.assert_array_equal(
                    run.params(regime, step)["layers.0.W"], np.full((2, 3), step)
                )
        m = run.metrics()
        assert list(m.columns) == ["regime", "step", "train_loss", "test_acc"]
        assert m.regime.tolist() == ["sgd"] * 3 + ["linearized"] * 3
        assert run.metrics("sgd").test_acc.tolist() == [0.0, 0.05, 0.1]
        text = repr(run)
        assert "complete" in text and "linearized" in text and "layers.10.hook_post" in text


@pytest.mark.parametrize("compression", ["none", "lzf", "gzip"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_compression_and_dtype(tmp_path, compression, dtype):
    run = open_run(make_run(tmp_path / "r.h5", steps=(3,), compression=compression, dtype=dtype))
    a = run.activations("linearized", 3, "hook_logits", "tangent", "all")
    assert a.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(
        a.numpy(), act("linearized", 3, "tangent", "hook_logits").astype(dtype)
    )


def test_torch_inputs(tmp_path):
    torch = pytest.importorskip("torch")
    p = {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in probe().items()}
    with RunWriter(tmp_path / "r.h5", CONFIG, p) as w, w.step("sgd", 0) as s:
        s.write("network", "h", 0, torch.ones(N, 2, 3))
        s.write_params({"w": torch.ones(4, dtype=torch.bfloat16), "scale": torch.tensor(2.0)})
    run = open_run(tmp_path / "r.h5")
    t = run.activations("sgd", 0, "h", split="all").torch()
    assert isinstance(t, torch.Tensor) and t.shape == (N, 2, 3) and bool((t == 1).all())
    params = run.params("sgd", 0)
    assert params["w"].dtype == torch.float32 and float(params["scale"]) == 2.0


def test_lazy_indexing_matches_numpy_and_reads_only_the_slice(tmp_path):
    n, width = 4000, 1000  # 16 MB dataset
    big = {
        "x": np.zeros((n, 1), np.float32),
        "y": np.zeros(n),
        "split": np.r_[np.zeros(1000), np.ones(3000)],
    }
    rng = np.random.default_rng(1)
    full = rng.standard_normal((n, width), dtype=np.float32)
    with RunWriter(tmp_path / "big.h5", {}, big) as w, w.step("sgd", 0) as s:
        for start in range(0, n, 500):
            s.write("network", "h", start, full[start : start + 500])
    run = open_run(tmp_path / "big.h5")
    a = run.activations("sgd", 0, "h")  # test split: rows 1000..3999
    ref = full[1000:]
    for key in [
        [[1, 2], [3, 1]],
        5,
        -1,
        slice(10, 20),
        slice(None, None, 7),
        slice(None, None, -3),
        slice(8, 3),
        [7, 2, 2, -1],
        np.arange(3000) % 11 == 0,
        (slice(3, 9), 4),
        (Ellipsis, 2),
        (..., slice(0, 3)),
        (),
    ]:
        np.testing.assert_array_equal(a[key], ref[key], err_msg=str(key))
    np.testing.assert_array_equal(np.asarray(a), ref)
    with pytest.raises(IndexError):
        a[3000]
    tracemalloc.start()
    part = a[100:110]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert part.shape == (10, width) and peak < 1_000_000  # the dataset is 16 MB


def test_peak_memory_is_bounded_by_one_batch(tmp_path):
    psutil = pytest.importorskip("psutil")
    batches, rows, width, hooks = 40, 256, 1024, 3
    n = batches * rows
    p = {"x": np.zeros((n, 1), np.float32), "y": np.zeros(n), "split": np.zeros(n, np.uint8)}
    batch_bytes = rows * width * 4
    gc.collect()
    rss0 = psutil.Process().memory_info().rss
    tracemalloc.start()
    with RunWriter(tmp_path / "m.h5", {}, p, dtype="float16") as w, w.step("linearized", 1) as s:
        for start in range(0, n, rows):
            for view in ("network", "tangent"):
                for h in range(hooks):
                    s.write(
                        view,
                        f"layers.{h}.hook_post",
                        start,
                        np.full((rows, width), start, np.float32),
                    )
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss_growth = psutil.Process().memory_info().rss - rss0
    total = 2 * hooks * n * width * 4  # 240 MiB of activations streamed
    assert peak < 3 * batch_bytes, (peak, batch_bytes)
    assert rss_growth < total / 4, (rss_growth, total)
    a = open_run(tmp_path / "m.h5").activations(
        "linearized", 1, "layers.2.hook_post", "tangent", "all"
    )
    assert a[-1, 0] == n - rows and a[0, -1] == 0


def test_unknown_names_list_valid_values(tmp_path):
    run = open_run(make_run(tmp_path / "r.h5"))
    cases = [
        (
            lambda: run.activations("kernel", 0, "hook_logits"),
            ["'kernel'", "'sgd'", "'linearized'"],
        ),
        (lambda: run.activations("sgd", 7, "hook_logits"), ["7", "[0, 5, 10]"]),
        (lambda: run.activations("sgd", 5, "hook_nope"), ["hook_nope", "layers.10.hook_post"]),
        (
            lambda: run.activations("sgd", 5, "hook_logits", view="tangent"),
            ["tangent", "['network']"],
        ),
        (
            lambda: run.activations("sgd", 5, "hook_logits", split="val"),
            ["val", "'train', 'test', 'all'"],
        ),
        (lambda: run.steps("lazy"), ["lazy", "sgd"]),
        (lambda: run.metrics("lazy"), ["lazy", "sgd"]),
    ]
    for fn, words in cases:
        with pytest.raises(KeyError) as e:
            fn()
        assert all(w in str(e.value) for w in words), str(e.value)


def _check_bad(path, *words):
    with pytest.raises(ValueError) as e:
        open_run(path)
    msg = str(e.value)
    assert str(path) in msg and all(w in msg for w in words), msg
    assert e.value.__suppress_context__ or e.value.__context__ is None  # no h5py traceback


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_run(tmp_path / "missing.h5")
    (tmp_path / "empty.h5").write_bytes(b"")
    _check_bad(tmp_path / "empty.h5", "empty")
    (tmp_path / "noise.h5").write_bytes(np.random.default_rng(0).bytes(5000))
    _check_bad(tmp_path / "noise.h5", "not an HDF5 file")
    good = make_run(tmp_path / "good.h5")
    data = (tmp_path / "good.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    _check_bad(tmp_path / "cut.h5", "truncated")
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = np.arange(3)
    _check_bad(tmp_path / "foreign.h5", "not written by tangentlens")
    shutil.copy(good, tmp_path / "future.h5")
    with h5py.File(tmp_path / "future.h5", "a") as f:
        f.attrs["format_version"] = 2
    _check_bad(tmp_path / "future.h5", "format_version 2", "upgrade")
    _check_bad(tmp_path, "directory")
    (tmp_path / "sweep").mkdir()
    _check_bad(write_index(tmp_path / "sweep"), "index", "open_runs")


def test_writer_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="compression"):
        RunWriter(tmp_path / "a.h5", {}, probe(), compression="zstd")
    with pytest.raises(ValueError, match="dtype"):
        RunWriter(tmp_path / "a.h5", {}, probe(), dtype="float64")
    with pytest.raises(ValueError, match="split"):
        RunWriter(
            tmp_path / "a.h5", {}, {**probe(), "split": np.r_[np.ones(N_TEST), np.zeros(N_TRAIN)]}
        )
    w = RunWriter(tmp_path / "a.h5", {}, probe())
    with pytest.raises(FileExistsError):
        RunWriter(tmp_path / "a.h5", {}, probe())
    for args, match in [
        (("cached", "h", 0, np.ones((2, 3))), "view"),
        (("network", "a/b", 0, np.ones((2, 3))), "'/'"),
        (("network", "h", N - 1, np.ones((2, 3))), "do not fit"),
    ]:
        with pytest.raises(ValueError, match=match), w.step("sgd", 0) as s:
            s.write(*args)
    with pytest.raises(ValueError, match="earlier batches"), w.step("sgd", 0) as s:
        s.write("network", "h", 0, np.ones((2, 3)))
        s.write("network", "h", 2, np.ones((2, 4)))
    with pytest.raises(ValueError, match="never written"), w.step("sgd", 0) as s:
        s.write("network", "h", 0, np.ones((2, 3)))
    with pytest.raises(ValueError, match="step"):
        w.append_metrics("sgd", {"loss": 1.0})
    w.close()
    run = open_run(tmp_path / "a.h5")
    assert run.steps("sgd") == [] and run.incomplete_steps("sgd") == [0]


def test_failed_step_stays_incomplete_and_is_skipped(tmp_path):
    with RunWriter(tmp_path / "r.h5", CONFIG, probe()) as w:
        write_step(w, "sgd", 0)
        with pytest.raises(RuntimeError), w.step("sgd", 5) as s:
            s.write("network", "hook_logits", 0, np.ones((N, 2)))
            w.append_metrics("sgd", row(5))
            raise RuntimeError("training crashed")
        assert w.completed_steps("sgd") == [0]
    run = open_run(tmp_path / "r.h5")
    assert run.steps("sgd") == [0] and run.incomplete_steps("sgd") == [5]
    assert run.metrics("sgd").step.tolist() == [0]  # the row went with the failed step
    with pytest.raises(KeyError, match="incomplete"):
        run.activations("sgd", 5, "hook_logits")
    assert open_run(tmp_path / "r.h5", include_incomplete=True).steps("sgd") == [0, 5]


def test_resume(tmp_path):
    path = tmp_path / "r.h5"
    w = RunWriter(path, CONFIG, probe())
    for step in (0, 5):
        write_step(w, "sgd", step)
    write_step(w, "linearized", 0)
    w.append_metrics("linearized", row(5))  # logged, but step 5 never completes
    with pytest.raises(RuntimeError), w.step("linearized", 5):
        raise RuntimeError
    del w  # killed: never closed
    with pytest.raises(ValueError, match=r"model\.width"):
        RunWriter(
            path, {**CONFIG, "model": {"width": 32, "parametrization": "ntk"}}, probe(), resume=True
        )
    w = RunWriter(
        path, {**CONFIG, "train": {"device": "cuda"}}, probe(), resume=True
    )  # device may change
    assert w.completed_steps("sgd") == [0, 5] and w.completed_steps("linearized") == [0]
    assert open_run(path, include_incomplete=True).incomplete_steps("linearized") == []
    assert open_run(path).metrics("linearized").step.tolist() == [0]
    write_step(w, "sgd", 10)
    for step in (5, 10):
        write_step(w, "linearized", step)
    w.close()
    resumed, ref = open_run(path), open_run(make_run(tmp_path / "ref.h5"))
    assert resumed.config["train"]["device"] == "cuda" and resumed.complete
    for regime, views in VIEWS.items():
        assert resumed.steps(regime) == ref.steps(regime)
        assert resumed.metrics(regime).equals(ref.metrics(regime))
        for step in ref.steps(regime):
            for view in views:
                for hook in HOOKS:
                    np.testing.assert_array_equal(
                        resumed.activations(regime, step, hook, view, "all").numpy(),
                        ref.activations(regime, step, hook, view, "all").numpy(),
                    )


def test_reader_sees_last_commit_while_a_session_is_open(tmp_path):
    path = make_run(tmp_path / "r.h5", steps=(0,))
    size = os.path.getsize(path)
    jf = JournaledFile(path)  # a writer that dies mid-session
    with h5py.File(jf, "r+") as f:
        f.attrs["complete"] = False
        del f["regimes/sgd"]
        f.create_dataset("junk", data=np.ones(10_000))
    jf.close()
    assert journal_path(path).exists()
    run = open_run(path)  # read-only view of the committed state; the file is not touched
    assert run.complete and run.steps("sgd") == [0]
    np.testing.assert_array_equal(
        run.activations("sgd", 0, "hook_logits").numpy(),
        act("sgd", 0, "network", "hook_logits")[N_TRAIN:],
    )
    run.close()
    assert journal_path(path).exists() and os.path.getsize(path) > size
    RunWriter(path, CONFIG, probe(), resume=True).close()  # resume rolls the session back
    assert not journal_path(path).exists() and open_run(path).steps("sgd") == [0]


def test_pickle_and_coexisting_runs(tmp_path):
    a, b = open_run(make_run(tmp_path / "a.h5")), open_run(make_run(tmp_path / "b.h5", steps=(1,)))
    acts = a.activations("sgd", 5, "hook_logits")
    a2, acts2 = pickle.loads(pickle.dumps((a, acts)))
    np.testing.assert_array_equal(acts2.numpy(), acts.numpy())
    assert a2.steps("sgd") == [0, 5, 10] and b.steps("sgd") == [1]
    a.close()
    np.testing.assert_array_equal(acts[0], acts2[0])  # reopens lazily after close()


def test_index_and_open_runs(tmp_path):
    sweep = tmp_path / "sweep"
    for width, seed in [(64, 0), (128, 0), (128, 1)]:
        cfg = {"seed": seed, "model": {"width": width, "parametrization": "mup"}}
        make_run(sweep / f"w{width}-s{seed}" / "run.h5", steps=(0,), config=cfg, seed=seed)
    index = write_index(sweep)
    assert index == sweep / "index.h5"
    with h5py.File(index) as f:  # plain HDF5 external links, relative to the index
        assert [f["runs"].get(k, getlink=True).filename for k in f["runs"]] == [
            "w128-s0/run.h5",
            "w128-s1/run.h5",
            "w64-s0/run.h5",
        ]
        assert f["runs/run0002"].attrs["kind"] == "tangentlens.run"
    shutil.move(sweep, tmp_path / "moved")  # relative links survive a move
    moved = tmp_path / "moved"
    for source in [
        moved / "index.h5",
        moved,
        str(moved / "*" / "run.h5"),
        list(moved.glob("*/run.h5")),
    ]:
        runs = open_runs(source)
        assert len(runs) == 3, source
    m = runs.metrics()
    assert list(m.columns[:4]) == ["run", "model.width", "model.parametrization", "seed"]
    assert "regime" in m and sorted(set(zip(m["model.width"], m["seed"], strict=True))) == [
        (64, 0),
        (128, 0),
        (128, 1),
    ]
    assert runs.metrics("sgd", config_keys=["model.width"]).columns.tolist() == [
        "run",
        "model.width",
        "step",
        "train_loss",
        "test_acc",
    ]
    with pytest.raises(FileNotFoundError):
        open_runs(str(moved / "nothing*.h5"))
    runs.close()
