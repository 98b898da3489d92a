"""An interrupted `train.run` resumed with resume=True ends with the numbers of an uninterrupted run."""

import numpy as np
import pytest

from tangentlens.config import load_config
from tangentlens.regimes import Trainer
from tangentlens.store import open_run
from tangentlens.train import run

TINY = ["data.name=teacher", "data.n_train=256", "data.n_test=128", "data.options={d: 8, k: 2}",
        "model.width=32", "model.activation=tanh", "train.steps=30", "train.batch_size=32",
        "train.checkpoints=[0, 5, 10, 20]", "train.momentum=0.9", "train.progress=false",
        "train.regimes=[sgd,linearized,kernel]", "probe.n_train=32", "probe.n_test=32"]


class Killed(Exception):
    pass


@pytest.mark.parametrize("kill_regime, kill_step", [("sgd", 13), ("linearized", 7)])
def test_resume_matches_uninterrupted(tmp_path, monkeypatch, kill_regime, kill_step):
    cfg = load_config(None, TINY)
    ref = run(cfg, out_dir=tmp_path / "ref")

    original, calls = Trainer.step, {"n": 0}

    def dies(self, x, y):
        if self.regime == kill_regime:
            calls["n"] += 1
            if calls["n"] > kill_step:
                raise Killed
        return original(self, x, y)

    monkeypatch.setattr(Trainer, "step", dies)
    with pytest.raises(Killed):
        run(cfg, out_dir=tmp_path / "cut")
    monkeypatch.setattr(Trainer, "step", original)
    with open_run(tmp_path / "cut" / "run.h5") as partial:
        assert not partial.complete
        assert partial.steps(kill_regime) == [s for s in (0, 5, 10, 20) if s <= kill_step]
    resumed = run(cfg, out_dir=tmp_path / "cut", resume=True)

    np.testing.assert_equal(resumed.metrics, ref.metrics)  # exact, NaN == NaN (no accuracy)
    with open_run(tmp_path / "ref" / "run.h5") as a, open_run(tmp_path / "cut" / "run.h5") as b:
        assert b.complete and a.regimes == b.regimes
        for regime in a.regimes:
            assert a.steps(regime) == b.steps(regime)
            for step in a.steps(regime):
                for view in a.views[regime]:
                    for hook in a.hooks:
                        x = a.activations(regime, step, hook, view, split="all").numpy()
                        y = b.activations(regime, step, hook, view, split="all").numpy()
                        assert np.array_equal(x, y), (regime, step, view, hook)
