#!/usr/bin/env python3
"""Tutorial 06 (fused attention): cold compile of each kernel, and the forward's speed vs numpy.

    .venv/bin/python benchmarks/attention_compile.py [--reps 3] [--blocks 16x16,32x64]
        [--head-dim 16] [--ctx 64] [--only attn_bwd_dkdv] [--speed-ctx 1024]
        [--speed-bwd 32x128,128x32]

The kernels are tests/test_triton_tutorials.py's, unchanged (causal).  For each block size
and kernel: the SPIR-V size in words, spvjit's own compile seconds, and the driver's
(lavapipe compiles at the first dispatch; Mesa's shader cache is off, and each repetition
starts from an empty SPVJIT_CACHE_DIR and a fresh JITFunction), with the process CPU seconds
of that first dispatch beside its wall time: on a shared machine the wall time mostly says
how busy the host was.  Medians of --reps.  Then the forward at --speed-ctx tokens (Z=1,
H=2) against numpy's float32 softmax(Q K^T) V measured in the same run, and with --speed-bwd
the backward (dK/dV, then dQ, at the two block pairs given; the tutorial's own are 32x128 and
128x32) against numpy's float32 gradients from the same softmax.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time

os.environ["MESA_SHADER_CACHE_DISABLE"] = "true"
os.environ["SPVJIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="spvjit-attn-")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import numpy as np  # noqa: E402

import spvjit  # noqa: E402
from spvjit import compiler  # noqa: E402
from spvjit.loop_limit import loop_iteration_limit  # noqa: E402
from spvjit.testing import do_bench, do_bench_wall  # noqa: E402
import test_triton_tutorials as tut  # noqa: E402

KERNELS = ("attn_fwd", "attn_bwd_dkdv", "attn_bwd_dq")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Inputs:
    """Device tensors and launch arguments of the forward and backward kernels."""

    def __init__(self, n_ctx, head_dim, bm, bn, seed=0):
        Z, H = 1, 2
        rng = np.random.default_rng(seed)
        self.host = [rng.normal(0.0, 0.5, (Z, H, n_ctx, head_dim)).astype(np.float16) for _ in range(4)]
        self.q, self.k, self.v, self.do = (spvjit.tensor(x) for x in self.host)
        self.o = spvjit.empty_like(self.q)
        self.lse = spvjit.empty((Z * H, n_ctx), np.float32)
        self.delta = spvjit.empty_like(self.lse)
        self.dq, self.dk, self.dv = (spvjit.empty_like(self.q) for _ in range(3))
        self.H, self.n_ctx, self.Z = H, n_ctx, Z
        self.meta = dict(BLOCK_M=bm, BLOCK_N=bn, HEAD_DIM=head_dim, CAUSAL=True)

    def launcher(self, name, kern):
        q, meta, n = self.q, self.meta, self.n_ctx
        if name == "attn_fwd":
            strides = [t.stride(i) for t in (q, self.k, self.v, self.o) for i in range(4)]
            grid = (spvjit.cdiv(n, meta["BLOCK_M"]), self.Z * self.H)
            return lambda: kern[grid](q, self.k, self.v, 0.5, self.lse, self.o, *strides, self.H, n, **meta)
        common = (q.stride(0), q.stride(1), q.stride(2), q.stride(3), self.H, n)
        if name == "attn_bwd_dkdv":
            grid = (spvjit.cdiv(n, meta["BLOCK_N"]), self.Z * self.H)
            return lambda: kern[grid](q, self.k, self.v, 0.5, self.do, self.dk, self.dv, self.lse,
                                      self.delta, *common, **meta)
        grid = (spvjit.cdiv(n, meta["BLOCK_M"]), self.Z * self.H)
        return lambda: kern[grid](q, self.k, self.v, 0.5, self.do, self.dq, self.lse, self.delta,
                                  *common, **meta)


def cold_compile(name, inputs, reps):
    """Medians of (words, spvjit s, driver wall s, driver cpu s) over `reps` cold compiles."""
    words, ours, drv, drv_cpu = [], [], [], []
    hook = lambda ck: words.append(len(ck.spirv) // 4) if ck.name == name else None  # noqa: E731
    compiler.compile_hooks.append(hook)
    try:
        for _ in range(reps):
            os.environ["SPVJIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="spvjit-attn-")
            kern = spvjit.JITFunction(getattr(tut, name).fn)
            run = inputs.launcher(name, kern)
            c0, t0 = _cpu(), time.perf_counter()
            run()
            wall, cpu = time.perf_counter() - t0, _cpu() - c0
            ours.append(kern.compile_seconds[-1])
            drv.append(wall - ours[-1])
            drv_cpu.append(cpu - ours[-1])
    finally:
        compiler.compile_hooks.remove(hook)
    med = statistics.median
    return med(words), med(ours), med(drv), med(drv_cpu)


def forward_speed(n_ctx, head_dim, bm, bn):
    """(spvjit ms, numpy ms, max |error|) of the causal forward at n_ctx tokens."""
    inp = Inputs(n_ctx, head_dim, bm, bn, seed=1)
    run = inp.launcher("attn_fwd", tut.attn_fwd)
    run()
    q, k, v = (x[0].astype(np.float32) for x in inp.host[:3])
    mask = np.tril(np.ones((n_ctx, n_ctx), bool))

    def reference():
        s = np.einsum("hmd,hnd->hmn", q, k) * np.float32(0.5)
        s = np.where(mask, s, -np.inf)
        p = np.exp(s - s.max(-1, keepdims=True))
        return (p / p.sum(-1, keepdims=True)) @ v

    want = reference()
    err = float(np.abs(inp.o.numpy()[0].astype(np.float32) - want).max())
    return do_bench(run, rep=5), do_bench_wall(reference, rep=5), err


def backward_speed(n_ctx, head_dim, dkdv_blocks, dq_blocks):
    """(spvjit ms of dK/dV plus dQ, numpy ms, max |error| of dq, dk, dv) of the causal backward
    at n_ctx tokens, from the forward's lse and Delta = rowsum(O * dO)."""
    inp = Inputs(n_ctx, head_dim, 16, 16, seed=2)
    inp.launcher("attn_fwd", tut.attn_fwd)()
    q, k, v, do = (x[0].astype(np.float32) for x in inp.host)
    delta = (inp.o.numpy()[0].astype(np.float32) * do).sum(-1)
    inp.delta = spvjit.tensor(delta.reshape(inp.Z * inp.H, n_ctx).astype(np.float32))
    runs = []
    for name, (bm, bn) in (("attn_bwd_dkdv", dkdv_blocks), ("attn_bwd_dq", dq_blocks)):
        inp.meta = dict(inp.meta, BLOCK_M=bm, BLOCK_N=bn)     # a launcher keeps the dict it saw
        runs.append(inp.launcher(name, getattr(tut, name)))
    for run in runs:
        run()
    mask = np.tril(np.ones((n_ctx, n_ctx), bool))
    scale = np.float32(0.5)

    def reference():
        s = np.where(mask, np.einsum("hmd,hnd->hmn", q, k) * scale, -np.inf)
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        dv = np.swapaxes(p, -1, -2) @ do
        ds = p * (do @ np.swapaxes(v, -1, -2) - delta[..., None])
        return ds @ k * scale, np.swapaxes(ds, -1, -2) @ q * scale, dv

    want = reference()
    got = (inp.dq.numpy()[0], inp.dk.numpy()[0], inp.dv.numpy()[0])
    # np.max propagates a NaN (Python's max would drop it, depending on the order)
    err = float(np.max([np.abs(g.astype(np.float32) - w).max() for g, w in zip(got, want)]))
    return do_bench(lambda: [run() for run in runs], rep=5), do_bench_wall(reference, rep=5), err


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3, help="cold compiles per kernel (median)")
    ap.add_argument("--blocks", default="16x16", help="BLOCK_MxBLOCK_N pairs, comma-separated")
    ap.add_argument("--head-dim", type=int, default=16)
    ap.add_argument("--ctx", type=int, default=64, help="N_CTX of the compile runs")
    ap.add_argument("--only", help="comma-separated kernel names (default: all three)")
    ap.add_argument("--speed-ctx", type=int, default=1024, help="N_CTX of the forward's speed run (0: skip)")
    ap.add_argument("--speed-bwd", help="dK/dV and dQ blocks (like 32x128,128x32): also time the "
                    "backward at --speed-ctx tokens")
    args = ap.parse_args(argv)
    bwd = None
    if args.speed_bwd:
        try:
            bwd = [tuple(int(x) for x in b.lower().split("x")) for b in args.speed_bwd.split(",")]
            if len(bwd) != 2 or any(len(b) != 2 or min(b) <= 0 for b in bwd):
                raise ValueError
        except ValueError:
            ap.error(f"--speed-bwd: expected two pairs like 32x128,128x32, got {args.speed_bwd!r}")
        if not args.speed_ctx:
            ap.error("--speed-bwd needs --speed-ctx > 0")
    try:
        blocks = [tuple(int(x) for x in b.lower().split("x")) for b in args.blocks.split(",")]
        if any(len(b) != 2 or min(b) <= 0 for b in blocks):
            raise ValueError
    except ValueError:
        ap.error(f"--blocks: expected pairs like 16x16,32x64, got {args.blocks!r}")
    names = args.only.split(",") if args.only else list(KERNELS)
    if set(names) - set(KERNELS):
        ap.error(f"--only: kernels are {', '.join(KERNELS)}")
    if args.reps <= 0 or args.head_dim <= 0 or args.ctx <= 0 or args.speed_ctx < 0:
        ap.error("--reps, --head-dim and --ctx must be positive, --speed-ctx >= 0")
    dev = spvjit.get_device()
    loop_iteration_limit(dev)          # measured once per device, outside the timings
    print(f"device: {dev.caps.name}; N_CTX={args.ctx}, HEAD_DIM={args.head_dim}, causal; "
          f"median of {args.reps} cold compiles; host load {os.getloadavg()[0]:.1f}")
    print(f"{'kernel':<15} {'blocks':>7} {'SPIR-V words':>13} {'spvjit':>8} {'driver':>8} {'driver cpu':>11}")
    for bm, bn in blocks:
        inputs = Inputs(args.ctx, args.head_dim, bm, bn)
        for name in names:
            try:
                w, ours, drv, cpu = cold_compile(name, inputs, args.reps)
            except Exception as e:      # a block size the kernel or the device refuses
                print(f"{name:<15} {f'{bm}x{bn}':>7} failed: {str(e).splitlines()[0]}")
                continue
            print(f"{name:<15} {f'{bm}x{bn}':>7} {w:>13.0f} {ours:>7.2f}s {drv:>7.2f}s {cpu:>10.2f}s")
    if args.speed_ctx:
        bm, bn = blocks[0]
        ms, ref_ms, err = forward_speed(args.speed_ctx, args.head_dim, bm, bn)
        # two matmuls of 2*N*N*D flops per head, 2 heads; causal masking skips half
        flops = 2 * (2 * 2 * args.speed_ctx ** 2 * args.head_dim) / 2
        print(f"forward N_CTX={args.speed_ctx} blocks {bm}x{bn}: spvjit {ms:.2f} ms "
              f"({flops / ms / 1e6:.2f} GFLOP/s), numpy {ref_ms:.2f} ms, ratio {ref_ms / ms:.2f}; "
              f"max |error| {err:.1e}")
        if not err <= 1e-2:      # f16 output and P rounded to f16: errors stay ~1e-3 (NaN fails too)
            print("WRONG RESULT")
            return 1
    if bwd:
        ms, ref_ms, err = backward_speed(args.speed_ctx, args.head_dim, *bwd)
        # five matmuls of 2*N*N*D flops per head, 2 heads; causal masking skips half
        flops = 5 * (2 * 2 * args.speed_ctx ** 2 * args.head_dim) / 2
        print(f"backward N_CTX={args.speed_ctx} blocks dK/dV {bwd[0][0]}x{bwd[0][1]}, dQ {bwd[1][0]}x{bwd[1][1]}: "
              f"spvjit {ms:.2f} ms ({flops / ms / 1e6:.2f} GFLOP/s), numpy {ref_ms:.2f} ms, "
              f"ratio {ref_ms / ms:.2f}; max |error| {err:.1e}")
        if not err <= 2e-2:      # f16 dq/dk/dv, dS rounded to f16 (the test's 1e-2 at N_CTX 64); NaN fails
            print("WRONG RESULT")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
