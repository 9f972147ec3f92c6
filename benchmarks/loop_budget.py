#!/usr/bin/env python3
"""What honouring lavapipe's loop limit costs: the same kernels compiled for the measured
limit (one program per workgroup for kernels with runtime-bounded loops, small loop bodies
unrolled, loop exit checks) and as if the device had no limit, timed alternately in one run.

    .venv/bin/python benchmarks/loop_budget.py [--rounds N]

Only sizes where both variants are right are timed (checked against numpy).  softmax has no
loop, so both variants compile to the same code: its ratio shows the noise of the machine.
Prints the median over rounds of each variant's do_bench median, and limited/unlimited.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import spvjit  # noqa: E402
import spvjit.language as sl  # noqa: E402
from spvjit.loop_limit import loop_iteration_limit  # noqa: E402
from spvjit.runtime import get_device  # noqa: E402
from spvjit.testing import do_bench  # noqa: E402
import bench_kernels as K  # noqa: E402

RNG = np.random.default_rng(0)


@spvjit.kernel
def row_sum(x_ptr, out_ptr, n_cols, BLOCK: sl.constexpr):
    row = sl.program_id(0)
    acc = sl.zeros((BLOCK,), sl.float32)
    for k in range(0, n_cols, BLOCK):
        offs = k + sl.arange(0, BLOCK)
        acc += sl.load(x_ptr + row * n_cols + offs, mask=offs < n_cols, other=0.0)
    sl.store(out_ptr + row, sl.sum(acc, 0))


def cases():
    """name -> (launch, check, bytes or flops, unit)"""
    out = {}
    x = RNG.standard_normal((16384, 256)).astype(np.float32)
    tx, to = spvjit.tensor(x), spvjit.empty((16384, 256))
    e = np.exp(x - x.max(1, keepdims=True))
    out["softmax 16384x256 (no loop)"] = (
        lambda: K.softmax_rows[(16384,)](to, tx, 256, BLOCK=256, ROWS=1),
        lambda: np.testing.assert_allclose(to.numpy(), e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-6),
        2 * x.nbytes, "GB/s")
    r = RNG.standard_normal((8192, 256)).astype(np.float32)
    tr, ts = spvjit.tensor(r), spvjit.empty(8192)
    out["row sum 8192x256 (BLOCK 16)"] = (
        lambda: row_sum[(8192,)](tr, ts, 256, BLOCK=16),
        lambda: np.testing.assert_allclose(ts.numpy(), r.sum(1), rtol=1e-4, atol=1e-4),
        r.nbytes, "GB/s")
    w = RNG.standard_normal((1024, 4096)).astype(np.float32)
    v = RNG.standard_normal(4096).astype(np.float32)
    tw, tv, ty = spvjit.tensor(w), spvjit.tensor(v), spvjit.empty(1024)
    out["matvec 1024x4096 f32"] = (
        lambda: K.matvec[(1024 // 8,)](tw, tv, ty, 1024, 4096, BN=8, BK=64),
        lambda: np.testing.assert_allclose(ty.numpy(), w @ v, rtol=2e-2, atol=2e-2 * 64),
        w.nbytes, "GB/s")
    a = RNG.standard_normal((512, 512)).astype(np.float32)
    b = RNG.standard_normal((512, 512)).astype(np.float32)
    ta, tb, tc = spvjit.tensor(a), spvjit.tensor(b), spvjit.empty((512, 512))
    out["matmul 512^3 f32 (32x32x32)"] = (
        lambda: K.matmul[(16, 16)](ta, tb, tc, 512, 512, 512, BM=32, BN=32, BK=32),
        lambda: np.testing.assert_allclose(tc.numpy(), a @ b, rtol=1e-3, atol=1e-3),
        2 * 512 ** 3, "GFLOP/s")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9, help="alternations of the two variants (default 9)")
    args = ap.parse_args(argv)
    dev = get_device()
    limit = loop_iteration_limit(dev)
    print(f"device: {dev.caps.name} ({dev.caps.driver_info}); loop iteration limit: {limit}")
    if limit is None:
        print("this device has no loop limit: both variants would be the same code")
        return 0
    variants = {"limited": limit, "unlimited": None}
    results = {name: {v: [] for v in variants} for name in cases()}
    table = cases()
    for rnd in range(args.rounds):
        order = list(variants.items())
        for variant, value in order if rnd % 2 == 0 else order[::-1]:     # cancel drift
            dev._loop_iteration_limit = value      # the compile key includes it: two cached variants
            try:
                for name, (launch, check, work, _) in table.items():
                    ms = do_bench(launch)
                    check()
                    results[name][variant].append(work / ms / 1e6)
            finally:
                dev._loop_iteration_limit = limit
    print(f"{'kernel':30} {'limited':>9} {'unlimited':>9} unit     ratio   (medians of {args.rounds} rounds)")
    for name, (_, _, _, unit) in table.items():
        lim, unl = (statistics.median(results[name][v]) for v in variants)
        print(f"{name:30} {lim:9.2f} {unl:9.2f} {unit:8} {lim / unl:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
