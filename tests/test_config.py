"""Config loading, overrides and validation messages."""

import pytest

from tangentlens.config import ConfigError, RunConfig, load_config


def test_defaults_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  width: 128\ntrain:\n  regimes: [sgd, linearized]\n")
    cfg = load_config(path, ["model.width=512", "train.lr=0.5", "data.options={d: 8, k: 3}"])
    assert cfg.model.width == 512 and cfg.train.lr == 0.5
    assert cfg.train.regimes == ["sgd", "linearized"]
    assert cfg.data.options == {"d": 8, "k": 3}
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("override, words", [
    ("model.activation=swish", ["model.activation", "swish", "relu", "tanh"]),
    ("model.parametrization=abc", ["model.parametrization", "abc", "mup"]),
    ("model.width=wide", ["model.width", "wide", "int"]),
    ("model.width=-3", ["model.width", "-3", "> 0"]),
    ("model.wdth=3", ["model.wdth", "width"]),
    ("train.regimes=[sgd,magic]", ["train.regimes", "magic", "linearized"]),
    ("train.loss=hinge", ["train.loss", "hinge", "cross_entropy"]),
    ("probe.compression=zstd", ["probe.compression", "zstd", "lzf"]),
])
def test_errors_name_field_value_and_choices(override, words):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    for w in words:
        assert w in str(e.value)


def test_kernel_regime_needs_mse():
    with pytest.raises(ConfigError, match="kernel"):
        load_config(None, ["train.loss=cross_entropy", "train.regimes=[sgd,kernel]"])


def test_checkpoints_log_spaced_and_explicit():
    cfg = load_config(None, ["train.steps=1000", "train.checkpoints=5"])
    steps = cfg.checkpoint_steps()
    assert steps[0] == 0 and steps[-1] == 1000 and steps == sorted(set(steps))
    ratios = [b / a for a, b in zip(steps[1:-1], steps[2:])]
    assert max(ratios) / min(ratios) < 1.5  # log-spaced: near-constant ratio
    cfg = load_config(None, ["train.steps=50", "train.checkpoints=[5, 10, 99]"])
    assert cfg.checkpoint_steps() == [0, 5, 10, 50]


def test_missing_config_file():
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config("nope.yaml")
