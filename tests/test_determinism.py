"""The same config run twice on CPU gives bitwise-identical metrics, activations and θ."""

import json

from tangentlens.config import load_config
from tangentlens.store import open_run
from tangentlens.train import run

TINY = ["data.name=teacher", "data.n_train=128", "data.n_test=64", "data.options={d: 8, k: 2}",
        "model.width=32", "train.steps=12", "train.batch_size=32", "train.checkpoints=3",
        "train.optimizer=adam", "train.lr=0.01", "train.progress=false",
        "train.regimes=[sgd,linearized,lazy,kernel]", "train.alpha=2.0",
        "probe.n_train=32", "probe.n_test=32"]


def test_same_config_twice_is_bitwise_identical(tmp_path):
    cfg = load_config(None, TINY)
    a, b = run(cfg, tmp_path / "a"), run(cfg, tmp_path / "b")
    assert json.dumps(a.metrics) == json.dumps(b.metrics)  # exact floats, NaN included
    with open_run(a.path) as x, open_run(b.path) as y:
        assert x.regimes == y.regimes == ["sgd", "linearized", "kernel", "lazy"]
        assert x.metrics().equals(y.metrics())
        for regime in x.regimes:
            assert x.steps(regime) == y.steps(regime)
            for step in x.steps(regime):
                for view in x.views[regime]:
                    for hook in x.hooks:
                        u = x.activations(regime, step, hook, view, split="all").numpy()
                        v = y.activations(regime, step, hook, view, split="all").numpy()
                        assert u.tobytes() == v.tobytes(), (regime, step, view, hook)
                p, q = x.params(regime, step), y.params(regime, step)
                assert all(p[k].numpy().tobytes() == q[k].numpy().tobytes() for k in p)
