"""Sweeps (grid expansion, restart, index) and the log-log slope fit."""

import numpy as np
import pytest

from tangentlens import train
from tangentlens.experiments.scaling import fit_slope, fit_slopes
from tangentlens.config import ConfigError
from tangentlens.store import open_run, open_runs
from tangentlens.sweep import SweepError, expand_grid, run_names, run_sweep

TINY = ["data.name=teacher", "data.n_train=64", "data.n_test=32", "data.options={d: 4, k: 2}",
        "model.width=8", "model.depth=1", "train.regimes=[sgd,linearized]", "train.steps=3",
        "train.batch_size=16", "train.checkpoints=[0]", "train.progress=false",
        "probe.n_train=8", "probe.n_test=8", "probe.save_params=false"]


def test_expand_grid_product_and_lists_not_split():
    grid = expand_grid(["model.width=64,256", "train.regimes=[sgd,linearized]",
                        "model.parametrization=ntk,mup", "data.options={d: 8, k: 2}"])
    assert len(grid) == 4
    assert grid[0] == ["model.width=64", "train.regimes=[sgd,linearized]",
                       "model.parametrization=ntk", "data.options={d: 8, k: 2}"]
    assert [g[2] for g in grid] == ["model.parametrization=ntk", "model.parametrization=mup"] * 2
    assert expand_grid(["train.regimes=[sgd],[sgd,linearized]"]) == [
        ["train.regimes=[sgd]"], ["train.regimes=[sgd,linearized]"]]
    assert expand_grid([]) == [[]]
    assert run_names(["model.width=64,256", "seed=0,1", "train.steps=5"])[1] == "width=64__seed=1"
    assert run_names(["data.n_train=1,2", "probe.n_train=3,4"])[0] == (
        "data.n_train=1__probe.n_train=3")
    assert run_names(["seed=3"]) == ["run"]


@pytest.mark.parametrize("bad, key", [("model.width=64,,256", "model.width"),
                                      ("train.regimes=[sgd,linearized", "train.regimes"),
                                      ("seed=0,", "seed"), ("model.width", "model.width")])
def test_bad_override_names_the_key(bad, key):
    with pytest.raises(ConfigError, match=key):
        expand_grid([bad])


def test_bad_field_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "run", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(ConfigError, match="model.widht"):
        run_sweep(None, [*TINY, "model.widht=8,16"], tmp_path, progress=False)


def test_sweep_restart_skips_complete_and_resumes_incomplete(tmp_path, monkeypatch):
    from tangentlens.regimes import Trainer

    grid = [*TINY, "seed=0,1"]
    real_step = Trainer.step

    def killed(self, x, y):  # seed 1 dies inside its linearized regime
        if self.regime == "linearized" and self.cfg.seed == 1:
            raise KeyboardInterrupt
        return real_step(self, x, y)

    monkeypatch.setattr(Trainer, "step", killed)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(None, grid, tmp_path, progress=False)
    assert open_run(tmp_path / "seed=0" / "run.h5").complete
    assert not open_run(tmp_path / "seed=1" / "run.h5").complete
    monkeypatch.setattr(Trainer, "step", real_step)

    calls = []
    real = train.run
    monkeypatch.setattr(train, "run", lambda cfg, out, resume=False, overwrite=False: calls.append(
        (out, resume)) or real(cfg, out, resume=resume, overwrite=overwrite))
    index = run_sweep(None, grid, tmp_path, progress=False)
    assert calls == [(str(tmp_path / "seed=1"), True)]  # seed 0 skipped, seed 1 resumed
    runs = open_runs(index)
    assert sorted(r.path.parent.name for r in runs) == ["seed=0", "seed=1"]
    assert all(r.complete and r.regimes == ["sgd", "linearized"] for r in runs)
    runs.close()

    calls.clear()
    run_sweep(None, grid, tmp_path, progress=False)
    assert calls == []  # everything complete: nothing trained


def test_sweep_rejects_a_different_config_in_place(tmp_path):
    run_sweep(None, TINY, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="train.steps"):
        run_sweep(None, [*TINY, "train.steps=4"], tmp_path, progress=False)


def test_failed_run_reported_others_finish(tmp_path, monkeypatch):
    real = train.run

    def flaky(cfg, out, resume=False, overwrite=False):
        if cfg.seed == 0:
            raise RuntimeError("boom")
        return real(cfg, out, resume=resume, overwrite=overwrite)

    monkeypatch.setattr(train, "run", flaky)
    with pytest.raises(SweepError, match="seed=0: RuntimeError: boom"):
        run_sweep(None, [*TINY, "seed=0,1"], tmp_path, progress=False)
    assert open_run(tmp_path / "seed=1" / "run.h5").complete
    assert len(open_runs(tmp_path / "index.h5")) == 1


def test_fit_slope_matches_polyfit_and_ci_covers_truth():
    rng = np.random.default_rng(0)
    x = np.repeat([64, 128, 256, 512, 1024, 2048, 4096], 3)
    covered = 0
    for _ in range(200):
        y = 2.0 * x**-0.5 * np.exp(0.1 * rng.standard_normal(len(x)))
        f = fit_slope(x, y)
        slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
        assert f["slope"] == pytest.approx(slope) and f["intercept"] == pytest.approx(intercept)
        covered += f["lo"] <= -0.5 <= f["hi"]
    assert 0.9 <= covered / 200 <= 0.99  # nominal 95%
    assert np.isnan(fit_slope([1, 2], [1, 2])["lo"])  # two points: no interval
    assert fit_slope([1, 2, 4, 8], [1, 2, np.nan, 8])["n"] == 3  # non-finite dropped


def test_fit_slopes_groups():
    import pandas as pd

    df = pd.DataFrame({"g": ["a"] * 3 + ["b"] * 3, "x": [1, 2, 4] * 2,
                       "y": [1, 2, 4, 1, 0.5, 0.25]})
    out = fit_slopes(df, ["g"], "x", "y").set_index("g")
    assert out.loc["a", "slope"] == pytest.approx(1) and out.loc["b", "slope"] == pytest.approx(-1)


def test_slurm_section_is_executor_options_not_run_config(tmp_path):
    from tangentlens.sweep import load_sweep_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text("seed: 3\nslurm: {partition: gpu, time: 30}\n")
    assert load_sweep_config(cfg) == ({"seed": 3}, {"partition": "gpu", "time": 30})
    pytest.importorskip("submitit")
    cfg.write_text("seed: 3\nslurm: {partiton: gpu}\n")
    with pytest.raises(ValueError, match="partiton"):
        run_sweep(cfg, TINY, tmp_path / "out", executor="slurm", progress=False)
