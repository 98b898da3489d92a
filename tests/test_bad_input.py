"""Every bad input a user can give ends in one clear line: exit code 2 from the CLI, the bad
value and what is valid named, no traceback, and no file already on disk changed.

Most CLI cases call ``tangentlens.cli.main`` in-process (a subprocess with torch costs
seconds); a representative subset runs as real ``python -m tangentlens.cli`` processes.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import torch

from tangentlens.cli import main
from tangentlens.config import ConfigError, RunConfig, load_config
from tangentlens.rundir import RunDirError, load_state
from tangentlens.store import open_run
from tangentlens.train import run

GOOD = """\
name: tiny
data: {name: teacher, n_train: 256, n_test: 64, options: {d: 8, k: 2}}
model: {width: 32, activation: tanh}
train: {steps: 10, batch_size: 32, checkpoints: [0, 5], regimes: [sgd, linearized], progress: false}
probe: {n_train: 16, n_test: 16}
"""


class Evil:
    """Unpickling this runs ``touch marker``: what a crafted state file would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A directory with a good config, a finished run, an evil run and every kind of bad file."""
    w = tmp_path_factory.mktemp("world")
    (w / "good.yaml").write_text(GOOD)
    assert main(["run", str(w / "good.yaml"), "--out", str(w / "existing")]) == 0
    run_h5 = w / "existing" / "run.h5"
    shutil.copytree(w / "existing", w / "evil")
    torch.save({"trainer": Evil(w / "PWNED"), "step": 0, "metrics": []}, w / "evil/state/sgd.pt")
    (w / "empty.yaml").write_text("")
    (w / "list.yaml").write_text("- model\n- train\n")
    (w / "malformed.yaml").write_text("model: {width: 32\ntrain: [\n")
    (w / "misspelled.yaml").write_text(GOOD.replace("model:", "modle:"))
    (w / "binary.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    (w / "confdir").mkdir()
    (w / "afile").write_text("not a directory")
    (w / "notes.txt").write_text("these are notes, not a run\n")
    (w / "empty.h5").write_bytes(b"")
    data = run_h5.read_bytes()
    (w / "trunc.h5").write_bytes(data[: len(data) // 3])
    with h5py.File(w / "foreign.h5", "w") as f:
        f["x"] = [1, 2, 3]
    shutil.copy(run_h5, w / "future.h5")
    with h5py.File(w / "future.h5", "r+") as f:
        f.attrs["format_version"] = 99
    (w / "norun").mkdir()
    return w


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file()
            else "dir" for p in sorted(root.rglob("*"))}


def one_line_error(text: str, words: list[str]) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


C, N = "{w}/good.yaml", "{w}/new"  # a good config; a run directory that does not exist yet
RUN = ["run", C, "--out", N]
CASES = {  # name: (argv, words the error line must hold)
    "misspelled key": ([*RUN, "model.wdth=3"], ["model.wdth", "did you mean 'model.width'?"]),
    "misspelled section": ([*RUN, "trian.steps=3"], ["trian", "did you mean 'train'?"]),
    "misspelled in file": (["run", "{w}/misspelled.yaml", "--out", N], ["modle", "'model'"]),
    "misspelled nested": ([*RUN, "probe.n_trian=3"], ["probe.n_trian", "'probe.n_train'"]),
    "width not int": ([*RUN, "model.width=wide"], ["model.width='wide'", "int"]),
    "lr list": ([*RUN, "train.lr=[1]"], ["train.lr=[1]", "float"]),
    "progress not bool": ([*RUN, "train.progress=maybe"], ["train.progress='maybe'", "bool"]),
    "regimes not list": ([*RUN, "train.regimes=3"], ["train.regimes=3", "list"]),
    "width 0": ([*RUN, "model.width=0"], ["model.width=0", "> 0"]),
    "depth 0": ([*RUN, "model.depth=0"], ["model.depth=0", "> 0"]),
    "lr 0": ([*RUN, "train.lr=0"], ["train.lr=0.0", "> 0"]),
    "lr negative": ([*RUN, "train.lr=-0.1"], ["train.lr=-0.1", "> 0"]),
    "lr nan": ([*RUN, "train.lr=.nan"], ["train.lr=nan", "> 0"]),
    "lr inf": ([*RUN, "train.lr=.inf"], ["train.lr=inf", "> 0"]),
    "steps negative": ([*RUN, "train.steps=-1"], ["train.steps=-1", ">= 0"]),
    "n_train 0": ([*RUN, "data.n_train=0"], ["data.n_train=0", "> 0"]),
    "batch size 0": ([*RUN, "train.batch_size=0"], ["train.batch_size=0", "> 0"]),
    "batch over n_train": ([*RUN, "train.batch_size=4000"], ["train.batch_size=4000", "training points", "full"]),
    "batch size word": ([*RUN, "train.batch_size=half"], ["train.batch_size='half'", "'full'"]),
    "unknown regime": ([*RUN, "train.regimes=[sgd,magic]"], ["'magic'", "linearized", "lazy"]),
    "no regime": ([*RUN, "train.regimes=[]"], ["train.regimes=[]", "sgd"]),
    "unknown activation": ([*RUN, "model.activation=swish"], ["'swish'", "relu", "tanh"]),
    "unknown parametrization": ([*RUN, "model.parametrization=abc"], ["'abc'", "ntk", "mup"]),
    "unknown dataset": ([*RUN, "data.name=imagenet"], ["'imagenet'", "mnist", "teacher"]),
    "unknown model kind": ([*RUN, "model.kind=rnn"], ["'rnn'", "mlp", "transformer"]),
    "unknown optimizer": ([*RUN, "train.optimizer=lbfgs"], ["'lbfgs'", "adam"]),
    "unknown device": ([*RUN, "train.device=tpu"], ["'tpu'", "cuda"]),
    "unknown hook": ([*RUN, "probe.hooks=[layers.9.hook_post]"],
                     ["layers.9.hook_post", "layers.0.hook_post"]),
    "unknown dataset option": ([*RUN, "data.options={d: 8, bogus: 1}"], ["'bogus'", "noise"]),
    "bad dataset option": ([*RUN, "data.options={d: 0}"], ["d=0", "[1, "]),
    "inf in data": ([*RUN, "data.options={d: 8, k: 2, noise: .inf}"], ["y_train", "NaN/Inf"]),
    "empty yaml": (["run", "{w}/empty.yaml", "--out", N], ["empty.yaml", "empty", "mapping"]),
    "list yaml": (["run", "{w}/list.yaml", "--out", N], ["list.yaml", "list", "mapping"]),
    "malformed yaml": (["run", "{w}/malformed.yaml", "--out", N], ["malformed.yaml", "YAML", "line"]),
    "binary config": (["run", "{w}/binary.yaml", "--out", N], ["binary.yaml", "not a text file"]),
    "missing config": (["run", "{w}/nope.yaml", "--out", N], ["nope.yaml", "does not exist"]),
    "config is a dir": (["run", "{w}/confdir", "--out", N], ["confdir", "directory"]),
    "out is a file": (["run", C, "--out", "{w}/afile"], ["afile", "is a file"]),
    "out under a file": (["run", C, "--out", "{w}/afile/sub"], ["afile", "is a file"]),
    "out read-only": (["run", C, "--out", "/sys/tangentlens_ro"], ["/sys/tangentlens_ro", "write"]),
    "override without =": (["run", C, "model.width", "--out", N], ["'model.width'", "key=value"]),
    "override empty key": ([*RUN, "=3"], ["'=3'", "key=value"]),
    "override into a value": ([*RUN, "model.width.x=3"], ["model.width.x=3", "not a section"]),
    "override bad yaml": ([*RUN, "train.regimes=[sgd"], ["[sgd", "not valid YAML"]),
    "section set to scalar": ([*RUN, "model=3"], ["model=3", "mapping"]),
    "existing run": (["run", C, "--out", "{w}/existing"], ["existing", "--resume", "--overwrite"]),
    "resume and overwrite": (["run", C, "--out", "{w}/existing", "--resume", "--overwrite"],
                             ["--resume", "--overwrite"]),
    "resume other config": (["run", C, "--out", "{w}/existing", "--resume", "model.width=64"],
                            ["cannot resume", "model.width"]),
    "crafted pickle": (["run", C, "--out", "{w}/evil", "--resume"],
                       ["sgd.pt", "refused", "posix.system", "--overwrite"]),
    "too wide for memory": ([*RUN, "model.width=1000000"], ["model.width=1000000", "memory", "GB"]),
    "too much for disk": ([*RUN, "model.width=4096", "train.steps=100000", "train.checkpoints=100000"],
                          ["model.width=4096", "disk", "GB", "probe.dtype=float16"]),
    "unknown option": ([*RUN, "--bogus"], ["--bogus"]),
    "unknown command": (["frobnicate"], ["'frobnicate'", "run", "analyze"]),
    "missing --out": (["run", C], ["--out"]),
    "analyze non-hdf5": (["analyze", "{w}/notes.txt", "--out", N], ["notes.txt", "not an HDF5 file"]),
    "analyze empty file": (["analyze", "{w}/empty.h5", "--out", N], ["empty.h5", "empty file"]),
    "analyze truncated": (["analyze", "{w}/trunc.h5", "--out", N], ["trunc.h5", "truncated"]),
    "analyze foreign hdf5": (["analyze", "{w}/foreign.h5", "--out", N], ["foreign.h5", "not written by"]),
    "analyze future format": (["analyze", "{w}/future.h5", "--out", N],
                              ["future.h5", "format_version 99", "upgrade"]),
    "analyze missing": (["analyze", "{w}/missing.h5", "--out", N], ["missing.h5", "no run file"]),
    "analyze dir without run": (["analyze", "{w}/norun", "--out", N], ["norun", "no run file"]),
    "analyze unknown analysis": (["analyze", "{w}/existing", "--out", N, "--only", "bogus"],
                                 ["'bogus'", "change", "probing"]),
    "analyze out is a file": (["analyze", "{w}/existing", "--out", "{w}/afile"], ["afile"]),
}
SUBPROCESS = ["misspelled key", "malformed yaml", "unknown option", "unknown command", "existing run",
              "crafted pickle", "analyze truncated", "analyze future format"]


def _argv(argv: list[str], w: Path) -> list[str]:
    return [a.replace("{w}", str(w)) for a in argv]


@pytest.mark.parametrize("name", list(CASES))
def test_cli_bad_input(world, name, capsys):
    argv, words = CASES[name]
    before = tree(world)
    try:
        code = main(_argv(argv, world))
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    one_line_error(err, _argv(words, world))
    assert tree(world) == before  # nothing changed, nothing created
    assert not (world / "PWNED").exists()


@pytest.fixture(scope="module")
def processes(world):
    """The SUBPROCESS cases as real processes, started together (torch import is slow)."""
    before = tree(world)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH")]))}
    procs = {n: subprocess.Popen([sys.executable, "-m", "tangentlens.cli", *_argv(CASES[n][0], world)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for n in SUBPROCESS}
    done = {n: (p.wait(timeout=300), *p.communicate()) for n, p in procs.items()}
    return done, before


@pytest.mark.parametrize("name", SUBPROCESS)
def test_cli_bad_input_subprocess(world, processes, name):
    done, before = processes
    code, _, err = done[name]
    assert code == 2, err
    one_line_error(err, _argv(CASES[name][1], world))
    assert tree(world) == before
    assert not (world / "PWNED").exists()


def test_divergence_stops_one_regime_others_finish(world, capsys):
    out = world.parent / "diverged"
    code = main(["run", str(world / "good.yaml"), "--out", str(out), "train.lr=1e5",
                 "train.regimes=[sgd,kernel]"])
    captured = capsys.readouterr()
    assert code == 2
    one_line_error(captured.err, ["regime 'sgd' diverged at step", "train.lr=100000.0", "lower"])
    assert "kernel" in captured.out  # the other regime reported its final numbers
    with open_run(out / "run.h5") as r:
        assert r.complete and r.steps("kernel") == [0, 10]


def _existing(world) -> Path:
    return world / "existing" / "run.h5"


API_CASES = {  # name: (call, exception type, words)
    "regime": (lambda r: r.activations("magic", 0, "hook_logits"), KeyError, ["'magic'", "sgd"]),
    "step": (lambda r: r.activations("sgd", 999, "hook_logits"), KeyError, ["999", "[0, 5, 10]"]),
    "hook": (lambda r: r.activations("sgd", 0, "hook_nope"), KeyError, ["'hook_nope'", "hook_logits"]),
    "view": (lambda r: r.activations("linearized", 0, "hook_logits", view="cotangent"), KeyError,
             ["'cotangent'", "tangent"]),
    "split": (lambda r: r.activations("sgd", 0, "hook_logits", split="val"), KeyError,
              ["'val'", "test"]),
    "sgd has no tangent": (lambda r: r.activations("sgd", 0, "hook_logits", view="tangent"), KeyError,
                           ["'tangent'", "network"]),
}


@pytest.mark.parametrize("name", list(API_CASES))
def test_api_store_keys(world, name):
    call, exc, words = API_CASES[name]
    before = tree(world)
    with open_run(_existing(world)) as r, pytest.raises(exc) as e:
        call(r)
    one_line_error(str(e.value), words)
    assert tree(world) == before


def test_api_run_refuses_existing_dir_and_names_overwrite(world):
    before = tree(world)
    with pytest.raises(RunDirError) as e:
        run(load_config(world / "good.yaml"), world / "existing")
    one_line_error(str(e.value), ["already holds a run", "resume=True", "overwrite=True"])
    assert tree(world) == before


def test_api_config_suggests_closest_key():
    with pytest.raises(ConfigError, match=r"did you mean 'train.batch_size'\?"):
        RunConfig.from_dict({"train": {"batchsize": 3}})


def test_api_plain_pickle_state_refused_unexecuted(tmp_path):
    path = tmp_path / "sgd.pt"
    path.write_bytes(pickle.dumps({"trainer": Evil(tmp_path / "PWNED"), "step": 0, "metrics": []}))
    with pytest.raises(RunDirError) as e:
        load_state(path)
    one_line_error(str(e.value), ["sgd.pt", "refused"])
    assert not (tmp_path / "PWNED").exists()
    path.write_bytes(os.urandom(64))
    with pytest.raises(RunDirError, match="refused"):
        load_state(path)
    torch.save([1, 2], path)  # a valid tensor file, but no trainer state
    with pytest.raises(RunDirError, match="expected keys"):
        load_state(path)
