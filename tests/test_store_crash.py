"""Crash safety of RunWriter: a writer killed at any moment leaves a readable file whose
complete steps are bit-identical to an uninterrupted run, and resuming it completes the run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tangentlens.store import open_run

# Shared by the test and the killed child process (run with `python -c`).
CHILD = """
import numpy as np
from tangentlens.store import RunWriter

N, WIDTH, BATCH = 512, 128, 128
HOOKS = ["layers.0.hook_post", "layers.1.hook_post", "hook_logits"]
REGIMES = {"sgd": ["network"], "linearized": ["network", "tangent"]}
STEPS = [0, 1, 2, 3, 4, 5]


def probe():
    return {"x": np.arange(N * 3, dtype=np.float32).reshape(N, 3), "y": np.arange(N) % 10,
            "split": (np.arange(N) >= 400).astype(np.uint8)}


def act(regime, step, view, hook):
    seed = [len(regime), step, len(view), HOOKS.index(hook)]
    return np.random.default_rng(seed).standard_normal((N, WIDTH), dtype=np.float32)


def row(regime, step):
    return {"step": step, "train_loss": 1.0 / (step + len(regime)), "test_acc": step / 7}


def write(path, resume=False, say=lambda msg: None, steps=STEPS):
    w = RunWriter(path, {"seed": 0, "model": {"width": WIDTH}}, probe(), resume=resume)
    say("open")
    for step in steps:
        for regime, views in REGIMES.items():
            if step in w.completed_steps(regime):
                continue
            with w.step(regime, step) as s:
                for view in views:
                    for hook in HOOKS:
                        a = act(regime, step, view, hook)
                        for start in range(0, N, BATCH):
                            say(f"write {regime} {step} {view} {hook} {start}")
                            s.write(view, hook, start, a[start:start + BATCH])
                w.append_metrics(regime, row(regime, step))
                say(f"commit {regime} {step}")
            say(f"done {regime} {step}")
    if steps == STEPS:
        w.close()
        say("closed")
"""
ns: dict = {}
exec(CHILD, ns)
REGIMES, STEPS, HOOKS, N = ns["REGIMES"], ns["STEPS"], ns["HOOKS"], ns["N"]

# (marker line to wait for or None, extra delay in seconds) — each is one SIGKILL moment
KILLS = [
    (None, 0.0),  # during interpreter start-up, before the file exists
    ("open", 0.0),  # right after the file is created
    ("write sgd 1 network layers.1.hook_post 0", 0.0),  # mid-step, mid-write
    ("write linearized 2 tangent hook_logits 256", 0.0005),
    ("commit sgd 3", 0.0),  # while the step is being flushed and committed
    ("done linearized 3", 0.001),
    ("open", 0.01),
    ("open", 0.03),
]


def check_consistent(path, done: set[tuple[str, int]] = frozenset()) -> int:
    """The file opens; complete steps equal the reference; unfinished ones are flagged and
    skipped.  ``done``: steps the writer reported committed (they must be complete).
    Returns the number of incomplete steps."""
    incomplete = complete = 0
    with open_run(path) as run:
        for regime, views in REGIMES.items():
            steps = run.steps(regime) if regime in run.regimes else []
            assert {s for r, s in done if r == regime} <= set(steps)
            for step in steps:
                for view in views:
                    for hook in HOOKS:
                        got = run.activations(regime, step, hook, view, split="all").numpy()
                        np.testing.assert_array_equal(got, ns["act"](regime, step, view, hook))
            if regime in run.regimes:
                m = run.metrics(regime)
                assert m.step.tolist() == steps
                assert m.to_dict("records") == [ns["row"](regime, s) for s in steps]
                bad = run.incomplete_steps(regime)
                assert not set(bad) & set(steps) and set(bad) <= set(STEPS)
                incomplete, complete = incomplete + len(bad), complete + len(steps)
    with open_run(path, include_incomplete=True) as run:
        assert sum(len(run.steps(r)) for r in run.regimes) == complete + incomplete
    return incomplete


def assert_same_as_reference(path, ref) -> None:
    with open_run(path) as run, open_run(ref) as want:
        assert run.complete and run.regimes == want.regimes
        for regime in want.regimes:
            assert run.steps(regime) == want.steps(regime) == STEPS
            assert run.metrics(regime).equals(want.metrics(regime))
            for step in STEPS:
                for view in REGIMES[regime]:
                    for hook in HOOKS:
                        a = run.activations(regime, step, hook, view, "all").numpy()
                        b = want.activations(regime, step, hook, view, "all").numpy()
                        assert a.tobytes() == b.tobytes()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "ref.h5"
    ns["write"](path)
    return path


def test_sigkill_at_many_moments_then_resume(tmp_path, reference):
    script = CHILD + "\nimport sys\nwrite(sys.argv[1], say=lambda m: print(m, flush=True))\n"
    incomplete_cases = 0
    for i, (marker, delay) in enumerate(KILLS):
        path = tmp_path / f"run{i}.h5"
        child = subprocess.Popen(
            [sys.executable, "-c", script, str(path)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        seen = []
        if marker is not None:
            for line in child.stdout:
                seen.append(line.strip())
                if seen[-1] == marker:
                    break
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert marker is None or seen[-1] == marker, f"child ended before {marker!r}"
        done = {(p[1], int(p[2])) for p in (s.split() for s in seen) if p[0] == "done"}
        if path.exists():
            incomplete_cases += check_consistent(path, done) > 0
        else:
            assert "open" not in seen
        ns["write"](path, resume=True)  # finish the run in this process
        assert_same_as_reference(path, reference)
    assert incomplete_cases >= 1, "no kill landed inside a step"


def _crash_at(path, point: int, torn: bool) -> bool:
    """In a forked child, run step 1 of the writer and die before its ``point``-th write
    syscall (after writing half of it if ``torn``).  True if the child finished normally."""
    pid = os.fork()
    if pid == 0:  # child: never returns
        try:
            calls = [0]

            def dying(real):
                def call(fd, data, *args):
                    calls[0] += 1
                    if calls[0] == point:
                        if torn and isinstance(data, (bytes, bytearray, memoryview)):
                            real(
                                fd,
                                memoryview(data).cast("B")[: len(memoryview(data).cast("B")) // 2],
                                *args,
                            )
                        os._exit(3)
                    return real(fd, data, *args)

                return call

            os.write, os.pwrite, os.ftruncate = (
                dying(os.write),
                dying(os.pwrite),
                dying(os.ftruncate),
            )
            ns["write"](path, resume=True, steps=[1])
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) in (0, 3)
    return os.WEXITSTATUS(status) == 0


def _crash_sweep(tmp_path, reference, every: int) -> None:
    """Die before every ``every``-th write syscall of two checkpoints (whole and torn)."""
    base, work = tmp_path / "base.h5", tmp_path / "work.h5"
    ns["write"](base, steps=[0])
    for point in range(1, 10_000, every):
        for torn in (False, True):
            shutil.copy(base, work)
            finished = _crash_at(work, point, torn)
            incomplete = check_consistent(work, {("sgd", 0), ("linearized", 0)})
            if finished:
                assert incomplete == 0 and point > 100  # all writes of both steps were reached
                ns["write"](work, resume=True)
                assert_same_as_reference(work, reference)
                return


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_crash_before_sampled_write_syscalls(tmp_path, reference):
    _crash_sweep(tmp_path, reference, every=11)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_crash_before_every_write_syscall(tmp_path, reference):
    _crash_sweep(tmp_path, reference, every=1)
