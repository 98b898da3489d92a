"""Matched training: every requested regime from the same θ0, on the same batches.

``run(config, out_dir)`` trains ``sgd``, ``linearized`` and ``lazy`` step by step and
solves ``kernel`` in closed form; ``ntk_limit`` and ``mup_limit`` (``limits.regime``) are
the width → ∞ limits of a 1-hidden-layer net on the same batches; at each checkpoint it records metrics and streams the
probe-set activations of every hook (both views for linearized regimes) into one HDF5
file per run (``out_dir/run.h5``). Batches for step t come from a seeded permutation of
epoch t // steps_per_epoch, so every regime sees identical batches and a resumed run
continues exactly where the killed one stopped.
"""

from __future__ import annotations

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


def load_data(cfg: RunConfig):
    """The dataset of ``cfg`` (deterministic by seed); non-finite inputs or targets are refused."""
    from . import data as datasets

    d = cfg.data
    options = dict(d.options)
    if d.data_dir is not None:
        options["data_dir"] = d.data_dir
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


def build(cfg: RunConfig, model_cfg, ds):
    """θ0: the model of ``model_cfg`` from ``cfg.seed``, in ``train.dtype``."""
    from .models import build_model

    model0 = build_model(model_cfg, ds.input_shape, ds.n_outputs, seed=cfg.seed)
    return model0.to(getattr(torch, cfg.train.dtype))


def prepare(cfg: RunConfig):
    """Load the data and build θ0 (all deterministic by seed)."""
    ds = load_data(cfg)
    return ds, build(cfg, model_config(cfg, ds), ds)


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
    for start in range(0, len(probe_x), batch):
        xb = probe_x[start:start + batch]
        if lin is not None:
            for view in ("network", "tangent"):
                _, cache = lin.run_with_cache(xb, view=view, names_filter=hooks)
                for h in hooks:
                    step_writer.write(view, h, start, cache[h].float().cpu().numpy())
        else:
            with torch.no_grad():
                _, cache = trainer.model.run_with_cache(xb, names_filter=hooks)
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
        overwrite: bool = False) -> RunResult:
    """Train every regime of ``cfg``; with ``out_dir``, cache activations to ``out_dir/run.h5``.

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
    ds = load_data(cfg)
    model_cfg = model_config(cfg, ds)
    check_budget(cfg, model_cfg, ds, out)
    batch_size = train_batch_size(cfg, len(ds.y_train))
    model0 = build(cfg, model_cfg, ds).to(device)
    hooks = cfg.probe.hooks or list(model0.hook_names)
    unknown = [h for h in hooks if h not in model0.hook_names]
    if unknown:
        raise ConfigError(f"probe.hooks contains unknown hook(s) {unknown}; valid: {model0.hook_names}")
    probe = probe_set(cfg, ds)
    cast = lambda t: t.to(device, dtype) if t.is_floating_point() else t.to(device)
    probe_x = cast(probe["x"])
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
        for regime in trained:
            state_file = out / STATE_DIR / f"{regime}.pt" if out is not None else None
            _train(cfg, regime, model0, batches, x_train, y_train, checkpoints, checkpoint,
                   state_file, states.get(regime), result)
        if "kernel" in cfg.train.regimes:
            _kernel_regime(cfg, model0, ds, x_train, y_train, checkpoint, cast)
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
           result: RunResult) -> None:
    """Train one regime step by step from θ0 (or from ``state``), checkpointing as it goes."""
    trainer = Trainer(regime, model0, cfg, x_train)
    lin = trainer.module if regime == "linearized" else None
    start = 0
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


def _kernel_regime(cfg: RunConfig, model0, ds, x_train, y_train, checkpoint, cast) -> None:
    """Closed-form kernel regression at θ0, recorded at step 0 (θ0) and the final step."""
    import copy

    from .linearized import Linearized
    from .ntk import kernel_regression

    n = min(len(y_train), cfg.train.kernel_max_train)
    idx = torch.randperm(len(y_train), generator=_generator(cfg.seed, 19))[:n]
    model = copy.deepcopy(model0)
    lin = Linearized(model)
    checkpoint("kernel", 0, None, lin, lin, model)
    y = targets(y_train[idx], ds.n_outputs, x_train.dtype)
    solution = kernel_regression(model0, x_train[idx], y, ridge=cfg.train.ridge)
    delta = solution.delta_params()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(delta[name].to(p))
    # f0 + J Δθ through the linearized model equals solution.predict (tested) and is cheaper
    checkpoint("kernel", cfg.train.steps, None, lin, lin, model)
