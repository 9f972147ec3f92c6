"""GPU-style lowering (several subgroups per program), run for real on whatever device is here.

On lavapipe a program is one subgroup, so the multi-subgroup paths a GPU takes (subgroup
reductions plus shared-memory partials, cooperative-matrix tiles owned per subgroup) would
otherwise only run on a lent GPU.  These tests compile for a Target that says "discrete
GPU with this device's subgroup size", so a 4-warp program becomes 128 invocations in
16 subgroups of 8 on lavapipe, and dispatch the module on the real device.
"""
import dataclasses

import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit.codegen.compiler import compile_kernel
from spvjit.codegen.spirv.tools import disassemble
from spvjit.codegen.target import Target
from spvjit.compiler import DeviceKernel, _build_ir
from spvjit.launch import launch_on_device
from spvjit.runtime import get_device


def gpu_like_target():
    caps = get_device().caps
    return dataclasses.replace(Target.of(caps), device_type="discrete", max_texel_buffer_elements=0)


def run_as_gpu(jitfn, grid, *args, **kwargs):
    """Launch `jitfn` compiled for gpu_like_target() on the real device; returns the module."""
    spec, _ = jitfn.specialize(list(args), dict(kwargs))
    ck = compile_kernel(_build_ir(jitfn, spec, optimize=True), gpu_like_target(), spec.num_warps,
                        spec.divisibility or {})
    dev = get_device()
    pipe = dev.create_pipeline(ck.spirv, [bd.kind for bd in ck.bindings], ck.push_size)
    launch_on_device(DeviceKernel(ck, pipe), spec, tuple(grid) + (1,) * (3 - len(grid)), dev, jitfn.__name__)
    return ck


@spvjit.kernel
def row_reduce(x_ptr, out_ptr, idx_ptr, n_cols, BLOCK: sl.constexpr, KIND: sl.constexpr):
    row = sl.program_id(0)
    cols = sl.arange(0, BLOCK)
    mask = cols < n_cols
    if KIND == "sum":
        x = sl.load(x_ptr + row * n_cols + cols, mask=mask, other=0.0)
        sl.store(out_ptr + row, sl.sum(x, axis=0))
    elif KIND == "max":
        x = sl.load(x_ptr + row * n_cols + cols, mask=mask, other=-float("inf"))
        sl.store(out_ptr + row, sl.max(x, axis=0))
        sl.store(idx_ptr + row, sl.argmax(x, axis=0))
    else:
        x = sl.load(x_ptr + row * n_cols + cols, mask=mask, other=float("inf"))
        sl.store(out_ptr + row, sl.min(x, axis=0))


@pytest.mark.parametrize("kind", ["sum", "max", "min"])
@pytest.mark.parametrize("n_cols,block,warps", [(1000, 1024, 4), (64, 64, 2), (300, 512, 8)])
def test_row_reductions_across_subgroups(kind, n_cols, block, warps):
    if get_device().caps.subgroup_size * 2 > warps * 32:
        pytest.skip("one subgroup per program here: nothing crosses subgroups")
    rng = np.random.default_rng(n_cols)
    rows = 6
    x = rng.standard_normal((rows, n_cols)).astype(np.float32)
    x[1, n_cols // 3] = x[1].max() + 1.0       # a clear maximum, and a tie for argmax below
    x[2, 5] = x[2, n_cols - 1] = x[2].max() + 2.0
    out = spvjit.zeros(rows, np.float32)
    idx = spvjit.zeros(rows, np.int32)
    ck = run_as_gpu(row_reduce, (rows,), spvjit.tensor(x), out, idx, n_cols, BLOCK=block, KIND=kind,
                    num_warps=warps)
    assert ck.workgroup_size == warps * 32
    assert "OpGroupNonUniform" in disassemble(ck.spirv)        # subgroup reductions, not W loads each
    if kind == "sum":
        # f32 partial sums of <= 1024 terms ~N(0,1): a few ulps of sqrt(n)-sized sums
        np.testing.assert_allclose(out.numpy(), x.sum(axis=1), rtol=1e-5, atol=1e-4)
    elif kind == "max":
        np.testing.assert_array_equal(out.numpy(), x.max(axis=1))
        np.testing.assert_array_equal(idx.numpy(), x.argmax(axis=1))     # ties: the first index
    else:
        np.testing.assert_array_equal(out.numpy(), x.min(axis=1))


@pytest.mark.coopmat
@pytest.mark.parametrize("BM,BN,BK,warps", [(32, 32, 16, 4), (16, 64, 32, 2), (32, 64, 32, 8)])
def test_kloop_matmul_with_several_subgroups_owning_tiles(BM, BN, BK, warps, monkeypatch):
    """Each subgroup owns every S-th output tile and carries it across the K loop."""
    from test_coopmat import _coopmat_device_or_skip, kloop_matmul
    _coopmat_device_or_skip()
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    M, N, K = 2 * BM - 3, BN + 5, 3 * BK
    rng = np.random.default_rng(11)
    a = rng.standard_normal((M, K)).astype(np.float16)
    b = rng.standard_normal((K, N)).astype(np.float16)
    c = spvjit.zeros((M, N), np.float32)
    grid = (spvjit.cdiv(M, BM), spvjit.cdiv(N, BN))
    ck = run_as_gpu(kloop_matmul, grid, spvjit.tensor(a), spvjit.tensor(b), c, M, N, K, BM=BM, BN=BN, BK=BK,
                    ACC_F16=False, num_warps=warps)
    text = disassemble(ck.spirv)
    assert "OpCooperativeMatrixMulAddKHR" in text and ck.workgroup_size == warps * 32
    ref = 0.5 * (a.astype(np.float64) @ b.astype(np.float64))
    # f16 products are exact in f32; 3*BK f32 adds of terms ~1 stay within 1e-4
    np.testing.assert_allclose(c.numpy(), ref, atol=1e-4, rtol=1e-4)


# ---- Triton's tutorial kernels, lowered as for a GPU -------------------------------------

def test_tutorial_matmul_as_on_a_gpu():
    """Index tiles (`offs[:, None] * stride`, masks) are recomputed per lane instead of moved
    through shared memory with barriers; results must not change."""
    from tutorial_kernels import matmul_kernel
    M, N, K = 70, 45, 80
    rng = np.random.default_rng(2)
    a = rng.standard_normal((M, K)).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    c = spvjit.empty((M, N), np.float16)
    BM, BN, BK = 32, 32, 16
    grid = (spvjit.cdiv(M, BM) * spvjit.cdiv(N, BN),)
    ck = run_as_gpu(matmul_kernel, grid, spvjit.tensor(a), spvjit.tensor(b), c, M, N, K, K, 1, N, 1, N, 1,
                    BLOCK_SIZE_M=BM, BLOCK_SIZE_N=BN, BLOCK_SIZE_K=BK, GROUP_SIZE_M=4, ACTIVATION="leaky_relu",
                    num_warps=4)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    ref = np.where(ref >= 0, ref, 0.01 * ref)
    # f32 accumulation over K = 80 terms of N(0,1) products, then rounding to f16 (rel 2^-11)
    np.testing.assert_allclose(c.numpy().astype(np.float64), ref, rtol=2e-3, atol=2e-3)
    # the loads' index tiles no longer go through shared memory: only the dot's staging barriers
    assert disassemble(ck.spirv).count("OpControlBarrier") <= 6


def test_tutorial_layer_norm_as_on_a_gpu():
    from tutorial_kernels import _layer_norm_fwd_fused
    M, N = 5, 700
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((M, N)) * 2 + 0.5).astype(np.float32)
    w, b = rng.random(N, np.float32), rng.random(N, np.float32)
    y, mean, rstd = spvjit.empty((M, N), np.float32), spvjit.empty(M, np.float32), spvjit.empty(M, np.float32)
    run_as_gpu(_layer_norm_fwd_fused, (M,), spvjit.tensor(x), y, spvjit.tensor(w), spvjit.tensor(b), mean, rstd,
               N, N, 1e-5, BLOCK_SIZE=256, num_warps=4)
    mu, var = x.astype(np.float64).mean(1), x.astype(np.float64).var(1)
    ref = (x - mu[:, None]) / np.sqrt(var[:, None] + 1e-5) * w + b
    # f32 sums of 700 terms and one rsqrt: well within 1e-4 relative
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(mean.numpy(), mu, rtol=1e-5, atol=1e-5)


def test_tutorial_softmax_as_on_a_gpu():
    from tutorial_kernels import softmax_kernel
    rows, cols = 9, 781
    x = np.random.default_rng(4).standard_normal((rows, cols)).astype(np.float32)
    out = spvjit.empty((rows, cols), np.float32)
    run_as_gpu(softmax_kernel, (4,), out, spvjit.tensor(x), cols, cols, rows, cols, BLOCK_SIZE=1024,
               num_stages=1, num_warps=4)
    e = np.exp(x - x.max(1, keepdims=True))
    # exp and a sum of <= 1024 terms in f32: relative error well under 1e-5
    np.testing.assert_allclose(out.numpy(), e / e.sum(1, keepdims=True), rtol=2e-5, atol=1e-7)


@spvjit.kernel
def index_exprs(out_ptr, M, N, s, BM: sl.constexpr, BN: sl.constexpr, EXPR: sl.constexpr):
    rm = sl.program_id(0) * BM + sl.arange(0, BM)
    rn = sl.arange(0, BN)
    if EXPR == 0:
        v = rm[:, None] * s + rn[None, :]
    elif EXPR == 1:
        v = (rm[:, None] % 7) * (rn[None, :] // 3) - s
    elif EXPR == 2:
        v = sl.where((rm[:, None] < M) & (rn[None, :] >= 5), rm[:, None] - rn[None, :], -1)
    elif EXPR == 3:
        t = (rn[:, None] + 2 * rm[None, :])          # [BN, BM], then transposed
        v = sl.trans(t) ^ (rm[:, None] << 1)
    else:
        v = sl.maximum(rm[:, None], rn[None, :] * 3).to(sl.float32).to(sl.int32)
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    sl.store(out_ptr + rm[:, None] * N + rn[None, :], v, mask=mask)


def _index_ref(expr, M, N, s):
    rm, rn = np.arange(M)[:, None], np.arange(N)[None, :]
    return [rm * s + rn, (rm % 7) * (rn // 3) - s, np.where((rm < M) & (rn >= 5), rm - rn, -1),
            (rn + 2 * rm) ^ (rm << 1), np.maximum(rm, rn * 3)][expr].astype(np.int32)


@pytest.mark.parametrize("expr", range(5))
@pytest.mark.parametrize("BM,BN,warps", [(16, 32, 4), (32, 8, 2), (8, 64, 8)])
def test_index_tiles_recomputed_per_lane_match_numpy(expr, BM, BN, warps):
    M, N, s = 37, BN - 3, 5
    out = spvjit.zeros((M, N), np.int32)
    ck = run_as_gpu(index_exprs, (spvjit.cdiv(M, BM),), out, M, N, s, BM=BM, BN=BN, EXPR=expr, num_warps=warps)
    np.testing.assert_array_equal(out.numpy(), _index_ref(expr, M, N, s))     # integers: exact
    assert disassemble(ck.spirv).count("OpControlBarrier") == 0      # nothing moved through shared memory


@spvjit.kernel
def broadcast_of_loop_result(out_ptr, n, BM: sl.constexpr, BN: sl.constexpr):
    rows = sl.arange(0, BM)
    acc = sl.zeros((BM,), dtype=sl.int32)
    for i in range(0, n):
        acc += rows + i
    v = acc[:, None] * 10 + sl.arange(0, BN)[None, :]       # a loop result cannot be recomputed: moved
    sl.store(out_ptr + rows[:, None] * BN + sl.arange(0, BN)[None, :], v)


def test_values_from_loops_are_moved_not_recomputed():
    BM, BN, n = 16, 32, 3
    out = spvjit.zeros((BM, BN), np.int32)
    run_as_gpu(broadcast_of_loop_result, (1,), out, n, BM=BM, BN=BN, num_warps=4)
    acc = sum(np.arange(BM) + i for i in range(n))
    np.testing.assert_array_equal(out.numpy(), acc[:, None] * 10 + np.arange(BN)[None, :])
