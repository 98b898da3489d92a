"""Memory and disk a run will need, estimated before anything is allocated or written.

The model is built on torch's ``meta`` device (shapes only, no storage) and one meta input is
passed through it to read every hook's shape. Memory: the parameters about ``COPIES`` times
(θ0, the trained copy, gradients, optimizer state, the tangent) plus one probe batch of
activations in both views; a lower bound. Disk: the activation cache
(probe rows × values per row × views × checkpoints) plus the θ snapshots.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import torch

from .config import ConfigError, RunConfig

COPIES = 6


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def available_memory(device: torch.device) -> int:
    """Free bytes on ``device``: MemAvailable on a CPU (Linux), free memory on a GPU."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def shapes(cfg: RunConfig, model_cfg, ds) -> tuple[int, dict[str, int]] | None:
    """(number of parameters, values per probe row of each hook), or None if the model
    cannot be built on the meta device."""
    from .models import build_model

    try:
        with torch.device("meta"):
            model = build_model(model_cfg, ds.input_shape, ds.n_outputs, seed=cfg.seed)
            x = torch.empty((1, *ds.input_shape), dtype=ds.x_train.dtype)
            _, cache = model.run_with_cache(x)
    except Exception:  # noqa: BLE001 - an estimate only; the real build reports real errors
        return None
    n_params = sum(p.numel() for p in model.parameters())
    return n_params, {h: math.prod(t.shape[1:]) for h, t in cache.items()}


def check_budget(cfg: RunConfig, model_cfg, ds, out: Path | None) -> None:
    """Raise ConfigError, with the numbers, if the run cannot fit in memory or on disk."""
    found = shapes(cfg, model_cfg, ds)
    if found is None:
        return
    n_params, per_hook = found
    hooks = [h for h in (cfg.probe.hooks or per_hook) if h in per_hook]
    row = sum(per_hook[h] for h in hooks)
    width = f"model.width={cfg.model.width}"
    p_bytes = torch.finfo(getattr(torch, cfg.train.dtype)).bits // 8
    need = n_params * p_bytes * COPIES + cfg.probe.batch_size * row * 4 * 2
    device = torch.device(cfg.train.device)
    have = available_memory(device)
    if need > have:
        raise ConfigError(
            f"{width}: training needs at least {_gb(need)} of memory ({n_params:.3g} parameters × "
            f"{p_bytes} bytes × {COPIES} copies + one probe batch) but {_gb(have)} are available on "
            f"{device}; use a smaller model.width or model.depth")
    if out is None:
        return
    n_probe = min(cfg.probe.n_train, ds.n_train) + min(cfg.probe.n_test, ds.n_test)
    n_ckpt = len(cfg.checkpoint_steps())
    per_regime = {"sgd": (1, n_ckpt), "lazy": (1, n_ckpt), "linearized": (2, n_ckpt), "kernel": (2, 2),
                  "ntk_limit": (1, n_ckpt), "mup_limit": (1, n_ckpt)}
    views = sum(v * c for r, (v, c) in per_regime.items() if r in cfg.train.regimes)
    snaps = sum(c for r, (_, c) in per_regime.items() if r in cfg.train.regimes)
    cache = n_probe * row * (2 if cfg.probe.dtype == "float16" else 4) * views
    disk = cache + (n_params * p_bytes * snaps if cfg.probe.save_params else 0)
    parent = out
    while not parent.exists():
        parent = parent.parent
    free = shutil.disk_usage(parent).free
    if disk > free:
        raise ConfigError(
            f"{width}: the run file needs about {_gb(disk)} on disk ({n_probe} probe rows × {row} "
            f"values × {views} view-checkpoints = {_gb(cache)} of activations, plus θ snapshots) but "
            f"{_gb(free)} are free under {str(parent)!r}; lower probe.n_train, probe.n_test, "
            "train.checkpoints or model.width, restrict probe.hooks, use probe.dtype=float16 or "
            "probe.save_params=false")
