"""The cooperative-matrix lowering of `dot`, against a simulated device that has coopmat.

lavapipe has no cooperative matrices, so these tests compile for a capability
record describing an NVIDIA-like device and check the modules with spirv-val;
the GPU check script (benchmarks/gpu_check.sh) runs them for real.
"""
import dataclasses

import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit.codegen.compiler import compile_kernel
from spvjit.codegen.spirv.tools import disassemble, validate
from spvjit.runtime import CoopMatConfig, get_device


@spvjit.kernel
def dot_kernel(a_ptr, b_ptr, c_ptr, M: sl.constexpr, N: sl.constexpr, K: sl.constexpr, OUT_F16: sl.constexpr):
    rm = sl.arange(0, M)
    rn = sl.arange(0, N)
    rk = sl.arange(0, K)
    a = sl.load(a_ptr + rm[:, None] * K + rk[None, :])
    b = sl.load(b_ptr + rk[:, None] * N + rn[None, :])
    if OUT_F16:
        acc = sl.zeros((M, N), dtype=sl.float16)
        c = sl.dot(a, b, acc, out_dtype=sl.float16)
    else:
        c = sl.dot(a, b)
    sl.store(c_ptr + rm[:, None] * N + rn[None, :], c.to(sl.float32))


def nvidia_like(sg=32, configs=None):
    base = get_device().caps
    cfgs = configs or (CoopMatConfig(16, 16, 16, "f16", "f16", "f32", "f32", False, "subgroup"),
                       CoopMatConfig(16, 16, 16, "f16", "f16", "f16", "f16", False, "subgroup"))
    return dataclasses.replace(base, device_type="discrete", subgroup_size=sg, cooperative_matrix=cfgs,
                               max_shared_memory=48 * 1024, cooperative_matrix2=None)   # KHR shapes only


def _ir(M, N, K, out_f16):
    a = spvjit.empty((M, K), np.float16)
    b = spvjit.empty((K, N), np.float16)
    c = spvjit.empty((M, N), np.float32)
    return dot_kernel.ir_module(a, b, c, M=M, N=N, K=K, OUT_F16=out_f16)


@pytest.mark.parametrize("M,N,K,out_f16,warps", [(16, 16, 16, False, 1), (32, 64, 32, False, 4),
                                                 (64, 32, 64, True, 2)])
def test_coopmat_module_validates(M, N, K, out_f16, warps, monkeypatch):
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)   # gpu_check.sh runs with it set
    ck = compile_kernel(_ir(M, N, K, out_f16), nvidia_like(), num_warps=warps)
    validate(ck.spirv, target_env="vulkan1.3")
    text = disassemble(ck.spirv)
    assert "OpCooperativeMatrixMulAddKHR" in text and "CooperativeMatrixKHR" in text
    assert ck.workgroup_size == warps * 32


def test_coopmat_not_used_without_matching_config(monkeypatch):
    odd = (CoopMatConfig(16, 32, 16, "f16", "f16", "f32", "f32", False, "subgroup"),)
    ck = compile_kernel(_ir(16, 16, 16, False), nvidia_like(configs=odd), num_warps=1)
    assert "OpCooperativeMatrixMulAddKHR" not in disassemble(ck.spirv)
    monkeypatch.setenv("SPVJIT_DISABLE_COOPMAT", "1")
    ck = compile_kernel(_ir(16, 16, 16, False), nvidia_like(), num_warps=1)
    assert "OpCooperativeMatrixMulAddKHR" not in disassemble(ck.spirv)
    validate(ck.spirv, target_env="vulkan1.3")


@pytest.mark.parametrize("out_f16", [False, True])
def test_dot_meaning_unchanged_in_interpreter_and_device(out_f16):
    # the same kernel the coopmat path compiles, run where it can run: numbers match numpy
    rng = np.random.default_rng(1)
    M = N = K = 16
    a = rng.standard_normal((M, K)).astype(np.float16)
    b = rng.standard_normal((K, N)).astype(np.float16)
    ref = a.astype(np.float32) @ b.astype(np.float32)
    for k in (dot_kernel, spvjit.interpret(dot_kernel)):
        c = spvjit.zeros((M, N), np.float32)
        k[(1,)](spvjit.tensor(a), spvjit.tensor(b), c, M=M, N=N, K=K, OUT_F16=out_f16)
        # f16 inputs, f32 sums of 16 products; with an f16 accumulator each add rounds (2^-11 rel)
        tol = 2e-2 if out_f16 else 1e-5
        np.testing.assert_allclose(c.numpy(), ref, rtol=tol, atol=tol)


# ---- loop-resident accumulators ----------------------------------------------------------

@spvjit.kernel
def kloop_matmul(a_ptr, b_ptr, c_ptr, M, N, K, BM: sl.constexpr, BN: sl.constexpr, BK: sl.constexpr,
                 ACC_F16: sl.constexpr):
    # Triton's tutorial shape: masks on M and N, a K loop carrying the accumulator
    pid_m = sl.program_id(0)
    pid_n = sl.program_id(1)
    rm = pid_m * BM + sl.arange(0, BM)
    rn = pid_n * BN + sl.arange(0, BN)
    rk = sl.arange(0, BK)
    if ACC_F16:
        acc = sl.zeros((BM, BN), dtype=sl.float16)
    else:
        acc = sl.zeros((BM, BN), dtype=sl.float32)
    for k in range(0, K, BK):
        a = sl.load(a_ptr + rm[:, None] * K + (k + rk)[None, :], mask=rm[:, None] < M, other=0.0)
        b = sl.load(b_ptr + (k + rk)[:, None] * N + rn[None, :], mask=rn[None, :] < N, other=0.0)
        if ACC_F16:
            acc = sl.dot(a, b, acc, out_dtype=sl.float16)
        else:
            acc = sl.dot(a, b, acc)
    acc = acc * 0.5
    sl.store(c_ptr + rm[:, None] * N + rn[None, :], acc.to(sl.float32), mask=(rm[:, None] < M) & (rn[None, :] < N))


@spvjit.jit
def kloop_acc(a_ptr, b_ptr, K, BM: sl.constexpr, BN: sl.constexpr, BK: sl.constexpr, ACC: sl.constexpr):
    """A @ B for row-major A [BM, K] and B [K, BN] (K a multiple of BK), one dot per BK step,
    accumulated in ACC: the loop the K-loop test kernels share."""
    rm = sl.arange(0, BM)
    rn = sl.arange(0, BN)
    rk = sl.arange(0, BK)
    acc = sl.zeros((BM, BN), dtype=ACC)
    for k in range(0, K, BK):
        a = sl.load(a_ptr + rm[:, None] * K + (k + rk)[None, :])
        b = sl.load(b_ptr + (k + rk)[:, None] * BN + rn[None, :])
        acc = sl.dot(a, b, acc)
    return acc


@spvjit.kernel
def kloop_matmul_i8(a_ptr, b_ptr, c_ptr, K, BM: sl.constexpr, BN: sl.constexpr, BK: sl.constexpr):
    acc = kloop_acc(a_ptr, b_ptr, K, BM, BN, BK, sl.int32)
    sl.store(c_ptr + sl.arange(0, BM)[:, None] * BN + sl.arange(0, BN)[None, :], acc)


def _kloop_args(M, N, K, rng=None):
    rng = rng or np.random.default_rng(7)
    a = rng.standard_normal((M, K)).astype(np.float16)
    b = rng.standard_normal((K, N)).astype(np.float16)
    return a, b


def _coop_types_and_phis(spirv: bytes):
    text = disassemble(spirv)
    coop_types = {line.split("=")[0].strip() for line in text.splitlines()
                  if "OpTypeCooperativeMatrixKHR" in line and "=" in line}
    phi_types = [line.split()[3] for line in text.splitlines() if " OpPhi " in line]
    return text, coop_types, phi_types


@pytest.mark.parametrize("acc_f16,warps", [(False, 1), (False, 4), (True, 2)])
def test_kloop_accumulator_is_carried_as_cooperative_matrices(monkeypatch, acc_f16, warps):
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    a = spvjit.empty((64, 64), np.float16)
    c = spvjit.empty((64, 64), np.float32)
    ir = kloop_matmul.ir_module(a, a, c, 64, 64, 64, BM=64, BN=32, BK=32, ACC_F16=acc_f16)
    ck = compile_kernel(ir, nvidia_like(), num_warps=warps)
    validate(ck.spirv, target_env="vulkan1.3")
    text, coop_types, phi_types = _coop_types_and_phis(ck.spirv)
    carried = [t for t in phi_types if t in coop_types]
    # 64x32 in 16x16 tiles = 8 tiles, 8 / warps of them per subgroup, each a loop phi
    assert len(carried) == 8 // warps, text
    # the accumulator enters the matrix layout without a shared-memory round trip (a splat)
    assert "OpCompositeConstruct" in text
    if warps == 1:     # (more subgroups also move index tiles through shared memory)
        # double-buffered A/B: one barrier per K step; after the loop the scaled accumulator is
        # stored tile by tile (coopmat_epilogue.py), with one barrier before the ragged-edge path
        workgroup_barriers = text.count("OpControlBarrier %uint_2 %uint_2")
        assert workgroup_barriers == 2, text
        assert "OpMatrixTimesScalar" in text and "OpCooperativeMatrixStoreKHR" in text


def _coopmat_device_or_skip():
    dev = get_device()
    if not dev.kernel_caps.cooperative_matrix:
        if spvjit.knobs.get("SPVJIT_REQUIRE_COOPMAT"):
            pytest.fail(f"{dev.caps.name} reports no cooperative matrices, and SPVJIT_REQUIRE_COOPMAT is set")
        pytest.skip(f"{dev.caps.name} has no cooperative matrices (run under scripts/coopmat-env)")
    return dev


@pytest.mark.parametrize("M,N,K,BM,BN,BK,acc_f16,warps", [
    (16, 16, 16, 16, 16, 16, False, 1),
    (40, 24, 64, 16, 16, 32, False, 1),       # masked edges in M and N, two K steps
    (64, 64, 96, 32, 32, 32, False, 4),       # several subgroups
    (32, 48, 64, 32, 16, 16, True, 2),        # f16 accumulator
])
def test_kloop_matmul_on_a_coopmat_device(M, N, K, BM, BN, BK, acc_f16, warps, monkeypatch):
    _coopmat_device_or_skip()
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    a, b = _kloop_args(M, N, K)
    ref = 0.5 * (a.astype(np.float64) @ b.astype(np.float64))
    grid = (spvjit.cdiv(M, BM), spvjit.cdiv(N, BN))
    outs = {}
    for coop in (True, False):
        if not coop:
            monkeypatch.setenv("SPVJIT_DISABLE_COOPMAT", "1")
        c = spvjit.zeros((M, N), np.float32)
        kloop_matmul[grid](spvjit.tensor(a), spvjit.tensor(b), c, M, N, K, BM=BM, BN=BN, BK=BK,
                           ACC_F16=acc_f16, num_warps=warps)
        outs[coop] = c.numpy()
    # f16 products are exact in f32; f32 sums of K terms of size ~1 round at 2^-24 each.
    # With an f16 accumulator every add rounds at 2^-11 relative to |acc| <= ~sqrt(K)*4.
    tol = 0.25 if acc_f16 else 1e-4
    np.testing.assert_allclose(outs[True], ref, atol=tol, rtol=tol)
    np.testing.assert_allclose(outs[True], outs[False], atol=tol, rtol=tol)


def test_i8_kloop_matmul_on_a_coopmat_device(monkeypatch):
    dev = _coopmat_device_or_skip()
    if not any(c.a_type == "i8" for c in dev.kernel_caps.cooperative_matrix):
        pytest.skip("no i8 cooperative matrices")
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    rng = np.random.default_rng(3)
    BM, BN, BK, K = 16, 16, 16, 48
    a = rng.integers(-128, 128, (BM, K), dtype=np.int8)
    b = rng.integers(-128, 128, (K, BN), dtype=np.int8)
    c = spvjit.zeros((BM, BN), np.int32)
    kloop_matmul_i8[(1,)](spvjit.tensor(a), spvjit.tensor(b), c, K, BM=BM, BN=BN, BK=BK)
    np.testing.assert_array_equal(c.numpy(), a.astype(np.int32) @ b.astype(np.int32))     # exact


@spvjit.kernel
def kloop_matmul_plus_equals(a_ptr, b_ptr, c_ptr, K, BM: sl.constexpr, BN: sl.constexpr, BK: sl.constexpr):
    # the older tutorial form: acc += dot(a, b)
    rm = sl.arange(0, BM)
    rn = sl.arange(0, BN)
    rk = sl.arange(0, BK)
    acc = sl.zeros((BM, BN), dtype=sl.float32)
    for k in range(0, K, BK):
        a = sl.load(a_ptr + rm[:, None] * K + (k + rk)[None, :])
        b = sl.load(b_ptr + (k + rk)[:, None] * BN + rn[None, :])
        acc += sl.dot(a, b)
    sl.store(c_ptr + rm[:, None] * BN + rn[None, :], acc)


def test_plus_equals_dot_folds_into_the_accumulator(monkeypatch):
    from spvjit.ir.passes import run_passes
    from spvjit.ir.printer import print_kernel
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    a = spvjit.empty((32, 64), np.float16)
    c = spvjit.empty((32, 32), np.float32)
    ir = run_passes(kloop_matmul_plus_equals.ir_module(a, a, c, 64, BM=32, BN=32, BK=32))
    text = print_kernel(ir)
    assert text.count(" dot ") == 1, text
    assert not [line for line in text.splitlines() if " add " in line and "32x32xf32" in line], text
    ck = compile_kernel(ir, nvidia_like(), num_warps=1)
    validate(ck.spirv, target_env="vulkan1.3")
    _, coop_types, phi_types = _coop_types_and_phis(ck.spirv)
    assert sum(t in coop_types for t in phi_types) == 4      # 32x32 in 16x16 tiles


def test_plus_equals_dot_matches_numpy_on_every_device():
    # the rewritten kernel, wherever it runs (coopmat or not), against numpy
    rng = np.random.default_rng(5)
    a = rng.standard_normal((16, 48)).astype(np.float16)
    b = rng.standard_normal((48, 16)).astype(np.float16)
    c = spvjit.zeros((16, 16), np.float32)
    kloop_matmul_plus_equals[(1,)](spvjit.tensor(a), spvjit.tensor(b), c, 48, BM=16, BN=16, BK=16)
    # f16 products are exact in f32; 48 f32 adds of terms ~1 stay within 1e-4
    np.testing.assert_allclose(c.numpy(), a.astype(np.float64) @ b.astype(np.float64), atol=1e-4, rtol=1e-4)
