#!/usr/bin/env python3
"""Triton's tutorial 08 (grouped GEMM through device addresses): GFLOP/s (median) against
numpy and against the same GEMMs as separate launches of the tutorial matmul, in the same run.

    .venv/bin/python benchmarks/grouped_gemm.py [--sizes 128,256] [--groups 4] [--blocks 32x32x32]
                                                [--programs P]

Each case is `--groups` square f16 GEMMs of one size (as Triton's own benchmark), f32
accumulation, f16 out.  The grouped kernel is tests/test_tutorial_grouped_gemm.py's
`grouped_matmul_kernel` (persistent programs, A/B/C reached through data_ptr() tables); the
reference launches tests/tutorial_kernels.py's `matmul_kernel` once per GEMM inside one
`spvjit.batch()`; numpy multiplies the same f16 inputs in f32.  Also prints the grouped
kernel's cold compile time (spvjit, then the driver at the first dispatch, Mesa's shader
cache off).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ["MESA_SHADER_CACHE_DISABLE"] = "true"
os.environ["SPVJIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="spvjit-grouped-")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import numpy as np  # noqa: E402

import spvjit  # noqa: E402
from spvjit.testing import do_bench, do_bench_wall  # noqa: E402
from test_tutorial_grouped_gemm import group_gemm_launch, group_gemm_tables, grouped_matmul_kernel  # noqa: E402
from tutorial_kernels import matmul_kernel  # noqa: E402


def _ints(ap, text: str, what: str):
    try:
        out = [int(x) for x in text.split(",")]
    except ValueError:
        ap.error(f"{what}: expected comma-separated integers, got {text!r}")
    if any(v <= 0 for v in out):
        ap.error(f"{what}: sizes must be positive, got {text!r}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="128,256", help="square GEMM sizes, one case each (multiples of the blocks)")
    ap.add_argument("--groups", type=int, default=4, help="GEMMs per group (default 4)")
    ap.add_argument("--blocks", default="16x16x16", help="BMxBNxBK (powers of two; lavapipe takes minutes "
                    "to compile 32x32x32)")
    ap.add_argument("--programs", type=int, default=64, help="persistent programs (default 64: on lavapipe "
                    "before Mesa 26 each must stay under the loop limit)")
    args = ap.parse_args(argv)
    sizes = _ints(ap, args.sizes, "--sizes")
    dims = _ints(ap, args.blocks.replace("x", ","), "--blocks")
    if len(dims) != 3:
        ap.error(f"--blocks: expected BMxBNxBK, got {args.blocks!r}")
    bm, bn, bk = dims
    if any(d & (d - 1) for d in (bm, bn, bk)) or any(s % max(bm, bn, bk) for s in sizes) or args.groups < 1:
        ap.error("--blocks must be powers of two dividing every size, --groups positive")
    programs = args.programs
    if programs < 1:
        ap.error("--programs must be positive")
    rng = np.random.default_rng(0)
    print(f"device: {spvjit.get_device().caps.name}; {args.groups} square f16 GEMMs per case, "
          f"blocks {bm}x{bn}x{bk}, {programs} persistent programs")
    print(f"{'size':>5} {'compile':>8} {'driver':>7} {'grouped':>8} {'separate':>9} {'numpy':>7} "
          f"{'vs sep.':>7} {'vs numpy':>8}   (GFLOP/s)")
    for n in sizes:
        a_np = [rng.uniform(-1, 1, (n, n)).astype(np.float16) for _ in range(args.groups)]
        b_np = [rng.uniform(-1, 1, (n, n)).astype(np.float16) for _ in range(args.groups)]
        ga, gb = [spvjit.tensor(x) for x in a_np], [spvjit.tensor(x) for x in b_np]
        flops = 2 * n ** 3 * args.groups
        k = spvjit.JITFunction(grouped_matmul_kernel.fn)
        group_c, tables = group_gemm_tables(ga, gb)
        t0 = time.perf_counter()
        group_gemm_launch(k, "device", tables, programs, (bm, bn, bk))
        first, cold = time.perf_counter() - t0, k.compile_seconds[-1]
        got = [c.numpy() for c in group_c]
        a32, b32 = [x.astype(np.float32) for x in a_np], [x.astype(np.float32) for x in b_np]
        for c, x, y in zip(got, a32, b32):
            ref = x @ y
            # f16 output of an f32 sum: about one f16 ulp of the largest value
            if np.abs(c.astype(np.float32) - ref).max() > 2e-3 * max(1.0, np.abs(ref).max()):
                print(f"{n}: WRONG RESULT")
                return 1
        grouped_ms = do_bench(lambda: group_gemm_launch(k, "device", tables, programs, (bm, bn, bk)), rep=5)
        cs = [spvjit.empty((n, n), np.float16) for _ in range(args.groups)]
        grid = (spvjit.cdiv(n, bm) * spvjit.cdiv(n, bn),)

        def separate():
            for x, y, c in zip(ga, gb, cs):
                matmul_kernel[grid](x, y, c, n, n, n, n, 1, n, 1, n, 1, BLOCK_SIZE_M=bm, BLOCK_SIZE_N=bn,
                                    BLOCK_SIZE_K=bk, GROUP_SIZE_M=8, ACTIVATION="")
        separate_ms = do_bench(separate, rep=5)
        numpy_ms = do_bench_wall(lambda: [x @ y for x, y in zip(a32, b32)], rep=5)
        g, s, r = (flops / ms / 1e6 for ms in (grouped_ms, separate_ms, numpy_ms))
        print(f"{n:>5} {cold:>6.2f} s {first - cold:>5.1f} s {g:>8.2f} {s:>9.2f} {r:>7.1f} "
              f"{g / s:>7.2f} {g / r:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
