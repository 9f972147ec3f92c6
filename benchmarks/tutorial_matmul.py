#!/usr/bin/env python3
"""Triton's tutorial matmul with its own block sizes: GFLOP/s (median) against numpy in the same run.

    .venv/bin/python benchmarks/tutorial_matmul.py [--size N] [--blocks 64x64x32,32x32x32]
                                                   [--dot-unroll-limit L]

The kernel is tests/tutorial_kernels.py's `matmul_kernel` unchanged (GROUP_SIZE_M=8, `% M`
wrapped offsets, masked K loop, f16 output), launched on N x N x N f32 inputs.  Also prints
the cold compile time (spvjit's own, then lavapipe's at the first dispatch, with Mesa's shader
cache off) and the SPIR-V size.  `--dot-unroll-limit` sets SPVJIT_DOT_UNROLL_LIMIT (the
multiply-adds per invocation above which a dot becomes a loop over k) to compare both forms.

On a shared host, run it on one core on each side for figures that hold still between runs:
`LP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/tutorial_matmul.py`
(the 2-core EPYC of 2026-12-03: two-thread medians spread 15-28 GFLOP/s over an hour, one-thread
medians 13.9-14.7; docs/PERFORMANCE.md).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ["MESA_SHADER_CACHE_DISABLE"] = "true"
os.environ["SPVJIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="spvjit-tutmm-")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import numpy as np  # noqa: E402

import spvjit  # noqa: E402
from spvjit import compiler  # noqa: E402
from spvjit.testing import do_bench, do_bench_wall  # noqa: E402
from tutorial_kernels import matmul_kernel  # noqa: E402


def _blocks(text: str):
    out = []
    for part in text.split(","):
        dims = tuple(int(x) for x in part.lower().split("x"))
        if len(dims) != 3 or any(d <= 0 or d & (d - 1) for d in dims):
            raise ValueError(part)
        out.append(dims)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="M = N = K (default 1024)")
    ap.add_argument("--blocks", default="64x64x32,32x32x32", help="BMxBNxBK configurations, comma-separated")
    ap.add_argument("--dot-unroll-limit", type=int, help="SPVJIT_DOT_UNROLL_LIMIT for this run")
    args = ap.parse_args(argv)
    try:
        configs = _blocks(args.blocks)
    except ValueError as e:
        ap.error(f"--blocks: expected powers of two like 64x64x32, got {e}")
    if args.size <= 0:
        ap.error("--size must be positive")
    if args.dot_unroll_limit is not None:
        os.environ["SPVJIT_DOT_UNROLL_LIMIT"] = str(args.dot_unroll_limit)
    n = args.size
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)).astype(np.float32), rng.standard_normal((n, n)).astype(np.float32)
    ta, tb, tc = spvjit.tensor(a), spvjit.tensor(b), spvjit.empty((n, n), np.float16)
    words = []
    compiler.compile_hooks.append(lambda ck: words.append(len(ck.spirv) // 4))
    ref_ms = do_bench_wall(lambda: a @ b, rep=5)
    flops = 2 * n ** 3
    threads = os.environ.get("LP_NUM_THREADS", f"{os.cpu_count()} (all cores)")
    print(f"device: {spvjit.get_device().caps.name}, {threads} threads; {n}^3 f32 in, f16 out; "
          f"numpy {flops / ref_ms / 1e6:.1f} GFLOP/s")
    print(f"{'blocks':<10} {'spvjit compile':>15} {'driver':>8} {'SPIR-V words':>13} {'GFLOP/s':>8} {'ratio':>6}")
    for bm, bn, bk in configs:
        k = spvjit.JITFunction(matmul_kernel.fn)
        grid = (spvjit.cdiv(n, bm) * spvjit.cdiv(n, bn),)

        def run():
            k[grid](ta, tb, tc, n, n, n, n, 1, n, 1, n, 1, BLOCK_SIZE_M=bm, BLOCK_SIZE_N=bn,
                    BLOCK_SIZE_K=bk, GROUP_SIZE_M=8, ACTIVATION="")

        t0 = time.perf_counter()
        run()
        first = time.perf_counter() - t0
        cold = k.compile_seconds[-1]
        ref = a.astype(np.float64) @ b
        err = np.abs(tc.numpy().astype(np.float64) - ref).max() / np.abs(ref).max()
        if err > 1e-2:          # f16 output: relative error ~1e-3 at most
            print(f"{bm}x{bn}x{bk}: WRONG RESULT (relative error {err:.1e})")
            return 1
        ms = do_bench(run, rep=5)
        ours = flops / ms / 1e6
        print(f"{f'{bm}x{bn}x{bk}':<10} {cold:>13.2f} s {first - cold:>6.1f} s {words[-1]:>13} "
              f"{ours:>8.1f} {ours / (flops / ref_ms / 1e6):>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
