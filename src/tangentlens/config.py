"""Typed run configuration: YAML files plus ``key=value`` overrides, validated.

A run = one dataset + one model + one training recipe + one probe set + one seed,
trained in every requested regime from the same θ0.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGIMES = ("sgd", "linearized", "kernel", "lazy", "mup_limit", "ntk_limit")
# npz / torchvision: user files; python: a Dataset passed to tangentlens.run(data=...)
DATASETS = ("digits", "mnist", "mnist1d", "teacher", "modular_addition", "cifar10", "npz",
            "torchvision", "python")
# python: factory(**options) from model.factory, or a module passed to tangentlens.run(model=...)
MODEL_KINDS = ("mlp", "cnn", "transformer", "python")
ACTIVATIONS = ("relu", "tanh", "gelu", "erf", "linear")
PARAMETRIZATIONS = ("sp", "ntk", "mup", "mf")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "linear", "warmup_cosine")
LOSSES = ("mse", "cross_entropy")
COMPRESSIONS = ("none", "lzf", "gzip")
DTYPES = ("float32", "float16")


class ConfigError(ValueError):
    """A config value is invalid; the message names the field, the value and valid choices."""


@dataclass
class DataConfig:
    name: str = "digits"
    n_train: int | None = None
    n_test: int | None = None
    data_dir: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # dataset-specific (d, k, link, p, ...)
    path: str | None = None  # npz: the file with x_train, y_train, x_test, y_test
    dataset: str | None = None  # torchvision: the dataset class, e.g. CIFAR10
    root: str | None = None  # torchvision: the directory holding its files


@dataclass
class ModelConfig:
    kind: str = "mlp"
    width: int = 256
    depth: int = 2
    activation: str = "relu"
    bias: bool = True
    parametrization: str = "ntk"
    base_width: int = 64
    gamma: float = 1.0  # feature-learning strength: output / γ, lr × γ² (docs/parametrizations.md)
    gain: float | None = None
    kernel_size: int = 3
    n_layers: int = 1
    d_model: int = 128
    n_heads: int = 4
    d_head: int | None = None
    d_mlp: int | None = None
    act_fn: str = "relu"
    normalization_type: str | None = None
    n_ctx: int | None = None
    d_vocab: int | None = None
    factory: str | None = None  # kind python: "module:function" returning an nn.Module
    factory_path: str | None = None  # searched first for the factory (default: config's folder)
    options: dict[str, Any] = field(default_factory=dict)  # kind python: factory(**options)
    init_from: str | None = None  # θ0 = this state_dict (.pt/.pth weights only, .safetensors)


@dataclass
class TrainConfig:
    regimes: list[str] = field(default_factory=lambda: ["sgd", "linearized", "kernel"])
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: str = "constant"
    warmup_steps: int = 0
    loss: str = "mse"
    steps: int = 1000
    batch_size: int | str = 128  # or "full": every training point in every step
    checkpoints: int | list[int] = 8  # int: that many log-spaced steps in [0, steps]; list: explicit
    alpha: float = 1.0  # lazy regime scale
    ridge: float = 0.0  # kernel regime ridge
    kernel_max_train: int = 2048  # kernel regime fits on at most this many training points
    limit_particles: int = 4096  # mup_limit: particles per set (non-linear activations)
    limit_replicas: int = 2  # mup_limit: independent particle sets (Monte-Carlo error estimate)
    spawn_step: int = 0  # > 0: sgd trains this many steps, then the other regimes start at θ_K
    device: str = "cpu"
    dtype: str = "float32"
    progress: bool = True


@dataclass
class ProbeConfig:
    n_train: int = 256
    n_test: int = 256
    hooks: list[str] | None = None  # None: every hook of the model
    batch_size: int = 256
    compression: str = "none"
    dtype: str = "float32"
    save_params: bool = True


@dataclass
class RunConfig:
    seed: int = 0
    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        cfg = _build(cls, d, "")
        validate(cfg)
        return cfg

    def checkpoint_steps(self) -> list[int]:
        """Sorted unique checkpoint steps, always including 0 and the final step."""
        t = self.train
        if isinstance(t.checkpoints, int):
            n = max(t.checkpoints, 2)
            steps = {0, t.steps} | {round(t.steps ** (i / (n - 1))) for i in range(n)}
        else:
            steps = {0, t.steps, *t.checkpoints}
        steps |= {t.spawn_step}
        return sorted(s for s in steps if 0 <= s <= t.steps)


def _choice(path: str, value: Any, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"{path}={value!r} is not valid; choose one of: {', '.join(valid)}")


def _positive(path: str, value: Any, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not ok or (isinstance(value, float) and not math.isfinite(value)):
        raise ConfigError(f"{path}={value!r} is not valid; it must be {'>= 0' if allow_zero else '> 0'}")


def validate(cfg: RunConfig) -> None:
    """Raise ConfigError for the first invalid value."""
    _choice("data.name", cfg.data.name, DATASETS)
    _choice("model.kind", cfg.model.kind, MODEL_KINDS)
    _choice("model.activation", cfg.model.activation, ACTIVATIONS)
    _choice("model.parametrization", cfg.model.parametrization, PARAMETRIZATIONS)
    for r in cfg.train.regimes:
        _choice("train.regimes[]", r, REGIMES)
    if not cfg.train.regimes:
        raise ConfigError(f"train.regimes=[] is not valid; choose one or more of: {', '.join(REGIMES)}")
    _choice("train.optimizer", cfg.train.optimizer, OPTIMIZERS)
    _choice("train.schedule", cfg.train.schedule, SCHEDULES)
    _choice("train.loss", cfg.train.loss, LOSSES)
    _choice("train.dtype", cfg.train.dtype, ("float32", "float64"))
    _choice("probe.compression", cfg.probe.compression, COMPRESSIONS)
    _choice("probe.dtype", cfg.probe.dtype, DTYPES)
    for path, v in [("model.width", cfg.model.width), ("model.depth", cfg.model.depth),
                    ("model.gamma", cfg.model.gamma), ("train.limit_particles", cfg.train.limit_particles),
                    ("train.limit_replicas", cfg.train.limit_replicas),
                    ("model.base_width", cfg.model.base_width), ("train.lr", cfg.train.lr),
                    ("train.alpha", cfg.train.alpha),
                    ("probe.batch_size", cfg.probe.batch_size)]:
        _positive(path, v)
    if isinstance(cfg.train.batch_size, str):
        if cfg.train.batch_size != "full":
            raise ConfigError(f"train.batch_size={cfg.train.batch_size!r} is not valid; expected a "
                              "positive int or 'full' (every training point in every step)")
    else:
        _positive("train.batch_size", cfg.train.batch_size)
    for path, v in [("data.n_train", cfg.data.n_train), ("data.n_test", cfg.data.n_test)]:
        if v is not None:
            _positive(path, v)
    for path, v in [("train.steps", cfg.train.steps), ("train.ridge", cfg.train.ridge),
                    ("train.momentum", cfg.train.momentum), ("probe.n_train", cfg.probe.n_train),
                    ("probe.n_test", cfg.probe.n_test), ("train.weight_decay", cfg.train.weight_decay)]:
        _positive(path, v, allow_zero=True)
    if "kernel" in cfg.train.regimes and cfg.train.loss != "mse":
        raise ConfigError(f"train.loss={cfg.train.loss!r} with the 'kernel' regime: the closed-form "
                          "kernel solution exists for loss 'mse' only; use train.loss=mse or drop 'kernel'")
    if cfg.model.kind == "transformer" and cfg.model.gamma != 1.0:
        raise ConfigError(f"model.gamma={cfg.model.gamma!r} with model.kind='transformer'; "
                          "gamma is supported for kind mlp and cnn only")
    for regime in ("mup_limit", "ntk_limit"):
        if regime in cfg.train.regimes:
            problem = limit_support_error(cfg, regime)
            if problem:
                raise ConfigError(problem)
    spawn = cfg.train.spawn_step
    if spawn and not (isinstance(spawn, int) and 0 < spawn < cfg.train.steps
                      and "sgd" in cfg.train.regimes):
        raise ConfigError(f"train.spawn_step={spawn!r} is not valid; it must be in [0, "
                          f"train.steps={cfg.train.steps}) with 'sgd' in train.regimes")
    if not cfg.train.device.startswith(("cpu", "cuda")):
        raise ConfigError(f"train.device={cfg.train.device!r} is not valid; use cpu, cuda or cuda:N")


LIMIT_ACTIVATIONS = ("linear", "relu", "tanh", "erf")
LIMIT_PARAMETRIZATIONS = {"mup_limit": ("mup", "mf"), "ntk_limit": ("ntk", "mup", "mf")}
LIMIT_SUPPORTED = ("1-hidden-layer MLP (model.kind=mlp, model.depth=1, model.bias=false, "
                   f"model.activation in {', '.join(LIMIT_ACTIVATIONS)}) trained by plain SGD "
                   "(train.optimizer=sgd, momentum 0, weight_decay 0, train.loss=mse)")


def limit_support_error(cfg: RunConfig, regime: str) -> str | None:
    """One line naming the first setting the infinite-width ``regime`` does not cover, or None."""
    m, t = cfg.model, cfg.train
    what = {"model.kind": (m.kind, m.kind == "mlp"), "model.depth": (m.depth, m.depth == 1),
            "model.bias": (m.bias, not m.bias),
            "model.activation": (m.activation, m.activation in LIMIT_ACTIVATIONS),
            "train.optimizer": (t.optimizer, t.optimizer == "sgd"),
            "train.momentum": (t.momentum, t.momentum == 0),
            "train.weight_decay": (t.weight_decay, t.weight_decay == 0),
            "train.loss": (t.loss, t.loss == "mse"),
            "model.parametrization": (m.parametrization,
                                      m.parametrization in LIMIT_PARAMETRIZATIONS[regime])}
    for path, (value, ok) in what.items():
        if not ok:
            if path == "model.parametrization":
                return (f"{path}={value!r} has no width-independent {regime}; valid: "
                        f"{', '.join(LIMIT_PARAMETRIZATIONS[regime])}")
            return f"regime {regime!r} with {path}={value!r}: supported is a {LIMIT_SUPPORTED}"
    return None


def _build(cls: type, d: dict[str, Any], prefix: str) -> Any:
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}={d!r} is not valid; expected a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in d.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean '{prefix}{close[0]}'? " if close else ""
            raise ConfigError(f"unknown config field '{prefix}{key}'; {hint}valid fields: "
                              f"{', '.join(names)}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(f"{prefix}{key}", value, hint)
    return cls(**kwargs)


def _coerce(path: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against a simple type hint (int, float, bool, str, list, dict, unions)."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, _UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    for opt in options:
        origin = typing.get_origin(opt) or opt
        if origin is bool and isinstance(value, bool):
            return value
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if origin is float and isinstance(value, str):  # YAML reads "1e6" as a string
            try:
                return float(value)
            except ValueError:
                pass
        if origin is str and isinstance(value, str):
            return value
        if origin is list and isinstance(value, (list, tuple)):
            return list(value)
        if origin is dict and isinstance(value, dict):
            return dict(value)
    names = ", ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ConfigError(f"{path}={value!r} is not valid; expected {names}")


_UnionType = type(int | None)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'model.width=512'`` → (['model', 'width'], 512); values are parsed as YAML."""
    import yaml

    if "=" not in text:
        raise ConfigError(f"override {text!r} is not valid; use key=value, e.g. model.width=512")
    key, raw = text.split("=", 1)
    keys = key.strip().split(".")
    if not all(keys):
        raise ConfigError(f"override {text!r} is not valid: key {key!r} has an empty part; "
                          "use key=value, e.g. model.width=512")
    try:
        return keys, yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: the value {raw!r} is not valid YAML "
                          f"({_yaml_problem(e)})") from None


def _yaml_problem(e: Exception) -> str:
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    mark = getattr(e, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def apply_overrides(d: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of the config dict with each ``key=value`` applied (nested keys with dots)."""
    d = json.loads(json.dumps(d))
    for text in overrides:
        keys, value = parse_override(text)
        node = d
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {k!r} is not a section")
        node[keys[-1]] = value
    return d


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML config (or the defaults when ``path`` is None) and apply overrides.

    >>> from tangentlens import load_config
    >>> cfg = load_config(None, ["model.width=64", "train.steps=10"])
    >>> cfg.model.width, cfg.train.steps, cfg.train.regimes[:2]
    (64, 10, ['sgd', 'linearized'])
    """
    import yaml

    d: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if p.is_dir():
            raise ConfigError(f"config file {str(p)!r} is a directory; give a YAML file")
        if not p.is_file():
            raise FileNotFoundError(f"config file {str(p)!r} does not exist")
        try:
            d = yaml.safe_load(p.read_text())
        except UnicodeDecodeError:
            raise ConfigError(f"config file {str(p)!r} is not a text file; give a YAML file") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {str(p)!r} is not valid YAML ({_yaml_problem(e)})") from None
        if not isinstance(d, dict):
            what = "empty" if d is None else f"a {type(d).__name__}, not a mapping"
            raise ConfigError(f"config file {str(p)!r} is {what}; it must be a mapping of "
                              "sections, e.g. 'model: {width: 256}'")
    d = apply_overrides(d, overrides or [])
    model = d.get("model")
    if path is not None and isinstance(model, dict) and model.get("kind") == "python":
        model.setdefault("factory_path", str(Path(path).resolve().parent))  # factory's folder
    return RunConfig.from_dict(d)
