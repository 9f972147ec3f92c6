#!/usr/bin/env python3
"""A tile transposed twice through the shared scratch: compile cost and speed of the exchange.

    .venv/bin/python benchmarks/shared_transpose.py [--sizes 32x32,64x64] [--reps 3]

`y = trans(trans(x) * 2)` on one program (8 lanes on lavapipe: a 64x64 f32 tile is 512
registers per lane, and each trans moves all of them through shared memory).  For each size:
SPIR-V words, the Workgroup OpStore/OpLoad count, spvjit's compile seconds and the driver's
(lavapipe compiles at the first dispatch; Mesa's shader cache off, a fresh JITFunction and an
empty SPVJIT_CACHE_DIR per repetition; medians of --reps), then the kernel's run time
(median, do_bench) against numpy doing the same `(x.T * 2).T` copy in the same run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ["MESA_SHADER_CACHE_DISABLE"] = "true"
os.environ["SPVJIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="spvjit-trans-")

import numpy as np  # noqa: E402

import spvjit  # noqa: E402
import spvjit.language as tl  # noqa: E402
from spvjit import compiler  # noqa: E402
from spvjit.codegen.spirv.disasm import workgroup_accesses  # noqa: E402
from spvjit.testing import do_bench, do_bench_wall  # noqa: E402


@spvjit.jit
def trans_twice(x_ptr, y_ptr, BM: tl.constexpr, BN: tl.constexpr):
    r = tl.arange(0, BM)[:, None] * BN + tl.arange(0, BN)[None, :]
    x = tl.load(x_ptr + r)
    tl.store(y_ptr + r, tl.trans(tl.trans(x) * 2.0))


def _sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        dims = part.split("x")
        if len(dims) != 2 or not all(d.isdigit() and int(d) >= 2 and int(d) & (int(d) - 1) == 0 for d in dims):
            raise argparse.ArgumentTypeError(f"expected BMxBN powers of two >= 2, got {part!r}")
        out.append((int(dims[0]), int(dims[1])))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=_sizes, default="32x32,64x64", help="BMxBN tiles, comma-separated")
    ap.add_argument("--reps", type=int, default=3, help="cold compiles per size (median)")
    args = ap.parse_args(argv)
    modules = []
    compiler.compile_hooks.append(lambda ck: modules.append(ck.spirv) if ck.name == "trans_twice" else None)
    print(f"device: {spvjit.get_device().caps.name}; host load {os.getloadavg()[0]:.1f}")
    print(f"{'tile':>7} {'words':>7} {'wg st/ld':>10} {'spvjit':>7} {'driver':>8} {'run':>9} {'numpy':>9} {'ratio':>6}")
    for bm, bn in args.sizes:
        size = f"{bm}x{bn}"
        xs = np.random.default_rng(0).random((bm, bn), dtype=np.float32)
        x, y = spvjit.tensor(xs), spvjit.empty((bm, bn), np.float32)
        ours, drv = [], []
        for _ in range(args.reps):
            os.environ["SPVJIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="spvjit-trans-")
            kern = spvjit.JITFunction(trans_twice.fn)
            t0 = time.perf_counter()
            kern[(1,)](x, y, BM=bm, BN=bn)
            wall = time.perf_counter() - t0
            ours.append(kern.compile_seconds[-1])
            drv.append(wall - ours[-1])
        if not np.array_equal(y.numpy(), xs * 2):
            print(f"{size}: WRONG RESULT", file=sys.stderr)
            return 1
        run_ms = do_bench(lambda: kern[(1,)](x, y, BM=bm, BN=bn), rep=5)
        ref_ms = do_bench_wall(lambda: (xs.T * np.float32(2)).T.copy(), rep=5)
        st, ld = workgroup_accesses(modules[-1])
        med = statistics.median
        print(f"{size:>7} {len(modules[-1]) // 4:>7} {f'{st}/{ld}':>10} {med(ours):>6.2f}s {med(drv):>7.2f}s "
              f"{run_ms * 1000:>7.0f}us {ref_ms * 1000:>7.1f}us {run_ms / ref_ms:>6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
