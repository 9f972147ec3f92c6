"""Epilogues and stores on cooperative matrices (codegen/coopmat_epilogue.py).

Numbers: each epilogue on a coopmat device (Mesa 26.1 lavapipe under scripts/coopmat-env)
against the same kernel with SPVJIT_DISABLE_COOPMAT=1 and against numpy.  SPIR-V: compiled
for a target with lavapipe 26.1's configurations (so it runs on every machine), the epilogue
ops take and give cooperative-matrix types and the store is OpCooperativeMatrixStoreKHR into
the storage buffer, with no trip through the shared conversion array.
"""
import dataclasses
import re

import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit.codegen.compiler import compile_kernel
from spvjit.codegen.spirv.tools import disassemble, validate
from spvjit.runtime import CoopMatConfig, get_device

pytestmark = pytest.mark.coopmat

LAVAPIPE_26 = (CoopMatConfig(8, 8, 8, "f16", "f16", "f16", "f16", False, "subgroup"),
               CoopMatConfig(8, 8, 8, "f16", "f16", "f32", "f32", False, "subgroup"),
               CoopMatConfig(8, 8, 8, "i8", "i8", "i32", "i32", False, "subgroup"),
               CoopMatConfig(8, 8, 8, "u8", "u8", "u32", "u32", False, "subgroup"))


@spvjit.kernel
def epilogue_matmul(a_ptr, b_ptr, c_ptr, v_ptr, M, N, K, alpha, BM: sl.constexpr, BN: sl.constexpr,
                    BK: sl.constexpr, EPI: sl.constexpr, MASKED: sl.constexpr, OUT_F16: sl.constexpr):
    rm = sl.program_id(0) * BM + sl.arange(0, BM)
    rn = sl.program_id(1) * BN + sl.arange(0, BN)
    rk = sl.arange(0, BK)
    acc = sl.zeros((BM, BN), dtype=sl.float32)
    for k in range(0, K, BK):
        if MASKED:
            a = sl.load(a_ptr + rm[:, None] * K + (k + rk)[None, :], mask=rm[:, None] < M, other=0.0)
            b = sl.load(b_ptr + (k + rk)[:, None] * N + rn[None, :], mask=rn[None, :] < N, other=0.0)
        else:
            a = sl.load(a_ptr + rm[:, None] * K + (k + rk)[None, :])
            b = sl.load(b_ptr + (k + rk)[:, None] * N + rn[None, :])
        acc = sl.dot(a, b, acc)
    if EPI == "scale":
        acc = acc * alpha
    elif EPI == "add":
        acc = acc + alpha
    elif EPI == "relu":
        acc = sl.maximum(acc, 0.0)
    elif EPI == "sigmoid":
        acc = sl.sigmoid(acc)
    elif EPI == "bias_row":
        acc = acc + sl.load(v_ptr + rn, mask=rn < N, other=0.0)[None, :]
    elif EPI == "scale_rows":
        acc = acc * sl.load(v_ptr + rm, mask=rm < M, other=0.0)[:, None]
    elif EPI == "chain":
        acc = sl.maximum(acc * alpha + sl.load(v_ptr + rn, mask=rn < N, other=0.0)[None, :], 0.0) - 1.0
    c_ptrs = c_ptr + rm[:, None] * N + rn[None, :]
    if OUT_F16:
        out = acc.to(sl.float16)
    else:
        out = acc
    if MASKED:
        sl.store(c_ptrs, out, mask=(rm[:, None] < M) & (rn[None, :] < N))
    else:
        sl.store(c_ptrs, out)


def _reference(a, b, v, alpha, epi):
    acc = a.astype(np.float64) @ b.astype(np.float64)
    M, N = acc.shape
    if epi == "scale":
        return acc * alpha
    if epi == "add":
        return acc + alpha
    if epi == "relu":
        return np.maximum(acc, 0.0)
    if epi == "sigmoid":
        return 1.0 / (1.0 + np.exp(-acc))
    if epi == "bias_row":
        return acc + v[:N][None, :]
    if epi == "scale_rows":
        return acc * v[:M][:, None]
    if epi == "chain":
        return np.maximum(acc * alpha + v[:N][None, :], 0.0) - 1.0
    return acc


def lavapipe_26_target(device_type=None):
    """lavapipe 26.1's matrices and subgroups; device_type="discrete" lets num_warps give
    several subgroups per program (a CPU device runs one)."""
    base = get_device().caps
    # KHR shapes only (VK_NV_cooperative_matrix2's flexible shapes: tests/test_coopmat2.py)
    return dataclasses.replace(base, subgroup_size=8, cooperative_matrix=LAVAPIPE_26, cooperative_matrix2=None,
                               subgroup_ops=tuple(set(base.subgroup_ops) | {"vote"}),
                               device_type=device_type or base.device_type)


def _module(epi, masked, out_f16, M=32, N=32, K=32, BM=16, BN=16, BK=16, warps=1):
    a = spvjit.empty((M, K), np.float16)
    c = spvjit.empty((M, N), np.float16 if out_f16 else np.float32)
    v = spvjit.empty((max(M, N),), np.float32)
    ir = epilogue_matmul.ir_module(a, a, c, v, M, N, K, 0.5, BM=BM, BN=BN, BK=BK, EPI=epi, MASKED=masked,
                                   OUT_F16=out_f16)
    ck = compile_kernel(ir, lavapipe_26_target(), num_warps=warps, param_div={"M": 16, "N": 16, "K": 16})
    validate(ck.spirv, target_env="vulkan1.3")
    return disassemble(ck.spirv)


def _coop_types(text):
    return {line.split("=")[0].strip(): line for line in text.splitlines()
            if "OpTypeCooperativeMatrixKHR" in line and "=" in line}


def _result_types(text, opname):
    """Result types of every `opname` instruction."""
    return [m.group(1) for m in re.finditer(rf"= {opname} (%\w+)", text)]


@pytest.mark.parametrize("epi,op", [("scale", "OpMatrixTimesScalar"), ("add", "OpFAdd"),
                                    ("bias_row", "OpFAdd"), ("scale_rows", "OpFMul")])
def test_epilogue_ops_act_on_cooperative_matrices(monkeypatch, epi, op):
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    text = _module(epi, masked=False, out_f16=False)
    coop = _coop_types(text)
    assert any(t in coop for t in _result_types(text, op)), text
    # unmasked, row-major, aligned: tiles go straight to the storage buffer (the runtime row
    # stride N is checked > 0 first, as Vulkan asks of store strides; N <= 0 stores by elements)
    store_ptrs = re.findall(r"OpCooperativeMatrixStoreKHR (%\w+)", text)
    chains = dict(re.findall(r"(%\w+) = OpAccessChain (%\w+)", text))
    assert sum("StorageBuffer" in chains[p] for p in store_ptrs) == 4, text    # 2x2 tiles of 8x8
    if epi in ("bias_row", "scale_rows"):     # the vector enters as a Stride-0 matrix load
        assert re.search(r"OpCooperativeMatrixLoadKHR %\w+ %\w+ %uint_[01] %uint_0\b", text), text


@spvjit.kernel
def scaled_matmul(a_ptr, b_ptr, c_ptr, alpha, M: sl.constexpr, N: sl.constexpr, K: sl.constexpr):
    rm = sl.arange(0, M)
    rn = sl.arange(0, N)
    rk = sl.arange(0, K)
    a = sl.load(a_ptr + rm[:, None] * K + rk[None, :])
    b = sl.load(b_ptr + rk[:, None] * N + rn[None, :])
    c = sl.maximum(sl.dot(a, b) * alpha, 0.0).to(sl.float16)
    sl.store(c_ptr + rm[:, None] * N + rn[None, :], c)


def test_constant_stride_epilogue_never_touches_shared_memory(monkeypatch):
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    a = spvjit.empty((16, 16), np.float16)
    ir = scaled_matmul.ir_module(a, a, a, 0.5, M=16, N=16, K=16)
    ck = compile_kernel(ir, lavapipe_26_target(), num_warps=1)
    validate(ck.spirv, target_env="vulkan1.3")
    text = disassemble(ck.spirv)
    coop = _coop_types(text)
    for op in ("OpMatrixTimesScalar", "OpFConvert"):
        assert any(t in coop for t in _result_types(text, op)), (op, text)
    assert "OpCooperativeMatrixLengthKHR" in text          # relu, component by component
    assert text.count("OpCooperativeMatrixStoreKHR") == 4 and "%coop_c" not in text, text
    # A and B come straight from the buffers too (constant strides, one subgroup): the kernel
    # has no shared memory and no barrier at all
    loads = re.findall(r"OpCooperativeMatrixLoadKHR %\w+ (%\w+)", text)
    chains = dict(re.findall(r"(%\w+) = OpAccessChain (%\w+)", text))
    assert len(loads) == 2 * 2 * 4 and all("StorageBuffer" in chains[p] for p in loads), text
    assert "OpControlBarrier" not in text and "OpAccessChain %_ptr_Workgroup" not in text, text


def test_relu_and_cast_stay_in_matrix_layout(monkeypatch):
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    text = _module("relu", masked=False, out_f16=True)
    coop = _coop_types(text)
    assert "OpCooperativeMatrixLengthKHR" in text           # relu per component
    converts = [t for t in _result_types(text, "OpFConvert") if t in coop]
    assert converts and "half" in coop[converts[0]], text   # f32 -> f16 on the matrix


def test_masked_store_votes_for_whole_tiles(monkeypatch):
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    text = _module("scale", masked=True, out_f16=False)
    assert "OpGroupNonUniformAll" in text
    store_ptrs = re.findall(r"OpCooperativeMatrixStoreKHR (%\w+)", text)
    chains = dict(re.findall(r"(%\w+) = OpAccessChain (%\w+)", text))
    kinds = {("StorageBuffer" in chains[p]) for p in store_ptrs}
    assert kinds == {True, False}, text      # whole tiles to memory, ragged ones through their slot


def test_unaligned_stride_falls_back_to_element_stores(monkeypatch):
    # N = 6 is not a multiple of 4 f32 (16 bytes): no direct store; still valid SPIR-V
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    a = spvjit.empty((16, 16), np.float16)
    c = spvjit.empty((16, 6), np.float32)
    ir = epilogue_matmul.ir_module(a, a, c, c, 16, 6, 16, 0.5, BM=16, BN=16, BK=16, EPI="scale", MASKED=True,
                                   OUT_F16=False)
    ck = compile_kernel(ir, lavapipe_26_target(), num_warps=1, param_div={"M": 16, "K": 16})
    validate(ck.spirv, target_env="vulkan1.3")
    text = disassemble(ck.spirv)
    store_ptrs = re.findall(r"OpCooperativeMatrixStoreKHR (%\w+)", text)
    chains = dict(re.findall(r"(%\w+) = OpAccessChain (%\w+)", text))
    assert store_ptrs and not any("StorageBuffer" in chains[p] for p in store_ptrs), text


def _coopmat_device_or_skip():
    dev = get_device()
    if not dev.kernel_caps.cooperative_matrix:
        pytest.skip(f"{dev.caps.name} has no cooperative matrices (run under scripts/coopmat-env)")
    return dev


CASES = [  # (epi, masked, out_f16, M, N, K, BM, BN, BK, warps)
    ("scale", False, False, 32, 32, 32, 16, 16, 16, 1),
    ("scale", True, False, 40, 24, 32, 16, 16, 16, 1),       # ragged tiles in M and N
    ("add", True, False, 24, 40, 16, 16, 16, 16, 2),
    ("relu", False, True, 32, 32, 32, 16, 16, 16, 1),        # relu, then f16 out
    ("sigmoid", True, False, 40, 24, 32, 16, 16, 16, 1),
    ("bias_row", True, False, 40, 24, 32, 16, 16, 16, 2),
    ("scale_rows", False, False, 32, 32, 32, 16, 16, 16, 1),
    ("chain", True, True, 40, 24, 32, 16, 16, 16, 1),
    ("none", True, False, 20, 12, 16, 16, 16, 16, 1),        # odd N: no direct store at all
]


@pytest.mark.parametrize("epi,masked,out_f16,M,N,K,BM,BN,BK,warps", CASES)
def test_epilogue_on_a_coopmat_device(monkeypatch, epi, masked, out_f16, M, N, K, BM, BN, BK, warps):
    _coopmat_device_or_skip()
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    rng = np.random.default_rng(11)
    a = rng.standard_normal((M, K)).astype(np.float16)
    b = rng.standard_normal((K, N)).astype(np.float16)
    v = rng.standard_normal(max(M, N)).astype(np.float32)
    alpha = 0.75
    ref = _reference(a, b, v, alpha, epi)
    grid = (spvjit.cdiv(M, BM), spvjit.cdiv(N, BN))
    outs = {}
    for coop in (True, False):
        if not coop:
            monkeypatch.setenv("SPVJIT_DISABLE_COOPMAT", "1")
        c = spvjit.tensor(np.full((M, N), 7, np.float16 if out_f16 else np.float32))
        epilogue_matmul[grid](spvjit.tensor(a), spvjit.tensor(b), c, spvjit.tensor(v), M, N, K, alpha,
                              BM=BM, BN=BN, BK=BK, EPI=epi, MASKED=masked, OUT_F16=out_f16, num_warps=warps)
        outs[coop] = c.numpy().astype(np.float64)
    # f16 products are exact in f32 and K <= 32 sums of terms ~1 round at 2^-24 each (1e-5 covers
    # both summation orders); an f16 result adds one rounding, 2^-11 relative, and the matrix
    # conversion may round toward zero instead of to nearest (one f16 ulp, 2^-10 relative)
    tol = 2e-3 if out_f16 else 1e-5
    np.testing.assert_allclose(outs[True], ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(outs[True], outs[False], rtol=tol, atol=tol)
