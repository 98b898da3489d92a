"""Smoke tests of the width and depth/width experiment scripts at their tiny scale."""

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

ANALYSES = Path(__file__).resolve().parents[1] / "analyses"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ANALYSES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_width_sweep_tiny(tmp_path):
    summary = _script("width_sweep").main(["--scale", "tiny", "--out", str(tmp_path)])
    assert summary["runs"] == 2 * 3 * 2  # tasks × parametrizations × widths
    df = pd.read_csv(tmp_path / "width_sweep.csv")
    for col in ("task", "parametrization", "regime", "view", "hook", "width", "seed",
                "relative_change", "probe_score"):
        assert col in df.columns
    assert set(df["regime"]) == {"sgd", "linearized"} and set(df["task"]) == {"teacher", "digits"}
    assert (df["relative_change"] > 0).all()
    slopes = json.loads((tmp_path / "slopes.json").read_text())
    assert {"task", "parametrization", "regime", "hook", "slope", "lo", "hi"} <= set(slopes[0])
    for task in ("teacher", "digits"):
        for fig in ("change_vs_width", "probe_vs_width", "loss_vs_width"):
            assert (tmp_path / f"{fig}_{task}.png").stat().st_size > 0
    html = (tmp_path / "report.html").read_text()
    assert html.count("<img") == 6 and "<table" in html and "slope [95% CI]" in html
    assert (tmp_path / "index.h5").exists()


def test_depth_width_tiny(tmp_path):
    summary = _script("depth_width").main(["--scale", "tiny", "--out", str(tmp_path)])
    df = pd.read_csv(tmp_path / "depth_width.csv")
    assert summary["runs"] == len(df) == 4
    assert (df["kernel_relative_change"] > 0).all() and (df["hidden_change"] > 0).all()
    fits = pd.read_csv(tmp_path / "slopes.csv")
    assert set(fits["metric"]) == {"kernel_relative_change", "kernel_distance", "hidden_change"}
    assert (tmp_path / "depth_width.png").stat().st_size > 0
    html = (tmp_path / "report.html").read_text()
    assert "<img" in html and "<table" in html and "depth/width" in html


@pytest.mark.slow
def test_infinite_width_tiny(tmp_path):
    summary = _script("infinite_width").main(["--scale", "tiny", "--out", str(tmp_path)])
    width = pd.read_csv(tmp_path / "width.csv")
    assert set(width["regime"]) == {"sgd", "linearized", "ntk_limit", "mup_limit"}
    assert (width[width.regime == "ntk_limit"]["hidden_gram_change"] == 0).all()
    gamma = pd.read_csv(tmp_path / "gamma.csv")
    mup = gamma[gamma.regime == "mup_limit"].groupby("gamma")["hidden_gram_change"].mean()
    assert mup.iloc[-1] > mup.iloc[0] > 0  # a larger γ moves the limit's hidden kernel more
    assert (tmp_path / "infinite_width.png").is_file() and (tmp_path / "gamma_strength.png").is_file()
    assert json.loads((tmp_path / "summary.json").read_text())["scale"] == "tiny"
    # the findings' Q8 rows read this output: 2 seeds, so every claim is inconclusive
    from tangentlens.findings.limits import limit_rows

    rows, figs, _ = limit_rows(tmp_path, tmp_path / "doc")
    by = {r["label"]: r for r in rows}
    assert by["ntk_limit: hidden-Gram change"]["values"] == [0.0, 0.0]
    assert by["mup_limit: hidden-Gram change"]["mean"] > 0
    assert {r["verdict"] for r in rows if "verdict" in r} == {"inconclusive"}
    assert "sgd vs mup_limit: (finite − limit)/limit of the test loss, w=64" in by
    assert all((tmp_path / "doc" / f).is_file() for f in figs)
