"""Tiled eNTK throughput, peak memory and SIGKILL-resume on the bench MLP; CIFAR-10 projection.

For each n, a process computes the trace eNTK of the 784→3×1024→10 ReLU MLP (bench_ntk.py)
on n random inputs into an HDF5 file and is SIGKILLed once half the tiles are marked done; a
second one resumes it. Printed: tiles/s and kernel entries/s (n² / both runs' seconds), the
peak RSS of the two processes (getrusage), the tiles the resume computed, a bitwise check of
four tiles recomputed in a fresh process (the first, the last finished before the kill, the
first after it, the last) and, up to ``--reference-max``, of the whole K against an
uninterrupted run (SHA-256). Last, a PROJECTION (not a measurement) for CIFAR-10
(n = 50 000, trace, 3072→3×1024→10) from the measured pair rate.

    python benchmarks/bench_ntk_tiled.py [--ns 4096 16384] [--tile 2048]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

MLP = SimpleNamespace(kind="mlp", width=1024, depth=3, activation="relu")
ASSUMED_GPU_TFLOPS = 20.0  # H200 FP32 ~67 TFLOP/s dense peak; 30% of it for these GEMMs


def bench_model(shape=(1, 28, 28)):
    from tangentlens.models import build_model

    return build_model(MLP, shape, 10, seed=0)


def child(n: int, tile: int, out: str) -> None:
    """Compute (or resume) one kernel; print one JSON line."""
    import torch

    from tangentlens.ntk.tiled import tiled_ntk

    x = torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    res = tiled_ntk(bench_model(), x, out, tile=tile, mode="trace")
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "computed": res.computed, "total": res.total,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _spawn(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, *map(str, args)], stdout=subprocess.PIPE,
                            text=True)


def _wait(proc: subprocess.Popen) -> dict:
    stdout, _ = proc.communicate()
    if proc.returncode:
        sys.exit(f"{proc.args[2:]} failed with exit code {proc.returncode}")
    return json.loads(stdout.strip().splitlines()[-1])


def _done(path: Path) -> np.ndarray:
    import h5py

    with h5py.File(path, "r") as f:
        return f["done"][()]


def kernel_sha(path: Path) -> str:
    """SHA-256 of K, read 256 rows at a time."""
    from tangentlens.ntk.tiled import open_kernel

    k, h = open_kernel(path), hashlib.sha256()
    for r in range(0, k.shape[0], 256):
        h.update(k.read(slice(r, min(r + 256, k.shape[0])), slice(0, k.shape[1])).tobytes())
    k.close()
    return h.hexdigest()


def verify(n: int, tile: int, out: str, tiles: list[tuple[int, int]]) -> None:
    """Recompute ``tiles`` in this fresh process; print whether K holds them bitwise."""
    import torch

    from tangentlens.ntk.empirical import default_params, pair_flops
    from tangentlens.ntk.tiled import TileKernel, open_kernel

    model = bench_model()
    x = torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    params = default_params(model)
    flops = pair_flops(model, params, x[:1], "trace", 10)
    kernel = TileKernel(model, x, params, "trace", min(flops, key=flops.get), 64, tile)
    k = open_kernel(out)
    same = {f"{i},{j}": bool(np.array_equal(kernel((i, j)), k.read(
        slice(i * tile, min((i + 1) * tile, n)), slice(j * tile, min((j + 1) * tile, n)))))
        for i, j in tiles}
    print(json.dumps(same))


def measure(n: int, tile: int, work: Path, reference: bool) -> tuple[float, float]:
    """SIGKILL a run once half its tiles are done, resume it, check K; (pairs/s, peak MiB)."""
    path = work / f"cut_{n}.h5"
    total = (-(-n // tile)) * (-(-n // tile) + 1) // 2
    start = time.perf_counter()
    proc = _spawn("--child", n, "--tile", tile, "--out", path)
    while not path.exists() or _done(path).sum() < total // 2:
        if proc.poll() is not None:
            sys.exit("the run to be killed finished first; use a smaller --tile")
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_s, done = time.perf_counter() - start, _done(path)
    res = _wait(_spawn("--child", n, "--tile", tile, "--out", path))
    seconds = killed_s + res["seconds"]
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # both runs so far
    print(f"  n={n:6d}  {total:4d} tiles  {seconds:8.1f} s  {total / seconds:7.3f} tiles/s  "
          f"{n * n / seconds / 1e6:7.2f} M entries/s  peak RSS {peak:.0f} MiB "
          f"({'<' if peak < 2048 else '>='} 2 GiB)  K {n * n * 4 / 2**20:.0f} MiB on disk")
    print(f"    SIGKILL after {killed_s:.1f} s with {int(done.sum())}/{total} tiles done; the "
          f"resume computed {res['computed']} tiles ({total - int(done.sum())} expected)")
    rows, cols = np.nonzero(np.triu(np.ones_like(done)))
    order = list(zip(rows.tolist(), cols.tolist()))  # row-major, as computed
    first_missing = next(t for t in order if not done[t])
    check = sorted({order[0], order[order.index(first_missing) - 1], first_missing, order[-1]})
    same = _wait(_spawn("--verify", n, "--tile", tile, "--out", path,
                        *[f"{i},{j}" for i, j in check]))
    print(f"    tiles recomputed in a fresh process equal K bitwise: {same}")
    if reference:
        ref = work / f"ref_{n}.h5"
        _wait(_spawn("--child", n, "--tile", tile, "--out", ref))
        print(f"    whole K equals an uninterrupted run bitwise (SHA-256): "
              f"{kernel_sha(path) == kernel_sha(ref)}")
    return n * (n + tile) / 2 / seconds, peak


def matmul_gflops() -> float:
    import torch

    a = torch.randn(2048, 2048)
    a @ a
    start = time.perf_counter()
    for _ in range(5):
        a @ a
    return 5 * 2 * 2048**3 / (time.perf_counter() - start) / 1e9


def projection(rate_pairs: float, peak_mib: float, tile: int) -> None:
    """CIFAR-10 trace eNTK time/memory from the measured pair rate (PROJECTION)."""
    import torch

    from tangentlens.ntk.empirical import default_params, pair_flops

    def flops(shape):
        model = bench_model(shape)
        return pair_flops(model, default_params(model), torch.zeros(1, *shape), "trace", 10)

    n, cpu = 50_000, matmul_gflops()
    pairs = n * (n + tile) / 2  # upper-triangle tiles
    ratio = flops((3, 32, 32))["structured"] / flops((1, 28, 28))["structured"]
    cpu_s = pairs / rate_pairs * ratio
    speedup = ASSUMED_GPU_TFLOPS * 1e3 / cpu
    gpu_s = cpu_s / speedup
    print(f"\nPROJECTION (not measured) for CIFAR-10, n = {n}, trace, 3072→3×1024→10 MLP:")
    print(f"  from the measured rate {rate_pairs:.3g} pairs/s × {ratio:.2f} (CIFAR/MNIST pair "
          f"FLOPs) over {pairs:.3g} pairs: {cpu_s / 3600:.1f} h on this CPU")
    print(f"  one GPU: ASSUMED speed-up {speedup:.0f}× = {ASSUMED_GPU_TFLOPS:.0f} effective "
          f"TFLOP/s (30% of H200 FP32 peak) / this CPU's measured {cpu:.0f} GFLOP/s matmul: "
          f"{gpu_s / 60:.1f} min; N Ray workers with a GPU each (tiles independent): "
          f"{gpu_s / 60:.1f}/N min + writing K twice ({2 * n * n * 4 / 1e9:.0f} GB) by the "
          f"driver at an assumed 1 GB/s: {2 * n * n * 4 / 1e9:.0f} s")
    print(f"  memory: K on disk {n * n * 4 / 2**30:.1f} GiB (float32); per process ≈ measured "
          f"peak {peak_mib:.0f} MiB + inputs {n * 3072 * 4 / 2**20:.0f} MiB (tile {tile}); "
          f"the tiled solve: a {n * n * 8 / 2**30:.1f} GiB float64 scratch file, n³/3 FLOPs = "
          f"{n**3 / 3 / (cpu * 1e9) / 3600:.1f} h at this CPU's matmul rate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ns", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--tile", type=int, default=2048)
    parser.add_argument("--reference-max", type=int, default=4096,
                        help="up to this n, also compute K uninterrupted and compare it whole")
    parser.add_argument("--dir", default=None, help="where the kernel files go (default: temp)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--verify", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("tiles", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return child(args.child, args.tile, args.out)
    if args.verify is not None:
        tiles = [tuple(map(int, t.split(","))) for t in args.tiles]
        return verify(args.verify, args.tile, args.out, tiles)
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.1f}, tile {args.tile}, trace mode, bench MLP 784→3×1024→10",
          flush=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        for n in args.ns:
            rate, peak = measure(n, args.tile, work, n <= args.reference_max)
            sys.stdout.flush()
            for f in work.glob("*.h5"):
                f.unlink()
        projection(rate, peak, args.tile)


if __name__ == "__main__":
    main()
