"""SIGKILL of a real `run` + `analyze` at random points of training, caching and analysis
writes: every checkpoint that completed stays readable and bit-identical to an uninterrupted
run, and resuming finishes the run with the uninterrupted numbers.  `analyze` while a run
is writing is a documented refusal (docs/file-format.md), and works once the writer is gone.

The child is a fork of the test process (torch already imported, so each kill costs
milliseconds, not an interpreter start).  It counts events — optimizer steps, activation
batch writes, analysis file writes — and at a randomly drawn event arms a timer that
SIGKILLs it a random 0–2 ms later, inside or after that event.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from tangentlens.config import load_config
from tangentlens.lenses.registry import analyze
from tangentlens.regimes import Trainer
from tangentlens.rundir import load_state
from tangentlens.store import StepWriter, open_run
from tangentlens.train import run

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

TINY = ["data.name=teacher", "data.n_train=128", "data.n_test=64", "data.options={d: 8, k: 2}",
        "model.width=32", "model.activation=tanh", "train.steps=24", "train.batch_size=32",
        "train.checkpoints=[0, 3, 8, 16]", "train.momentum=0.9", "train.progress=false",
        "train.regimes=[sgd,linearized]", "probe.n_train=32", "probe.n_test=32",
        "probe.batch_size=8"]
PHASES = {"training": (Trainer, "step"), "caching": (StepWriter, "write"),
          "analysis": None}  # analysis: CSV and figure writes


def _instrument(monkeypatch, on_event) -> None:
    """Call ``on_event(phase)`` before every event of each phase."""
    def wrap(phase, cls, name):
        original = getattr(cls, name)

        def counted(*args, **kwargs):
            on_event(phase)
            return original(*args, **kwargs)

        monkeypatch.setattr(cls, name, counted)

    wrap("training", Trainer, "step")
    wrap("caching", StepWriter, "write")
    wrap("analysis", pd.DataFrame, "to_csv")
    wrap("analysis", Figure, "savefig")


def _job(out, phase="training"):
    """The run, then its analysis; for kills in the analysis, only the analysis of a copy of
    the finished reference run (training it again would add nothing)."""
    if phase != "analysis":
        run(load_config(None, TINY), out)
    analyze(out / "run.h5", out / "analysis", only=["change"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run + analysis, and the global event indices of each phase."""
    out = tmp_path_factory.mktemp("ref")
    events: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        _instrument(mp, events.append)
        _job(out)
    first = events.index("analysis")  # analysis events are counted from the analysis start
    return out, {p: [i - (first if p == "analysis" else 0) for i, e in enumerate(events) if e == p]
                 for p in PHASES}


def _kill_at(out, phase: str, event: int, delay: float) -> int:
    """Fork a child that runs the job and SIGKILLs itself ``delay`` s after event ``event``."""
    pid = os.fork()
    if pid == 0:  # child: never returns
        try:
            count = [0]

            def on_event(_phase):
                if count[0] == event:
                    threading.Timer(delay, os.kill, (os.getpid(), signal.SIGKILL)).start()
                count[0] += 1

            with pytest.MonkeyPatch.context() as mp:
                _instrument(mp, on_event)
                _job(out, phase)
            time.sleep(1)  # a timer armed at the very last event still fires
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return status


def _check_complete_steps(path, ref) -> int:
    """Every complete step of ``path`` equals the reference bit for bit; returns their number."""
    n = 0
    with open_run(path) as got, open_run(ref) as want:
        for regime in got.regimes:
            steps = got.steps(regime)
            assert set(steps) <= set(want.steps(regime))
            metrics, ref_metrics = got.metrics(regime), want.metrics(regime)
            if steps:
                want_rows = ref_metrics[ref_metrics.step.isin(steps)].reset_index(drop=True)
                assert metrics.equals(want_rows)
            else:
                assert metrics.empty
            for step in steps:
                for view in got.views[regime]:
                    for hook in got.hooks:
                        a = got.activations(regime, step, hook, view, "all").numpy()
                        b = want.activations(regime, step, hook, view, "all").numpy()
                        assert a.tobytes() == b.tobytes(), (regime, step, view, hook)
                n += 1
    return n


def _check_same_as_reference(out, ref_out) -> None:
    with open_run(out / "run.h5") as a, open_run(ref_out / "run.h5") as b:
        assert a.complete and a.regimes == b.regimes
        assert all(a.steps(r) == b.steps(r) for r in b.regimes)
    _check_complete_steps(out / "run.h5", ref_out / "run.h5")


def _sigkill_sweep(tmp_path, reference, per_phase: dict[str, int], seed: int) -> None:
    """Kill at ``per_phase[phase]`` random events of each phase; check; resume every third."""
    ref_out, phase_events = reference
    rng = random.Random(seed)
    kills = [(phase, rng.choice(phase_events[phase]), rng.uniform(0, 0.002))
             for phase in PHASES for _ in range(per_phase[phase])]
    killed = {p: 0 for p in PHASES}
    for i, (phase, event, delay) in enumerate(kills):
        out = tmp_path / f"kill{i}"
        if phase == "analysis":
            out.mkdir()
            shutil.copy(ref_out / "run.h5", out / "run.h5")
        status = _kill_at(out, phase, event, delay)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (i, status)
        killed[phase] += 1
        if (out / "run.h5").exists():
            _check_complete_steps(out / "run.h5", ref_out / "run.h5")
        for state in (out / "state").glob("*.pt"):
            load_state(state)  # never torn: written to a tmp file and renamed
        if phase == "analysis":  # analysis only reads: the run file is untouched
            assert (out / "run.h5").read_bytes() == (ref_out / "run.h5").read_bytes()
            summary = out / "analysis" / "summary.json"  # written last, atomically
            if summary.exists():
                assert (out / "analysis" / json.loads(summary.read_text())["analyses"]["change"]
                        ["csv"]).exists()
        if i % 3 == 0:  # resuming (or re-analyzing) finishes with the uninterrupted result
            if phase == "analysis":
                analyze(out / "run.h5", out / "analysis", only=["change"])
                got, want = (pd.read_csv(d / "analysis" / "change.csv").drop(columns="run")
                             for d in (out, ref_out))  # `run` is the directory's label
                assert got.equals(want)
            else:
                run(load_config(None, TINY), out, resume=True)
                _check_same_as_reference(out, ref_out)
    assert killed == per_phase


def test_sigkill_at_random_points(tmp_path, reference):
    _sigkill_sweep(tmp_path, reference, {"training": 3, "caching": 3, "analysis": 2}, seed=11)


@pytest.mark.slow
def test_sigkill_at_21_random_points_of_training_caching_and_analysis(tmp_path, reference):
    _sigkill_sweep(tmp_path, reference, {"training": 7, "caching": 7, "analysis": 7}, seed=12)


def test_analyze_refuses_a_run_being_written_then_works(tmp_path, reference, capsys):
    from tangentlens.cli import main

    ref_out, _ = reference
    out = tmp_path / "live"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: a run that stops after its third checkpoint and waits there
        try:
            os.close(read)
            calls = [0]
            original = StepWriter._finish

            def finish_then_wait(self):
                original(self)
                calls[0] += 1

            def step(self, x, y, _orig=Trainer.step):
                if calls[0] >= 3:
                    os.write(write, b"x")
                    time.sleep(600)
                return _orig(self, x, y)

            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(StepWriter, "_finish", finish_then_wait)
                mp.setattr(Trainer, "step", step)
                run(load_config(None, TINY), out)
        finally:
            os._exit(1)
    os.close(write)
    try:
        assert os.read(read, 1) == b"x"
        code = main(["analyze", str(out / "run.h5"), "--out", str(tmp_path / "a")])
        err = capsys.readouterr().err
        assert code == 2 and "still writing" in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "a").exists()
        with open_run(out / "run.h5") as live:  # a notebook peek sees committed checkpoints
            assert not live.complete and live.steps("sgd") == [0, 3, 8]
        assert _check_complete_steps(out / "run.h5", ref_out / "run.h5") == 3
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(read)
    assert main(["analyze", str(out / "run.h5"), "--out", str(tmp_path / "a"), "--only", "change"]) == 0
    frame = pd.read_csv(tmp_path / "a" / "change.csv")
    assert set(frame.step) == {0, 3, 8} and np.isfinite(frame.value).any()
