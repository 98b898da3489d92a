"""Empirical-NTK throughput, implementations interleaved in one process: kernel entries/s
(entries = n²·O², full mode, x1 = x2) and the ratio to a straightforward torch.func method.

The reference ``torch.func`` is the textbook computation: per-sample Jacobians of all
parameters by ``vmap(jacrev(functional_call))``, contracted J·Jᵀ in one einsum. It holds
n·O·P floats, so it runs at a small n only ("small"); there every implementation is
timed on the same inputs and compared with it (ratio = its time / theirs, > 1 faster).
At n = 512 (MLP) / 256 (CNN) ("large") the fast implementations are timed against each
other. Each round
runs every implementation of a group once, in turn; printed are the median over rounds
and `ratio X [min–max]`. Every kernel is checked against the group's first one.

    python benchmarks/bench_ntk.py [--models mlp cnn] [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: shared cores

import argparse
import statistics
import time
from types import SimpleNamespace

import torch
from torch.func import functional_call, jacrev, vmap

from tangentlens.models import build_model
from tangentlens.ntk import empirical_ntk

MODELS = {  # name: (config, input shape, {group: (n, block_size, implementations)})
    "mlp": (SimpleNamespace(kind="mlp", width=1024, depth=3, activation="relu"), (1, 28, 28),
            {"small": (8, 8, ["torch.func", "jacobian", "ntk_vp", "structured", "auto"]),
             "large": (512, 64, ["structured", "auto"])}),
    "cnn": (SimpleNamespace(kind="cnn", width=32, depth=2, activation="relu"), (1, 28, 28),
            {"small": (16, 16, ["torch.func", "jacobian", "ntk_vp", "structured", "auto"]),
             "large": (256, 64, ["structured", "auto"])}),
}


def torch_func_ntk(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """K[i,j,a,b] = Σ_p J[i,a,p] J[j,b,p] from per-sample Jacobians (vmap(jacrev))."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def f(p, xi):
        return functional_call(model, p, (xi.unsqueeze(0),)).squeeze(0)

    jac = vmap(jacrev(f), in_dims=(None, 0))(params, x)
    j = torch.cat([v.flatten(2) for v in jac.values()], dim=2)  # (n, O, P)
    return torch.einsum("iap,jbp->ijab", j, j)


def run(model, x, impl: str, block: int) -> torch.Tensor:
    if impl == "torch.func":
        return torch_func_ntk(model, x)
    return empirical_ntk(model, x, implementation=impl, block_size=block)


def span(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}–{max(values):.2f}]"


def bench(name: str, device: str, rounds: int) -> None:
    cfg, shape, groups = MODELS[name]
    model = build_model(cfg, shape, 10, seed=0).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    x_all = torch.randn(max(n for n, _, _ in groups.values()), *shape,
                        generator=torch.Generator().manual_seed(0)).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    print(f"\n{name} [{device}]: {n_params:,} parameters")
    for group, (n, block, impls) in groups.items():
        x = x_all[:n]
        times: dict[str, list[float]] = {i: [] for i in impls}
        kernels: dict[str, torch.Tensor] = {}
        for _ in range(rounds):
            for impl in impls:
                sync()
                start = time.perf_counter()
                kernels[impl] = run(model, x, impl, block)
                sync()
                times[impl].append(time.perf_counter() - start)
        ref = kernels[impls[0]]
        print(f"  {group}: n={n}, block={block}, {ref.numel():,} entries, {rounds} rounds")
        for impl in impls:
            err = ((kernels[impl] - ref).abs().max() / ref.abs().max()).item()
            line = (f"    {impl:>10}  {statistics.median(times[impl]):8.3f} s  "
                    f"{ref.numel() / statistics.median(times[impl]):10.3g} entries/s")
            if "torch.func" in impls:
                speedup = [a / b for a, b in zip(times["torch.func"], times[impl])]
                line += f"  ratio {span(speedup)} to torch.func"
            print(f"{line}  (max rel. diff {err:.1e})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.rounds < 1 or args.threads < 1:
        parser.error("--rounds and --threads must be positive integers")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, load average {os.getloadavg()[0]:.1f}")
    for name in args.models:
        bench(name, "cpu", args.rounds)
    if torch.cuda.is_available():
        print(f"\nCUDA: {torch.cuda.get_device_name()}")
        for name in args.models:
            bench(name, "cuda", args.rounds)


if __name__ == "__main__":
    main()
