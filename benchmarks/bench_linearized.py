"""Step time of linearized vs sgd training, variants interleaved step by step in one process.

Each model trains on a fixed set of random inputs, in batches drawn by one seeded
permutation, the same for every variant:

  sgd         Trainer("sgd")
  linearized  Trainer("linearized", train_x=...): the default engine (structured for the
              MLP/CNN) with the training set's θ0 primals cached
  lin-fresh   the structured engine recomputing the θ0 primals every step (no cache)
  torch.func  the straightforward linearization, jvp(functional_call) (mode="jvp")

A round times ``--steps`` steps of every variant in turn (after one warm-up step each);
its ratios are those of its per-variant medians. Printed: the median over rounds of the
per-round medians, and `ratio X [min–max]` over rounds, to sgd and to torch.func. FLOP
floor of linearized/sgd: per hidden layer 4 matrix products against 3 with the primals
cached, 5 when they are recomputed; the first layer costs 2 against 2 (3 recomputed). For
the MLP below that is ≈ 1.27 (cached) and ≈ 1.63. A CUDA section runs when a GPU is present.

    python benchmarks/bench_linearized.py [--rounds 6] [--steps 5] [--threads 2]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: shared cores

import argparse
import statistics
import time
from types import SimpleNamespace as NS

import torch

from tangentlens.config import RunConfig
from tangentlens.models import build_model
from tangentlens.regimes import Trainer

MODELS = {  # name: (model config, input shape, training-set size)
    "MLP 784-3x1024-10 relu (ntk)": (NS(kind="mlp", width=1024, depth=3, activation="relu",
                                        parametrization="ntk"), (784,), 2048),
    "CNN 1x28x28, 3x32 ch relu (ntk)": (NS(kind="cnn", width=32, depth=3, activation="relu",
                                           parametrization="ntk"), (1, 28, 28), 512),
}
BATCH = 256


def trainers(model0, cfg, x_train) -> dict[str, Trainer]:
    out = {"sgd": Trainer("sgd", model0, cfg),
           "linearized": Trainer("linearized", model0, cfg, train_x=x_train),
           "lin-fresh": Trainer("linearized", model0, cfg),
           "torch.func": Trainer("linearized", model0, cfg)}
    out["torch.func"].module.mode = "jvp"
    return out


def span(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}–{max(values):.2f}]"


def bench(name: str, device: str, rounds: int, steps: int) -> None:
    model_cfg, shape, n_train = MODELS[name]
    cfg = RunConfig()
    cfg.train.lr, cfg.train.momentum = 1e-3, 0.9
    model0 = build_model(model_cfg, shape, 10, seed=0).to(device)
    g = torch.Generator().manual_seed(0)
    x_train = torch.randn(n_train, *shape, generator=g).to(device)
    y_train = torch.randint(0, 10, (n_train,), generator=g).to(device)
    order = torch.randperm(n_train, generator=g).to(device)
    batches = [order[i:i + BATCH] for i in range(0, n_train - BATCH + 1, BATCH)]
    variants = trainers(model0, cfg, x_train)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {v: [] for v in variants}
    k = 0
    for _ in range(rounds):
        per: dict[str, list[float]] = {v: [] for v in variants}
        for s in range(steps + 1):
            idx = batches[k % len(batches)]
            k += 1
            for v, trainer in variants.items():
                sync()
                start = time.perf_counter()
                trainer.step(x_train[idx], y_train[idx])
                sync()
                if s:  # the round's first step is its warm-up
                    per[v].append(time.perf_counter() - start)
        for v in variants:
            times[v].append(statistics.median(per[v]))
    n_params = sum(p.numel() for p in model0.parameters())
    print(f"\n{name}  [{device}]  params {n_params / 1e6:.2f}M  batch {BATCH}  "
          f"training set {n_train}  rounds {rounds} × {steps} steps")
    for v, ts in times.items():
        to_sgd = [t / s for t, s in zip(ts, times["sgd"])]
        to_func = [t / s for t, s in zip(ts, times["torch.func"])]
        print(f"  {v:<11} {statistics.median(ts) * 1e3:8.1f} ms/step   "
              f"ratio {span(to_sgd)} to sgd   {span(to_func)} to torch.func")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.rounds < 1 or args.steps < 1 or args.threads < 1:
        parser.error("--rounds, --steps and --threads must be positive integers")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, load average {os.getloadavg()[0]:.1f}")
    for name in MODELS:
        bench(name, "cpu", args.rounds, args.steps)
    if torch.cuda.is_available():
        print(f"\nCUDA: {torch.cuda.get_device_name()}")
        for name in MODELS:
            bench(name, "cuda", args.rounds, args.steps)


if __name__ == "__main__":
    main()
