"""Matched training: same θ0, same batches, determinism, divergence, the width law."""

import math

import numpy as np
import pytest
import torch

from tangentlens.config import load_config
from tangentlens.regimes import Trainer
from tangentlens.train import Batches, prepare, run

TINY = ["data.name=teacher", "data.n_train=256", "data.n_test=128", "data.options={d: 8, k: 2}",
        "model.width=32", "model.activation=tanh", "train.steps=20", "train.batch_size=32",
        "train.checkpoints=3", "train.progress=false", "probe.n_train=32", "probe.n_test=32"]


def test_same_theta0_and_same_batches(monkeypatch):
    seen: dict[str, list] = {}
    original = Trainer.step

    def record(self, x, y):
        seen.setdefault(self.regime, []).append((x.clone(), y.clone()))
        return original(self, x, y)

    monkeypatch.setattr(Trainer, "step", record)
    cfg = load_config(None, TINY + ["train.regimes=[sgd,linearized,lazy]"])
    _, model0 = prepare(cfg)
    trainers = {r: Trainer(r, model0, cfg) for r in cfg.train.regimes}
    for r, t in trainers.items():  # bitwise-identical θ0
        for (n, p), (_, q) in zip(t.model.named_parameters(), model0.named_parameters()):
            assert torch.equal(p, q), (r, n)
    run(cfg)
    ref = seen["sgd"]
    assert len(ref) == cfg.train.steps
    for r in ("linearized", "lazy"):
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(ref, seen[r]))


def test_deterministic_and_regimes_differ():
    cfg = load_config(None, TINY + ["train.regimes=[sgd,linearized]"])
    a, b = run(cfg), run(cfg)
    assert a.metrics == b.metrics
    assert a.final("sgd")["train_loss"] != a.final("linearized")["train_loss"]
    assert a.final("sgd")["train_loss"] < a.metrics["sgd"][0]["train_loss"]  # it trains


def test_batches_cover_each_epoch_once():
    b = Batches(n=100, batch_size=30, seed=3)
    epoch = torch.cat([b(t) for t in range(b.per_epoch)])
    assert len(set(epoch.tolist())) == len(epoch) == 90
    assert not torch.equal(b(0), b(b.per_epoch))  # reshuffled next epoch
    assert torch.equal(Batches(100, 30, 3)(5), b(5))


def test_divergence_stops_one_regime(capsys, monkeypatch):
    original = Trainer.step
    calls = {"sgd": 0}

    def nan_at_step_5(self, x, y):
        loss = original(self, x, y)
        if self.regime == "sgd":
            calls["sgd"] += 1
            if calls["sgd"] == 6:
                with torch.no_grad():
                    next(self.model.parameters()).fill_(float("nan"))
                return float("nan")
        return loss

    monkeypatch.setattr(Trainer, "step", nan_at_step_5)
    res = run(load_config(None, TINY + ["train.regimes=[sgd,linearized]"]))
    out = capsys.readouterr()
    assert res.diverged == {"sgd": 5}
    assert "regime 'sgd' diverged at step 5" in out.out + out.err
    assert res.metrics["linearized"][-1]["step"] == 20  # the other regime continued


def _rms_gap(width: int, seed: int) -> float:
    cfg = load_config(None, [
        "data.name=teacher", "data.n_train=128", "data.n_test=256", "data.options={d: 16, k: 2}",
        f"model.width={width}", "model.depth=2", "model.activation=tanh", "model.parametrization=ntk",
        "train.optimizer=sgd", "train.lr=0.5", "train.batch_size=128", f"seed={seed}"])
    ds, model0 = prepare(cfg)
    sgd, lin = Trainer("sgd", model0, cfg), Trainer("linearized", model0, cfg)
    for _ in range(100):  # full-batch gradient descent, identical for both
        sgd.step(ds.x_train, ds.y_train)
        lin.step(ds.x_train, ds.y_train)
    with torch.no_grad():
        return float((sgd.output(ds.x_test) - lin.output(ds.x_test)).pow(2).mean().sqrt())


@pytest.mark.slow
def test_width_law_lee_et_al_2019():
    """sgd − linearized output gap falls with width under the NTK parametrization (theory: ~n^-1/2)."""
    widths = [128, 256, 512, 1024, 2048]
    gaps = [_rms_gap(w, seed=0) for w in widths]
    slope = np.polyfit(np.log(widths), np.log(gaps), 1)[0]
    print(f"widths {widths} rms gaps {np.round(gaps, 5).tolist()} slope {slope:.3f}")
    assert all(math.isfinite(g) for g in gaps)
    assert slope < -0.25, (gaps, slope)
