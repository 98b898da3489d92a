"""Caching throughput of RunWriter vs a plain h5py write, per compression × dtype.

Writes one checkpoint (HOOKS hooks × N_PROBE rows × WIDTH floats, streamed in BATCH-row
batches) and reports MB/s of float32 activations consumed, best of REPEATS.  Files go to a
temporary directory (page cache; no fsync), so the numbers measure CPU/library cost.
Usage: python benchmarks/bench_store.py [--quick]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from tangentlens.store import RunWriter
from tangentlens.store.layout import CHUNK_BYTES, COMPRESSIONS

QUICK = "--quick" in sys.argv
BATCH, WIDTH, HOOKS = 2048, 1024, 4
N_PROBE = BATCH * (2 if QUICK else 4)
REPEATS = 1 if QUICK else 3


def batches(rng: np.random.Generator) -> list[np.ndarray]:
    """Activation-like data: pre-activations (Gaussian) and post-ReLU (half zeros), alternating."""
    out = []
    for h in range(HOOKS):
        a = rng.standard_normal((BATCH, WIDTH), dtype=np.float32)
        out.append(np.maximum(a, 0) if h % 2 else a)
    return out


def write_store(path: Path, data: list[np.ndarray], compression: str, dtype: str) -> None:
    probe = {
        "x": np.zeros((N_PROBE, 1), np.float32),
        "y": np.zeros(N_PROBE),
        "split": np.zeros(N_PROBE, np.uint8),
    }
    with (
        RunWriter(path, {}, probe, compression=compression, dtype=dtype) as w,
        w.step("sgd", 0) as s,
    ):
        for h, a in enumerate(data):
            for start in range(0, N_PROBE, BATCH):
                s.write("network", f"layers.{h}.hook_post", start, a)


def write_plain(path: Path, data: list[np.ndarray], compression: str, dtype: str) -> None:
    chunks = (CHUNK_BYTES // (WIDTH * np.dtype(dtype).itemsize), WIDTH)
    with h5py.File(path, "w") as f:
        for h, a in enumerate(data):
            d = f.create_dataset(
                f"layers.{h}.hook_post",
                (N_PROBE, WIDTH),
                dtype,
                chunks=chunks,
                **COMPRESSIONS[compression],
            )
            for start in range(0, N_PROBE, BATCH):
                d[start : start + BATCH] = a.astype(dtype)


def main() -> None:
    data = batches(np.random.default_rng(0))
    mb = HOOKS * N_PROBE * WIDTH * 4 / 1e6
    print(
        f"{HOOKS} hooks × {N_PROBE} rows × {WIDTH} float32 = {mb:.0f} MB per checkpoint, "
        f"batches of {BATCH} rows, best of {REPEATS}"
    )
    head = ["compression", "dtype", "RunWriter MB/s", "h5py MB/s", "ratio", "file MB"]
    print("{:<12}{:<9}{:>15}{:>11}{:>7}{:>9}".format(*head))
    with tempfile.TemporaryDirectory() as tmp:
        for compression in COMPRESSIONS:
            for dtype in ("float32", "float16"):
                rates, size = [], 0.0
                for fn in (write_store, write_plain):
                    best = float("inf")
                    for i in range(REPEATS):
                        path = Path(tmp) / f"{fn.__name__}{i}.h5"
                        t = time.perf_counter()
                        fn(path, data, compression, dtype)
                        best = min(best, time.perf_counter() - t)
                        size = path.stat().st_size / 1e6
                        path.unlink()
                    rates.append(mb / best)
                print(
                    f"{compression:<12}{dtype:<9}{rates[0]:>15.0f}{rates[1]:>11.0f}"
                    f"{rates[0] / rates[1]:>7.2f}{size:>9.1f}"
                )


if __name__ == "__main__":
    main()
