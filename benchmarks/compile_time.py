#!/usr/bin/env python3
"""Cold compile (source -> pipeline) and warm launch times, as medians.

    .venv/bin/python benchmarks/compile_time.py [--reps N]

Cold: a fresh JITFunction and an empty SPVJIT_CACHE_DIR each time, so the
frontend, passes, lowering, SPIR-V emission and pipeline creation all run.
lavapipe compiles the shader to machine code lazily at the first dispatch,
reported separately (with Mesa's own shader cache disabled).
Warm: one launch (record, submit, wait) of an already-compiled kernel.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ["MESA_SHADER_CACHE_DISABLE"] = "true"
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import numpy as np  # noqa: E402

import spvjit  # noqa: E402
from tutorial_kernels import add_kernel, matmul_kernel  # noqa: E402


def measure(kernel, make_args, grid, reps):
    cold, first, warm = [], [], []
    for _ in range(reps):
        os.environ["SPVJIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="spvjit-ct-")
        k = spvjit.JITFunction(kernel.fn)
        args, kwargs = make_args()
        t0 = time.perf_counter()
        k[grid](*args, **kwargs)
        first.append(time.perf_counter() - t0)
        cold.append(k.compile_seconds[-1])
        for _ in range(5):
            t0 = time.perf_counter()
            k[grid](*args, **kwargs)
            warm.append(time.perf_counter() - t0)
    return statistics.median(cold), statistics.median(first), statistics.median(warm)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    n = 4096          # small: the warm figure is launch overhead, not bandwidth
    x = spvjit.tensor(np.ones(n, np.float32))
    o = spvjit.empty_like(x)
    M = N = K = 64
    a = spvjit.tensor(np.ones((M, K), np.float32))
    b = spvjit.tensor(np.ones((K, N), np.float32))
    c = spvjit.empty((M, N), np.float16)
    rows = [("vector add", add_kernel, lambda: ((x, x, o, n), {"BLOCK_SIZE": 1024}), (n // 1024,)),
            ("matmul (tutorial)", matmul_kernel,
             lambda: ((a, b, c, M, N, K, K, 1, N, 1, N, 1),
                      {"BLOCK_SIZE_M": 32, "BLOCK_SIZE_N": 32, "BLOCK_SIZE_K": 32, "GROUP_SIZE_M": 4,
                       "ACTIVATION": ""}), ((M // 32) * (N // 32),))]
    print(f"device: {spvjit.get_device().caps.name}; medians of {args.reps}")
    print(f"{'kernel':<20} {'cold compile':>14} {'first launch':>14} {'warm launch':>12}")
    for name, kernel, make, grid in rows:
        cold, first, warm = measure(kernel, make, grid, args.reps)
        print(f"{name:<20} {cold * 1e3:>11.1f} ms {first * 1e3:>11.1f} ms {warm * 1e6:>9.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
