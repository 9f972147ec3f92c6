"""A and B of a cooperative-matrix dot read straight from memory (codegen/coopmat_operands.py).

SPIR-V is compiled for lavapipe 26.1's configurations (runs on every machine); the numbers
come from a coopmat device (scripts/coopmat-env), against numpy and against the same kernel
with SPVJIT_DISABLE_COOPMAT=1.
"""
import re

import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit.codegen.compiler import compile_kernel
from spvjit.codegen.spirv.tools import disassemble, validate
from spvjit.runtime import get_device

from test_coopmat_epilogue import epilogue_matmul, lavapipe_26_target

pytestmark = pytest.mark.coopmat


@spvjit.kernel
def strided_matmul(a_ptr, w_ptr, c_ptr, a_off, a_row, K, N, BM: sl.constexpr, BN: sl.constexpr,
                   BK: sl.constexpr):
    """c = A @ W^T with A rows `a_row` elements apart from `a_off` on (a_row may be negative:
    rows read backwards) and W stored [N, K] (B read column-major, as a llama weight)."""
    rm = sl.arange(0, BM)
    rn = sl.program_id(0) * BN + sl.arange(0, BN)
    rk = sl.arange(0, BK)
    acc = sl.zeros((BM, BN), dtype=sl.float32)
    for k in range(0, K, BK):
        a = sl.load(a_ptr + a_off + rm[:, None] * a_row + (k + rk)[None, :])
        w = sl.load(w_ptr + rn[None, :] * K + (k + rk)[:, None])
        acc = sl.dot(a, w, acc)
    sl.store(c_ptr + rm[:, None] * N + rn[None, :], acc)


def _loads(text):
    """(pointer storage class, layout operand) of every OpCooperativeMatrixLoadKHR."""
    chains = dict(re.findall(r"(%\w+) = OpAccessChain (%\w+)", text))
    return [("StorageBuffer" if "StorageBuffer" in chains[p] else "Workgroup", layout)
            for p, layout in re.findall(r"OpCooperativeMatrixLoadKHR %\w+ (%\w+) (%\w+)", text)]


def _compile(ir, gpu=False, div=None):
    # gpu: one warp of 32 invocations is 4 subgroups of lavapipe's 8 (a CPU target runs one)
    ck = compile_kernel(ir, lavapipe_26_target("discrete" if gpu else None), num_warps=1, param_div=div or {})
    assert ck.workgroup_size == (32 if gpu else 8)
    validate(ck.spirv, target_env="vulkan1.3")
    return disassemble(ck.spirv)


def test_unmasked_operands_load_from_the_buffers(monkeypatch):
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    a = spvjit.empty((32, 32), np.float16)
    c = spvjit.empty((32, 32), np.float32)
    ir = epilogue_matmul.ir_module(a, a, c, c, 32, 32, 32, 0.5, BM=16, BN=16, BK=16, EPI="none", MASKED=False,
                                   OUT_F16=False)
    text = _compile(ir, div={"M": 16, "N": 16, "K": 16})
    loads = _loads(text)
    # runtime strides K and N: direct loads where they are >= 0, gathered into the subgroup's
    # slot otherwise; A and B never pass through the workgroup-wide staging arrays
    assert ("StorageBuffer", "%uint_0") in loads, text
    assert "%coop_a" not in text and "%coop_b" not in text, text
    assert "OpControlBarrier %uint_2" not in text.split("OpLoopMerge")[1].split("OpCooperativeMatrixMulAddKHR")[0]


def test_masked_operands_stay_staged(monkeypatch):
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    a = spvjit.empty((32, 32), np.float16)
    c = spvjit.empty((32, 32), np.float32)
    ir = epilogue_matmul.ir_module(a, a, c, c, 32, 32, 32, 0.5, BM=16, BN=16, BK=16, EPI="none", MASKED=True,
                                   OUT_F16=False)
    text = _compile(ir, div={"M": 16, "N": 16, "K": 16})
    assert {s for s, _ in _loads(text)} == {"Workgroup"} and "%coop_a" in text and "%coop_b" in text


def test_tiles_read_by_several_subgroups_stay_staged(monkeypatch):
    # 32x32 in 8x8 tiles, 4 subgroups: subgroup s owns tiles s, s+4, ... = column block s of
    # every row, so each A row block is read by all four (staged) and each B column block by one
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    a = spvjit.empty((32, 32), np.float16)
    c = spvjit.empty((32, 32), np.float32)
    ir = epilogue_matmul.ir_module(a, a, c, c, 32, 32, 32, 0.5, BM=32, BN=32, BK=16, EPI="none", MASKED=False,
                                   OUT_F16=False)
    text = _compile(ir, gpu=True, div={"M": 16, "N": 16, "K": 16})
    assert "%coop_a" in text and "%coop_b" not in text, text
    assert ("StorageBuffer", "%uint_0") in _loads(text)


def test_transposed_weight_loads_column_major(monkeypatch):
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    a = spvjit.empty((16, 32), np.float16)
    c = spvjit.empty((16, 16), np.float32)
    ir = strided_matmul.ir_module(a, a, c, 0, 32, 32, 16, BM=16, BN=16, BK=16)
    text = _compile(ir, div={"a_off": 16, "a_row": 16, "K": 16, "N": 16})
    assert ("StorageBuffer", "%uint_1") in _loads(text), text      # B: ColumnMajorKHR, stride K
    assert ("StorageBuffer", "%uint_0") in _loads(text), text      # A: RowMajorKHR


@pytest.mark.parametrize("backwards", [False, True])
def test_direct_loads_on_a_coopmat_device(monkeypatch, backwards):
    dev = get_device()
    if not dev.kernel_caps.cooperative_matrix:
        pytest.skip(f"{dev.caps.name} has no cooperative matrices (run under scripts/coopmat-env)")
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    rng = np.random.default_rng(5)
    BM, K, N = 16, 48, 32
    a = rng.standard_normal((BM, K)).astype(np.float16)
    w = rng.standard_normal((N, K)).astype(np.float16)
    # backwards: row r of the tile is row BM-1-r of `a` (a negative stride, which Vulkan does
    # not allow a matrix load: the kernel gathers those tiles element by element instead)
    a_off, a_row = ((BM - 1) * K, -K) if backwards else (0, K)
    ref = (a[::-1] if backwards else a).astype(np.float64) @ w.astype(np.float64).T
    outs = {}
    for coop in (True, False):
        if not coop:
            monkeypatch.setenv("SPVJIT_DISABLE_COOPMAT", "1")
        c = spvjit.zeros((BM, N), np.float32)
        strided_matmul[(N // 16,)](spvjit.tensor(a), spvjit.tensor(w), c, a_off, a_row, K, N, BM=BM, BN=16, BK=16)
        outs[coop] = c.numpy()
    # f16 products are exact in f32; 48 f32 adds of terms ~1 stay within 1e-4
    np.testing.assert_allclose(outs[True], ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(outs[True], outs[False], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("even", [True, False])
def test_llama_prompt_matmul_reads_whole_weight_tiles_from_memory(monkeypatch, even):
    # the llama runner's f16 prompt matmul (kernels/matmul_coop.py): with EVEN, B = W16[n, k]
    # tiles are read column-major straight from the weight copy; otherwise clamped and staged
    from spvjit.models.llama.kernels.matmul_coop import matmul_f16_kernel
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    w16 = spvjit.empty((128, 64), np.float16)
    x = spvjit.empty((32, 64), np.float32)
    ir = matmul_f16_kernel.ir_module(w16, x, x, x, 32, 128, 64, 64, 128, 0, 1e-5, PRE="none", BM=32, BN=64,
                                     BK=16, ACC=False, EVEN=even)
    text = _compile(ir, div={"M": 16, "N": 16, "K": 16, "ldx": 16, "ldy": 16})
    direct_b = ("StorageBuffer", "%uint_1") in _loads(text)
    assert direct_b == even, text
