"""Tiled eNTK throughput, peak memory and SIGKILL-resume on the bench MLP; CIFAR-10 projection.

For each n, a fresh process computes the trace eNTK of the 784→3×1024→10 ReLU MLP
(bench_ntk.py) on n random inputs into an HDF5 file and prints tiles/s, kernel entries/s
(n² / seconds) and its peak RSS (getrusage). With ``--resume-check`` a second process is
SIGKILLed once half the tiles are marked done, a third resumes it, and the two kernels are
compared bitwise (SHA-256 of K) with the tiles the resume computed. Last, a PROJECTION (not a
measurement) for CIFAR-10 (n = 50 000, trace, 3072→3×1024→10) from the measured pair rate.

    python benchmarks/bench_ntk_tiled.py [--ns 4096 16384] [--tile 1024] [--resume-check]
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


def _spawn(n: int, tile: int, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--child", str(n), "--tile", str(tile),
                             "--out", str(out)], stdout=subprocess.PIPE, text=True)


def _run(n: int, tile: int, out: Path) -> dict:
    proc = _spawn(n, tile, out)
    stdout, _ = proc.communicate()
    if proc.returncode:
        sys.exit(f"child for n={n} failed with exit code {proc.returncode}")
    return json.loads(stdout.strip().splitlines()[-1])


def _done(path: Path) -> int:
    import h5py

    with h5py.File(path, "r") as f:
        return int(f["done"][()].sum())


def kernel_sha(path: Path) -> str:
    """SHA-256 of K, read 256 rows at a time."""
    from tangentlens.ntk.tiled import open_kernel

    k, h = open_kernel(path), hashlib.sha256()
    for r in range(0, k.shape[0], 256):
        h.update(k.read(slice(r, min(r + 256, k.shape[0])), slice(0, k.shape[1])).tobytes())
    k.close()
    return h.hexdigest()


def resume_check(n: int, tile: int, ref: Path, work: Path) -> None:
    path = work / f"cut_{n}.h5"
    proc = _spawn(n, tile, path)
    total = (-(-n // tile)) * (-(-n // tile) + 1) // 2
    while not path.exists() or _done(path) < total // 2:
        if proc.poll() is not None:
            sys.exit("the run to be killed finished first; use a smaller --tile")
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _done(path)
    res = _run(n, tile, path)
    same = kernel_sha(path) == kernel_sha(ref)
    print(f"  resume n={n}: SIGKILL with {before}/{total} tiles done; the resume computed "
          f"{res['computed']} tiles (= {total - before} expected) in {res['seconds']:.1f} s, "
          f"peak RSS {res['peak_rss_mib']:.0f} MiB; K bitwise equal to the uninterrupted run: "
          f"{same}")


def projection(rate_pairs: float, peak_mib: float, tile: int) -> None:
    """CIFAR-10 trace eNTK time/memory from the measured pair rate (PROJECTION)."""
    import torch

    from tangentlens.ntk.empirical import default_params, pair_flops

    def flops(shape):
        model = bench_model(shape)
        return pair_flops(model, default_params(model), torch.zeros(1, *shape), "trace", 10)

    mnist, cifar = flops((1, 28, 28)), flops((3, 32, 32))
    n = 50_000
    pairs = n * (n + tile) / 2  # upper-triangle tiles
    cpu_gflops = rate_pairs * mnist["structured"] / 1e9
    cpu_s = pairs * cifar["structured"] / (cpu_gflops * 1e9)
    gpu_s = pairs * cifar["structured"] / (ASSUMED_GPU_TFLOPS * 1e12)
    print(f"\nPROJECTION (not measured) for CIFAR-10, n = {n}, trace, 3072→3×1024→10 MLP:")
    print(f"  measured here: {cpu_gflops:.1f} effective GFLOP/s (pair rate × {mnist['structured']:.3g}"
          f" FLOPs/pair); CIFAR pair cost {cifar['structured']:.3g} FLOPs; {pairs:.3g} pairs")
    print(f"  this CPU: {cpu_s / 3600:.1f} h; one GPU at an ASSUMED {ASSUMED_GPU_TFLOPS:.0f} "
          f"effective TFLOP/s: {gpu_s / 60:.1f} min; N Ray workers (one GPU each, tiles "
          f"independent): ≈ {gpu_s / 60:.1f}/N min (e.g. N=8: {gpu_s / 480:.1f} min)")
    print(f"  memory: K on disk {n * n * 4 / 2**30:.1f} GiB (float32); per process ≈ measured "
          f"peak {peak_mib:.0f} MiB + inputs {n * 3072 * 4 / 2**20:.0f} MiB (tile {tile}); "
          f"the tiled solve needs a {n * n * 8 / 2**30:.1f} GiB float64 scratch file and "
          f"{n**3 / 3 / (cpu_gflops * 1e9) / 3600:.1f} h of Cholesky at this CPU's rate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ns", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--resume-check", action="store_true",
                        help="SIGKILL a second run halfway, resume it, compare K bitwise")
    parser.add_argument("--dir", default=None, help="where the kernel files go (default: temp)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return child(args.child, args.tile, args.out)
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.1f}, tile {args.tile}, trace mode, bench MLP 784→3×1024→10")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        rate, peak = None, 0.0
        for n in args.ns:
            ref = work / f"ref_{n}.h5"
            r = _run(n, args.tile, ref)
            rate = n * (n + args.tile) / 2 / r["seconds"]
            peak = max(peak, r["peak_rss_mib"])
            print(f"  n={n:6d}  {r['total']:4d} tiles  {r['seconds']:8.1f} s  "
                  f"{r['total'] / r['seconds']:7.3f} tiles/s  {n * n / r['seconds'] / 1e6:8.2f} M "
                  f"entries/s  peak RSS {r['peak_rss_mib']:.0f} MiB "
                  f"({'<' if r['peak_rss_mib'] < 2048 else '>='} 2 GiB)  K {n * n * 4 / 2**20:.0f} MiB")
            if args.resume_check:
                resume_check(n, args.tile, ref, work)
            for f in work.glob("*.h5"):
                f.unlink()
        projection(rate, peak, args.tile)


if __name__ == "__main__":
    main()
