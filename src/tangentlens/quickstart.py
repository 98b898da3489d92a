"""The main job (``make demo``): a digits MLP trained as sgd, linearized and kernel from one
θ0, activations cached, every quick analysis run, and one HTML report written."""

from __future__ import annotations

import time
from pathlib import Path

QUICKSTART = [
    "name=quickstart_digits", "data.name=digits", "model.kind=mlp", "model.width=256",
    "model.depth=2", "model.activation=relu", "model.parametrization=ntk",
    "train.regimes=[sgd,linearized,kernel]", "train.optimizer=sgd", "train.lr=0.5",
    "train.momentum=0.9", "train.loss=mse", "train.steps=300", "train.batch_size=128",
    "train.checkpoints=5", "train.kernel_max_train=1024", "probe.n_train=256",
    "probe.n_test=256",
]


def quickstart(out: str | Path = "data/quickstart") -> str:
    """Train, cache, analyze, report; returns the report's path as a message."""
    from .config import load_config
    from .report import write_report
    from .train import run

    out = Path(out)
    t0 = time.perf_counter()
    cfg = load_config(None, QUICKSTART)
    print(f"[1/3] training {', '.join(cfg.train.regimes)} on digits (width {cfg.model.width}, "
          f"{cfg.train.steps} steps) ...", flush=True)
    result = run(cfg, out_dir=out / "run", overwrite=True)  # the demo rewrites its own output
    for regime, rows in result.metrics.items():
        print(f"      {regime:>10}: test acc {rows[-1]['test_acc']:.3f}, test loss {rows[-1]['test_loss']:.4f}")
    print(f"      ({time.perf_counter() - t0:.0f} s)\n[2/3] analyzing cached activations ...", flush=True)
    from .lenses.registry import analyze

    analyze([result.path], out / "analysis")
    print(f"      ({time.perf_counter() - t0:.0f} s)\n[3/3] writing the report ...", flush=True)
    report = write_report([result.path], out / "report.html", analysis_dir=out / "analysis")
    return f"done in {time.perf_counter() - t0:.0f} s; report: {report}"
