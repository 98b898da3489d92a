"""Matched training: every requested regime from the same θ0, on the same batches.

``run(config, out_dir)`` trains ``sgd``, ``linearized`` and ``lazy`` step by step and
solves ``kernel`` in closed form; ``ntk_limit`` and ``mup_limit`` (``limits.regime``) are
the width → ∞ limits of a 1-hidden-layer net on the same batches; at each checkpoint it records metrics and streams the
probe-set activations of every hook (both views for linearized regimes) into one HDF5
file per run (``out_dir/run.h5``). Batches for step t come from a seeded permutation of
epoch t // steps_per_epoch, so every regime sees identical batches and a resumed run
continues exactly where the killed one stopped.

Every model trains in eval mode (BatchNorm with fixed running statistics, no dropout): the
linearization is of one fixed function of θ and x, evaluated per example. With
``train.spawn_step=K``, sgd runs from θ0 and the other regimes start at θ_K, sgd's weights
after K steps (see docs/byo-model.md).
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .budget import check_budget
from .config import ConfigError, RunConfig
from .regimes import Trainer, accuracy, loss_fn, lr_lambda, targets
from .rundir import RUN_FILE, STATE_DIR, check_out_dir, load_state, make_out_dir, save_state

EVAL_MAX_TRAIN = 2048  # training metrics use a fixed subset of at most this many points
CLOSED_FORM = ("kernel", "ntk_limit", "mup_limit")  # regimes not trained by a Trainer
DIVERGENCE_FACTOR = 1e6  # a regime diverged when its batch loss is non-finite or this × its first


@dataclass
class RunResult:
    """Metrics per regime (list of row dicts), diverged regimes, and the run file."""

    metrics: dict[str, list[dict]] = field(default_factory=dict)
    diverged: dict[str, int] = field(default_factory=dict)
    path: Path | None = None

    def final(self, regime: str) -> dict:
        return self.metrics[regime][-1]


def _generator(*keys: int) -> torch.Generator:
    seed = 0
    for k in keys:
        seed = (seed * 1_000_003 + k) % (2**63 - 1)
    return torch.Generator().manual_seed(seed)


class Batches:
    """Deterministic batch order: step t → indices, identical for every regime."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.bs, self.seed = n, min(batch_size, n), seed
        self.per_epoch = n // self.bs
        self._perm: tuple[int, torch.Tensor] | None = None

    def __call__(self, step: int) -> torch.Tensor:
        epoch, i = divmod(step, self.per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, torch.randperm(self.n, generator=_generator(self.seed, 7, epoch)))
        return self._perm[1][i * self.bs:(i + 1) * self.bs]


def load_data(cfg: RunConfig, data=None):
    """The dataset of ``cfg`` (deterministic by seed), or ``data`` given from Python (a Dataset
    record, a torch Dataset or a (train, test) pair of them); non-finite values are refused."""
    from . import data as datasets

    d = cfg.data
    options = dict(d.options)
    if data is not None:
        if isinstance(data, datasets.Dataset):
            ds = data
        else:
            pair = data if isinstance(data, tuple) else (data, None)
            ds = datasets.from_torch(*pair, seed=cfg.seed, n_train=d.n_train, n_test=d.n_test)
    elif d.name == "python":
        raise ConfigError("data.name='python' names data passed from Python; pass data= to "
                          "tangentlens.run, or use npz/torchvision or a built-in dataset")
    else:
        for key in ("data_dir", "path", "dataset", "root"):
            if getattr(d, key) is not None:
                options[key] = getattr(d, key)
        ds = datasets.load(d.name, seed=cfg.seed, n_train=d.n_train, n_test=d.n_test, **options)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        t = getattr(ds, name)
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = ~torch.isfinite(t.reshape(len(t), -1)).all(1)
            raise ConfigError(f"data.name={d.name!r} with options {options}: {name} holds "
                              f"{int(bad.sum())} rows with NaN/Inf values (first: row "
                              f"{int(bad.nonzero()[0])}); inputs and targets must be finite")
    return ds


def model_config(cfg: RunConfig, ds):
    """``cfg.model`` completed from the dataset (a transformer's vocabulary size)."""
    if cfg.model.kind == "transformer" and cfg.model.d_vocab is None:
        return type(cfg.model)(**{**vars(cfg.model), "d_vocab": ds.info.get("d_vocab")})
    return cfg.model


def build(cfg: RunConfig, model_cfg, ds, model=None):
    """θ0 in eval mode and ``train.dtype``: a copy of ``model``, or the model of ``model_cfg``
    from ``cfg.seed`` (``ds``: anything with input_shape and n_outputs); then
    ``model.init_from`` loaded when set."""
    from .models import build_model
    from .models.user import load_checkpoint

    if model is not None:
        model0 = copy.deepcopy(model)
    else:
        model0 = build_model(model_cfg, ds.input_shape, ds.n_outputs, seed=cfg.seed)
    model0 = model0.to(getattr(torch, cfg.train.dtype))
    if cfg.model.init_from is not None:
        load_checkpoint(model0, cfg.model.init_from)
    return model0.eval()


def prepare(cfg: RunConfig, model=None, data=None):
    """Load the data and build θ0 (all deterministic by seed)."""
    ds = load_data(cfg, data)
    return ds, build(cfg, model_config(cfg, ds), ds, model)


def recorded(cfg: RunConfig, ds, model=None, data=None) -> RunConfig:
    """``cfg`` as the run file records it: a module or data passed from Python become
    ``model.kind=python`` without factory / ``data.name=python`` with its shapes."""
    cfg = copy.deepcopy(cfg)
    if model is not None:
        cfg.model.kind, cfg.model.factory, cfg.model.factory_path = "python", None, None
    if data is not None:
        cfg.data.name = "python"
        cfg.data.options = {"input_shape": list(ds.input_shape), "n_outputs": ds.n_outputs,
                            "task": ds.task, "source": str(ds.info.get("source", ds.name))}
    return cfg


def probe_set(cfg: RunConfig, ds) -> dict:
    """First ``probe.n_train`` / ``probe.n_test`` points of seeded permutations."""
    p = cfg.probe
    n_tr, n_te = min(p.n_train, len(ds.y_train)), min(p.n_test, len(ds.y_test))
    i_tr = torch.randperm(len(ds.y_train), generator=_generator(cfg.seed, 11))[:n_tr]
    i_te = torch.randperm(len(ds.y_test), generator=_generator(cfg.seed, 13))[:n_te]
    cat = lambda a, b: None if a is None else torch.cat([a[i_tr], b[i_te]])  # noqa: E731
    return {"x": cat(ds.x_train, ds.x_test), "y": cat(ds.y_train, ds.y_test),
            "split": torch.cat([torch.zeros(n_tr, dtype=torch.uint8), torch.ones(n_te, dtype=torch.uint8)]),
            "latents": cat(ds.latents_train, ds.latents_test), "latent_names": ds.latent_names}


@torch.no_grad()
def evaluate(predict, x: torch.Tensor, y: torch.Tensor, loss: str, batch: int = 1024) -> tuple[float, float]:
    """(loss, accuracy) of ``predict`` on (x, y), in batches."""
    outs = [predict(x[i:i + batch]) for i in range(0, len(x), batch)]
    out = torch.cat(outs)
    return float(loss_fn(loss, out, y)), accuracy(out, y)


class _Evaluator:
    def __init__(self, cfg: RunConfig, ds, device, dtype):
        n = min(len(ds.y_train), EVAL_MAX_TRAIN)
        idx = torch.randperm(len(ds.y_train), generator=_generator(cfg.seed, 17))[:n]
        cast = lambda t: t.to(device, dtype) if t.is_floating_point() else t.to(device)  # noqa: E731
        self.sets = {"train": (cast(ds.x_train[idx]), cast(ds.y_train[idx])),
                     "test": (cast(ds.x_test), cast(ds.y_test))}
        self.loss = cfg.train.loss

    def __call__(self, predict, step: int) -> dict:
        row: dict = {"step": step}
        for split, (x, y) in self.sets.items():
            row[f"{split}_loss"], row[f"{split}_acc"] = evaluate(predict, x, y, self.loss)
        return row


def _cache(step_writer, regime: str, trainer: Trainer | None, lin, probe_x, hooks, batch: int) -> None:
    """Stream the probe-set activations of one regime at one step into the store."""
    from .models.hooks import run_with_cache

    for start in range(0, len(probe_x), batch):
        xb = probe_x[start:start + batch]
        if lin is not None:
            for view in ("network", "tangent"):
                _, cache = lin.run_with_cache(xb, view=view, names_filter=hooks)
                for h in hooks:
                    step_writer.write(view, h, start, cache[h].float().cpu().numpy())
        else:
            _, cache = run_with_cache(trainer.model, xb, hooks)
            for h in hooks:
                step_writer.write("network", h, start, cache[h].float().cpu().numpy())


def _snapshot(module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in module.named_parameters()}


def train_batch_size(cfg: RunConfig, n_train: int) -> int:
    """``train.batch_size`` as a number: ``full`` → n_train; more than n_train is an error."""
    bs = cfg.train.batch_size
    if bs == "full":
        return n_train
    if bs > n_train:
        raise ConfigError(f"train.batch_size={bs} exceeds the {n_train} training points of "
                          f"data {cfg.data.name!r}; use 1..{n_train}, or train.batch_size=full "
                          "for full-batch training")
    return bs


def run(cfg: RunConfig, out_dir: str | Path | None = None, resume: bool = False,
        overwrite: bool = False, *, model: torch.nn.Module | None = None,
        data=None) -> RunResult:
    """Train every regime of ``cfg``; with ``out_dir``, cache activations to ``out_dir/run.h5``.

    ``model``: any nn.Module to use as θ0 instead of ``cfg.model`` (copied; hooks are its
    submodules, see ``models.hooks``); ``data``: a Dataset record, a torch Dataset of (x, y)
    or a (train, test) pair of them, instead of ``cfg.data``.

    An ``out_dir`` that already holds a run is refused unless ``resume`` (continue it from
    its saved state) or ``overwrite`` (delete it, once every input check has passed).

    >>> from tangentlens import load_config, run
    >>> cfg = load_config(None, ["model.width=16", "train.steps=20", "train.checkpoints=2",
    ...                          "train.regimes=[sgd,linearized]", "train.batch_size=32"])
    >>> result = run(cfg)                               # no out_dir: metrics only
    >>> sorted(result.metrics), result.final("sgd")["step"]
    (['linearized', 'sgd'], 20)
    >>> result.final("sgd")["train_loss"] < result.metrics["sgd"][0]["train_loss"]
    True
    """
    out = None if out_dir is None else Path(out_dir)
    trained = [r for r in cfg.train.regimes if r not in CLOSED_FORM]
    states = {}
    if out is not None:
        check_out_dir(out, resume, overwrite)
        if resume:  # every state file is checked before anything is built or written
            states = {r: load_state(out / STATE_DIR / f"{r}.pt") for r in trained
                      if (out / STATE_DIR / f"{r}.pt").exists()}
    device, dtype = torch.device(cfg.train.device), getattr(torch, cfg.train.dtype)
    from .models.hooks import HookSet

    ds = load_data(cfg, data)
    model_cfg = model_config(cfg, ds)
    if model is None:
        check_budget(cfg, model_cfg, ds, out)
    batch_size = train_batch_size(cfg, len(ds.y_train))
    model0 = build(cfg, model_cfg, ds, model).to(device)
    cfg = recorded(cfg, ds, model, data)
    probe = probe_set(cfg, ds)
    cast = lambda t: t.to(device, dtype) if t.is_floating_point() else t.to(device)
    probe_x = cast(probe["x"])
    try:
        hooks = HookSet(model0, probe_x[:2]).select(cfg.probe.hooks)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    x_train, y_train = cast(ds.x_train), cast(ds.y_train)
    evaluator = _Evaluator(cfg, ds, device, dtype)
    checkpoints = cfg.checkpoint_steps()
    result = RunResult()

    writer = None
    if out is not None:
        from .store import RunWriter

        make_out_dir(out, overwrite)
        result.path = out / RUN_FILE
        writer = RunWriter(result.path, cfg.to_dict(), {k: v for k, v in probe.items()},
                           compression=cfg.probe.compression, dtype=cfg.probe.dtype,
                           resume=resume and result.path.exists(), seed=cfg.seed)

    def checkpoint(regime: str, step: int, trainer: Trainer | None, lin, predict, params_of):
        row = evaluator(predict, step)
        result.metrics.setdefault(regime, []).append(row)
        if writer is None:
            return
        if step in writer.completed_steps(regime):
            return
        with writer.step(regime, step) as s:
            _cache(s, regime, trainer, lin, probe_x, hooks, cfg.probe.batch_size)
            if cfg.probe.save_params:
                s.write_params(_snapshot(params_of))
            writer.append_metrics(regime, row)

    try:
        batches = Batches(len(y_train), batch_size, cfg.seed)
        spawn = cfg.train.spawn_step
        spawn_file = out / STATE_DIR / "spawn.pt" if out is not None else None
        spawned = {"model": model0 if not spawn else _spawn_model(model0, spawn_file, resume)}
        for regime in sorted(trained, key=lambda r: r != "sgd") if spawn else trained:
            begin = spawn if regime != "sgd" else 0
            if spawned["model"] is None and begin:
                result.diverged[regime] = spawn
                tqdm.write(f"regime '{regime}' cannot start: sgd stopped before step {spawn}")
                continue
            state_file = out / STATE_DIR / f"{regime}.pt" if out is not None else None
            _train(cfg, regime, model0 if regime == "sgd" else spawned["model"], batches,
                   x_train, y_train, checkpoints, checkpoint, state_file, states.get(regime),
                   result, begin, spawned if spawn and regime == "sgd" else None, spawn_file)
        if "kernel" in cfg.train.regimes and spawned["model"] is not None:
            _kernel_regime(cfg, spawned["model"], spawn, ds, x_train, y_train, checkpoint)
        for regime in [r for r in cfg.train.regimes if r in ("ntk_limit", "mup_limit")]:
            from .limits.regime import train_limit

            cpu = {k: tuple(t.cpu() for t in v) for k, v in evaluator.sets.items()}
            train_limit(regime, cfg, ds, probe, cpu, batches, lr_lambda(cfg), hooks, writer,
                        lambda r, row: result.metrics.setdefault(r, []).append(row))
        if writer is not None:
            writer.close()
            (out / "metrics.json").write_text(json.dumps(
                {"metrics": result.metrics, "diverged": result.diverged}, indent=1, default=float))
    finally:
        if writer is not None:
            writer.release()
    return result


def _train(cfg: RunConfig, regime: str, model0, batches: Batches, x_train, y_train,
           checkpoints: list[int], checkpoint, state_file: Path | None, state: dict | None,
           result: RunResult, begin: int = 0, spawned: dict | None = None,
           spawn_file: Path | None = None) -> None:
    """Train one regime step by step from ``model0`` at step ``begin`` (or from ``state``),
    checkpointing as it goes; with ``spawned``, store θ at ``train.spawn_step`` there."""
    trainer = Trainer(regime, model0, cfg, start=begin, train_x=x_train)
    lin = trainer.module if regime == "linearized" else None
    start = begin
    if state is not None:
        trainer.load_state_dict(state["trainer"])
        start = state["step"]
        result.metrics[regime] = [r for r in state["metrics"] if r["step"] < start]
    bar = tqdm(total=cfg.train.steps, initial=start, desc=regime, disable=not cfg.train.progress,
               leave=False)
    for step in range(start, cfg.train.steps + 1):
        if step in checkpoints:
            if state_file is not None:
                save_state(state_file, {"trainer": trainer.state_dict(), "step": step,
                                        "metrics": result.metrics.get(regime, [])})
            checkpoint(regime, step, trainer, lin, trainer.output, trainer.model)
        if spawned is not None and step == cfg.train.spawn_step:
            spawned["model"] = copy.deepcopy(trainer.model)
            if spawn_file is not None:
                save_state(spawn_file, spawned["model"].state_dict())
        if step == cfg.train.steps:
            break
        idx = batches(step)
        loss = trainer.step(x_train[idx], y_train[idx])
        first_loss = loss if step == start else first_loss
        bar.update(1)
        if not math.isfinite(loss) or loss > DIVERGENCE_FACTOR * max(first_loss, 1e-12):
            result.diverged[regime] = step
            tqdm.write(f"regime '{regime}' diverged at step {step} (loss={loss}); "
                       "it stops here, the other regimes continue")
            break
    bar.close()


def _spawn_model(model0, spawn_file: Path | None, resume: bool):
    """θ_K of a resumed run (saved when sgd passed step K), else None until sgd gets there."""
    if resume and spawn_file is not None and spawn_file.exists():
        model_k = copy.deepcopy(model0)
        model_k.load_state_dict(torch.load(spawn_file, weights_only=True))
        return model_k
    return None


def _kernel_regime(cfg: RunConfig, model0, step0: int, ds, x_train, y_train, checkpoint) -> None:
    """Closed-form kernel regression at ``model0`` (θ0, or θ_K when spawned), recorded at its
    start step and the final step."""
    from .linearized import Linearized
    from .ntk import kernel_regression

    n = min(len(y_train), cfg.train.kernel_max_train)
    idx = torch.randperm(len(y_train), generator=_generator(cfg.seed, 19))[:n]
    model = copy.deepcopy(model0)
    lin = Linearized(model)
    checkpoint("kernel", step0, None, lin, lin, model)
    y = targets(y_train[idx], ds.n_outputs, x_train.dtype)
    solution = kernel_regression(model0, x_train[idx], y, ridge=cfg.train.ridge)
    delta = solution.delta_params()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(delta[name].to(p))
    # f0 + J Δθ through the linearized model equals solution.predict (tested) and is cheaper
    checkpoint("kernel", cfg.train.steps, None, lin, lin, model)
