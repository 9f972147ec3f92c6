#!/usr/bin/env python3
"""Kernel benchmarks: spvjit on the Vulkan device vs numpy on the CPU, measured in one run.

    .venv/bin/python benchmarks/kernels.py [--quick | --gpu] [--only NAME] [--matmul-blocks BMxBNxBK]
                                          [--json FILE] [--plot FILE.png]

GPU time comes from timestamps (spvjit.testing.do_bench, median); numpy from wall
time (median).  Prints GB/s (memory-bound kernels) or GFLOP/s (matmul) and the
ratio spvjit/numpy.  These machines are shared: trust medians and ratios only.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import spvjit  # noqa: E402
from spvjit import layouts  # noqa: E402
from spvjit.testing import Benchmark, do_bench, do_bench_wall, perf_report  # noqa: E402
import bench_kernels as K  # noqa: E402

RNG = np.random.default_rng(0)


def case_add(n):
    x, y = RNG.random(n, np.float32), RNG.random(n, np.float32)
    tx, ty, to = spvjit.tensor(x), spvjit.tensor(y), spvjit.empty(n)
    ms = do_bench(lambda: K.add[(spvjit.cdiv(n, 1024),)](tx, ty, to, n, BLOCK=1024))
    np.testing.assert_allclose(to.numpy(), x + y)
    out = np.empty_like(x)
    ref = do_bench_wall(lambda: np.add(x, y, out=out))
    return "GB/s", 3 * n * 4 / ms / 1e6, 3 * n * 4 / ref / 1e6


def _softmax_np(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def case_softmax(rows, cols):
    x = RNG.standard_normal((rows, cols)).astype(np.float32)
    tx, to = spvjit.tensor(x), spvjit.empty((rows, cols))
    lay = layouts.row_layout(spvjit.get_device().caps, cols, rows)     # the whole row in registers
    ms = do_bench(lambda: K.softmax_rows[(lay.programs(rows),)](to, tx, cols, BLOCK=lay.block,
                                                                 ROWS=lay.rows_per_program, num_warps=lay.num_warps))
    np.testing.assert_allclose(to.numpy(), _softmax_np(x), rtol=1e-4, atol=1e-6)
    ref = do_bench_wall(lambda: _softmax_np(x))
    return "GB/s", 2 * x.nbytes / ms / 1e6, 2 * x.nbytes / ref / 1e6, _row_note(lay)


def _row_note(lay) -> str:
    return f"{lay.scheme}: {lay.rows_per_program} row(s)/program, block {lay.block}, num_warps {lay.num_warps}"


def _ln_np(x, w, b, eps=1e-5):
    mu = x.mean(1, keepdims=True)
    return (x - mu) / np.sqrt(x.var(1, keepdims=True) + eps) * w + b


def case_layer_norm(rows, cols):
    x = RNG.standard_normal((rows, cols)).astype(np.float32)
    w, b = RNG.random(cols, np.float32), RNG.random(cols, np.float32)
    tx, tw, tb, ty = spvjit.tensor(x), spvjit.tensor(w), spvjit.tensor(b), spvjit.empty((rows, cols))
    lay = layouts.row_layout(spvjit.get_device().caps, cols, rows)
    ms = do_bench(lambda: K.layer_norm[(lay.programs(rows),)](tx, ty, tw, tb, cols, 1e-5, BLOCK=lay.block,
                                                               ROWS=lay.rows_per_program, num_warps=lay.num_warps))
    np.testing.assert_allclose(ty.numpy(), _ln_np(x, w, b), rtol=1e-3, atol=1e-4)
    ref = do_bench_wall(lambda: _ln_np(x, w, b))
    return "GB/s", 2 * x.nbytes / ms / 1e6, 2 * x.nbytes / ref / 1e6, _row_note(lay)


def case_matvec(n, k, dtype):
    w = RNG.standard_normal((n, k)).astype(dtype)
    x = RNG.standard_normal(k).astype(dtype)
    tw, tx, ty = spvjit.tensor(w), spvjit.tensor(x), spvjit.empty(n)
    lay = layouts.matvec_layout(spvjit.get_device().caps, n, k)      # rows and block divide n and k
    ms = do_bench(lambda: K.matvec[(lay.programs(n),)](tw, tx, ty, n, k, BN=lay.rows_per_program, BK=lay.block_k,
                                                        num_warps=lay.num_warps))
    ref_y = w.astype(np.float32) @ x.astype(np.float32)
    np.testing.assert_allclose(ty.numpy(), ref_y, rtol=2e-2, atol=2e-2 * np.sqrt(k))
    ref = do_bench_wall(lambda: w @ x)
    note = f"{lay.scheme}: {lay.rows_per_program}x{lay.block_k} per program, num_warps {lay.num_warps}"
    return "GB/s", w.nbytes / ms / 1e6, w.nbytes / ref / 1e6, note


def case_matvec_q4_1(n, k):
    try:
        from spvjit.models.llama.kernels.bench import q4_1_matvec_case
    except ImportError:
        return None
    return q4_1_matvec_case(n, k)


MATMUL_BLOCKS = None      # (BM, BN, BK) from --matmul-blocks: no autotuning


def case_matmul(m, n, k, dtype):
    a = RNG.standard_normal((m, k)).astype(dtype)
    b = RNG.standard_normal((k, n)).astype(dtype)
    ta, tb, tc = spvjit.tensor(a), spvjit.tensor(b), spvjit.empty((m, n))

    def run():
        if MATMUL_BLOCKS:
            bm, bn, bk = MATMUL_BLOCKS
            K.matmul[(m // bm, n // bn)](ta, tb, tc, m, n, k, BM=bm, BN=bn, BK=bk)
        else:
            K.matmul_tuned[lambda meta: (m // meta["BM"], n // meta["BN"])](ta, tb, tc, m, n, k)

    run()                       # the first launch autotunes over K.MATMUL_CONFIGS (stored per device)
    ms = do_bench(run, rep=5)
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    np.testing.assert_allclose(tc.numpy(), a32 @ b32, rtol=1e-2, atol=1e-2 * np.sqrt(k))
    # numpy has no fast f16 matmul (no BLAS): its f32 product is the fair reference
    ref = do_bench_wall(lambda: a32 @ b32, rep=5)
    used = "BM: {}, BN: {}, BK: {}".format(*MATMUL_BLOCKS) if MATMUL_BLOCKS else str(K.matmul_tuned.best_config)
    return "GFLOP/s", 2 * m * n * k / ms / 1e6, 2 * m * n * k / ref / 1e6, used


# Sizes per kernel: the target size first, then smaller and differently shaped ones.
# --quick keeps only the smaller ones; --gpu uses sizes that keep a discrete GPU busy.
SIZES = {
    "add": [16 << 20, 1 << 20],
    "softmax": [(4096, 1024), (16384, 256)],
    "layer_norm": [(4096, 1024), (16384, 256)],
    "matvec": [(4096, 4096), (1024, 4096)],
    "matvec_q4_1": [(49152, 576), (1536, 576)],
    "matmul": [(1024, 1024, 1024), (512, 512, 512)],
}
# Row kernels at --gpu: a row per subgroup (1024 columns), rows spread over a workgroup (8192),
# two rows per program (256): the three schemes of spvjit/layouts.py on an H200-sized GPU
# (the extra sizes are 64 MB, a quarter of the first, to keep numpy's share of the time small).
GPU_SIZES = {
    "add": [256 << 20], "softmax": [(65536, 1024), (2048, 8192), (65536, 256)],
    "layer_norm": [(65536, 1024), (2048, 8192), (65536, 256)],
    "matvec": [(16384, 4096)], "matvec_q4_1": [(49152, 576)], "matmul": [(4096, 4096, 4096)],
}


def _dims(t) -> str:
    if isinstance(t, int):
        return f"{t >> 20}M" if t % (1 << 20) == 0 else str(t)
    return f"{t[0]}^3" if len(t) == 3 and len(set(t)) == 1 else "x".join(map(str, t))


def cases(quick: bool, gpu: bool = False):
    sizes = GPU_SIZES if gpu else SIZES
    pick = (lambda v: v[1:]) if quick and not gpu else (lambda v: v)
    out = []
    for n in pick(sizes["add"]):
        out.append(("add", f"{_dims(n)} f32", lambda n=n: case_add(n)))
    for kernel, fn in (("softmax", case_softmax), ("layer_norm", case_layer_norm)):
        for rc in pick(sizes[kernel]):
            out.append((kernel, _dims(rc), lambda fn=fn, rc=rc: fn(*rc)))
    for dt, name in ((np.float32, "f32"), (np.float16, "f16")):
        for nk in pick(sizes["matvec"]):
            out.append(("matvec", f"{_dims(nk)} {name}", lambda nk=nk, dt=dt: case_matvec(*nk, dt)))
    for nk in pick(sizes["matvec_q4_1"]):
        out.append(("matvec_q4_1", _dims(nk), lambda nk=nk: case_matvec_q4_1(*nk)))
    for dt, name in ((np.float32, "f32"), (np.float16, "f16")):
        for mnk in pick(sizes["matmul"]):
            out.append(("matmul", f"{_dims(mnk)} {name}", lambda mnk=mnk, dt=dt: case_matmul(*mnk, dt)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the smaller sizes")
    ap.add_argument("--gpu", action="store_true", help="larger sizes, for a discrete GPU")
    ap.add_argument("--only", help="run only kernels whose name contains this text")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE ('-' for stdout)")
    ap.add_argument("--plot", metavar="FILE.png", help="draw spvjit vs numpy as a bar-style line plot")
    ap.add_argument("--matmul-blocks", metavar="BMxBNxBK", help="fixed matmul blocks instead of autotuning")
    args = ap.parse_args(argv)
    if args.matmul_blocks:
        global MATMUL_BLOCKS
        try:
            MATMUL_BLOCKS = tuple(int(x) for x in args.matmul_blocks.lower().split("x"))
        except ValueError:
            MATMUL_BLOCKS = ()
        if len(MATMUL_BLOCKS) != 3 or any(x <= 0 or x & (x - 1) for x in MATMUL_BLOCKS):
            ap.error(f"--matmul-blocks: expected three powers of two like 64x64x32, got {args.matmul_blocks!r}")
    dev = spvjit.get_device()
    print(f"device: {dev.caps.name} ({dev.caps.driver_name}), numpy {np.__version__}")
    print(f"{'kernel':<12} {'size':<16} {'spvjit':>10} {'numpy':>10} {'unit':<8} {'ratio':>6}")
    results = []
    for name, size, fn in cases(args.quick, args.gpu):
        if args.only and args.only not in name:
            continue
        r = fn()
        if r is None:
            print(f"{name:<12} {size:<16} {'skipped (kernel not available)':>30}")
            continue
        unit, ours, ref = r[:3]
        note = r[3] if len(r) > 3 else ""
        results.append({"kernel": name, "size": size, "unit": unit, "spvjit": ours, "numpy": ref,
                        "ratio": ours / ref, "config": note})
        print(f"{name:<12} {size:<16} {ours:>10.2f} {ref:>10.2f} {unit:<8} {ours / ref:>6.2f}  {note}", flush=True)
    if args.json:
        text = json.dumps({"device": dev.caps.name, "results": results}, indent=1)
        if args.json == "-":
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text)
    if args.plot:
        labels = [f"{r['kernel']} {r['size']}" for r in results]
        bench = Benchmark(x_names=["case"], x_vals=list(range(len(results))), line_arg="who",
                          line_vals=["spvjit", "numpy"], line_names=["spvjit", "numpy"],
                          plot_name="spvjit vs numpy (" + ", ".join(sorted({r['unit'] for r in results})) + ")",
                          ylabel="throughput", xlabel=" | ".join(f"{i}: {l}" for i, l in enumerate(labels)),
                          y_log=True)
        report = perf_report(bench)(lambda case, who: results[case][who])
        report.run(print_data=False, save_path=args.plot)
        print(f"plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
