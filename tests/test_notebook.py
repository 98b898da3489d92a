"""The example notebook runs end to end on a tiny run made by `tangentlens run`."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tangentlens.cli import main

NOTEBOOK = Path(__file__).parents[1] / "analyses" / "explore_cache.ipynb"


def test_explore_cache_notebook(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert main(["run", str(NOTEBOOK.parent / "configs" / "digits_mlp.yaml"), "--out", str(out),
                 "model.width=64", "train.lr=0.2", "train.steps=20", "train.checkpoints=3", "train.progress=false",
                 "probe.n_train=64", "probe.n_test=64",
                 "train.kernel_max_train=128"]) == 0
    monkeypatch.setenv("TANGENTLENS_RUN", str(out / "run.h5"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum(o.get("data", {}).get("image/png") is not None for o in outputs) >= 2  # two figures
    text = "".join(o.get("text", "") for o in outputs)
    assert "linearized" in text and "||h - h0||" in text
