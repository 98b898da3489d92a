"""The ``ntk_limit`` / ``mup_limit`` regimes: written into run.h5 beside the finite regimes,
resumable, and refused with one line for what they do not cover."""

from __future__ import annotations

import pytest

from tangentlens.config import ConfigError, load_config
from tangentlens.store import open_run
from tangentlens.train import run

BASE = ["data.name=teacher", "data.n_train=64", "data.n_test=64",
        "data.options={d: 8, k: 2, link: relu}", "model.width=256", "model.depth=1",
        "model.bias=false", "model.activation=relu", "model.parametrization=mup", "model.gamma=8",
        "train.lr=0.02", "train.steps=40", "train.batch_size=32", "train.checkpoints=[0,10,40]",
        "train.momentum=0", "probe.n_train=16", "probe.n_test=16", "train.progress=false",
        "train.limit_particles=1024", "train.regimes=[sgd,ntk_limit,mup_limit]"]


def test_limit_regimes_in_run_file(tmp_path):
    cfg = load_config(None, BASE)
    result = run(cfg, tmp_path)
    r = open_run(result.path)
    assert r.regimes == ["sgd", "ntk_limit", "mup_limit"]
    for regime in ("ntk_limit", "mup_limit"):
        assert r.steps(regime) == [0, 10, 40]
        assert r.activations(regime, 40, "hook_logits", split="all").shape == (32, 1)
        assert r.activations(regime, 40, "layers.0.hook_post", split="all").shape == (32, 256)
    m = r.metrics("mup_limit")
    assert m["hidden_gram_change"].iloc[0] == 0 and m["hidden_gram_change"].iloc[-1] > 0.05
    assert (m["test_output_mc_err"] > 0).iloc[1:].all()
    assert (r.metrics("ntk_limit")["hidden_gram_change"] == 0).all()
    # same batches and lr: sgd-μP at width 256 is near its limit, far below the NTK limit's loss
    sgd, mup, ntk = (result.final(k)["train_loss"] for k in ("sgd", "mup_limit", "ntk_limit"))
    assert abs(sgd - mup) < 0.25 * mup < 0.25 * ntk
    # resume after the run finished rewrites nothing and keeps the metrics
    again = run(cfg, tmp_path, resume=True)
    assert again.final("mup_limit") == result.final("mup_limit")


@pytest.mark.parametrize("override, match", [
    ("model.depth=2", "model.depth=2"), ("model.kind=cnn", "model.kind='cnn'"),
    ("model.bias=true", "model.bias=True"), ("model.activation=gelu", "model.activation='gelu'"),
    ("train.momentum=0.9", "train.momentum=0.9"), ("model.parametrization=ntk", "'ntk' has no")])
def test_unsupported_limit_is_one_line_error(override, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_config(None, BASE + [override])
    assert "\n" not in str(info.value)
