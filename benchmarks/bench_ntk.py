"""Empirical-NTK throughput: kernel entries/s (entries = n1·n2·O·O, full mode, x1 = x2).

Target: ``auto`` on the 784→3×1024→10 ReLU MLP (2.9 M parameters) at n = 512 reaches
≥ 7.7 M entries/s (26.2 M entries in ≤ 3.4 s). Implementations whose cost at n = 512 is
minutes (jacobian: 2·n²·O²·P FLOPs) run at a smaller n, printed. Every kernel is checked
against the ``structured``/``jacobian`` one on the shared leading block.

    python benchmarks/bench_ntk.py [--models mlp cnn]
"""

from __future__ import annotations

import argparse
import os
import time
from types import SimpleNamespace

import torch

from tangentlens.models import build_model
from tangentlens.ntk import empirical_ntk
from tangentlens.ntk.empirical import default_params, pair_flops

MODELS = {
    "mlp": (SimpleNamespace(kind="mlp", width=1024, depth=3, activation="relu"), (1, 28, 28),
            # (implementation, n, block_size); jacobian: 2·16·O·P floats = 3.7 GB
            [("structured", 512, 64), ("auto", 512, 64), ("ntk_vp", 128, 64),
             ("jacobian", 128, 16)]),
    "cnn": (SimpleNamespace(kind="cnn", width=32, depth=2, activation="relu"), (1, 28, 28),
            [("structured", 512, 64), ("auto", 512, 64), ("jacobian", 512, 64),
             ("ntk_vp", 64, 64)]),
}


def matmul_gflops() -> float:
    a = torch.randn(2048, 2048)
    a @ a
    start = time.perf_counter()
    for _ in range(5):
        a @ a
    return 5 * 2 * 2048**3 / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.1f}, 2048² float32 matmul {matmul_gflops():.0f} GFLOP/s")
    for name in args.models:
        cfg, shape, runs = MODELS[name]
        model = build_model(cfg, shape, 10, seed=0)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(max(n for _, n, _ in runs), *shape, generator=gen)
        params = default_params(model)
        flops = pair_flops(model, params, x, "full", 10)
        print(f"\n{name}: {sum(p.numel() for p in params.values()):,} parameters; auto picks "
              f"{min(flops, key=flops.get)} (est. FLOPs/pair "
              + ", ".join(f"{k} {v:.3g}" for k, v in flops.items()) + ")")
        reference = None
        for impl, n, block in runs:
            start = time.perf_counter()
            k = empirical_ntk(model, x[:n], implementation=impl, block_size=block)
            seconds = time.perf_counter() - start
            reference = k if reference is None else reference
            m = min(n, len(reference))
            err = ((k[:m, :m] - reference[:m, :m]).abs().max() / reference.abs().max()).item()
            print(f"  {impl:>10}  n={n:4d}  block={block:3d}  {seconds:7.2f} s  "
                  f"{k.numel() / seconds / 1e6:7.2f} M entries/s  (max rel. diff {err:.1e})")


if __name__ == "__main__":
    main()
