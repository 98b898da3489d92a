"""Median step time of linearized vs sgd training, in one process, and their ratio.

A linearized step is a jvp (primal + tangent) plus the reverse pass through the tangent,
so its arithmetic floor is about 1.3-1.7x an sgd step. Run: python benchmarks/bench_linearized.py
"""

from __future__ import annotations

import statistics
import time
from types import SimpleNamespace as NS

import torch

from tangentlens.config import RunConfig
from tangentlens.models import build_model
from tangentlens.regimes import Trainer


def median_step(trainer: Trainer, x, y, repeats: int) -> float:
    for _ in range(3):
        trainer.step(x, y)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        trainer.step(x, y)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench(name: str, model_cfg, input_shape, n_out: int, batch: int, repeats: int) -> None:
    cfg = RunConfig()
    cfg.train.lr, cfg.train.momentum = 1e-3, 0.9
    model0 = build_model(model_cfg, input_shape, n_out, seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *input_shape, generator=g)
    y = torch.randint(0, n_out, (batch,), generator=g)
    t_sgd = median_step(Trainer("sgd", model0, cfg), x, y, repeats)
    t_lin = median_step(Trainer("linearized", model0, cfg), x, y, repeats)
    n_params = sum(p.numel() for p in model0.parameters())
    print(f"{name:<34} params {n_params/1e6:5.2f}M  batch {batch}  sgd {t_sgd*1e3:7.1f} ms  "
          f"linearized {t_lin*1e3:7.1f} ms  ratio {t_lin/t_sgd:.2f}")


if __name__ == "__main__":
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    bench("MLP 784-3x1024-10 relu (ntk)", NS(kind="mlp", width=1024, depth=3, activation="relu",
          parametrization="ntk"), (784,), 10, 256, 20)
    bench("CNN 1x28x28, 3x32 ch relu (ntk)", NS(kind="cnn", width=32, depth=3, activation="relu",
          parametrization="ntk"), (1, 28, 28), 10, 256, 10)
