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
                               max_shared_memory=48 * 1024)


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
