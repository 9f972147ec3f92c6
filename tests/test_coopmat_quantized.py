"""Block-quantized matmul on i8 cooperative matrices: Q8_0-style weights (32 int8 per block,
one scale per block and row) times activations quantized the same way.

    y[m, n] = sum_b xs[m, b] * ws[n, b] * sum_{k in block b} xq[m, k] * wq[n, k]

Each K step is one block: an i8*i8->i32 dot starting from zero, converted to f32 and scaled
by the activation scales (a column vector) and the weight scales (a row vector), then added
to an f32 accumulator carried across the loop.  On a coopmat device all of it stays in
matrix layout: the scales enter as Stride-0 matrix loads, the i32->f32 conversion is
OpConvertSToF on the matrix, and the loop carries the f32 accumulator as cooperative
matrices (its tiles have the i32 product's m x n, so they combine tile by tile).
"""
import re

import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit.codegen.compiler import compile_kernel
from spvjit.codegen.spirv.tools import disassemble, validate
from spvjit.runtime import get_device

from test_coopmat_epilogue import lavapipe_26_target

pytestmark = pytest.mark.coopmat
QK = 32      # weights per block, as Q8_0


@spvjit.kernel
def q8_matmul(xq_ptr, xs_ptr, wq_ptr, ws_ptr, y_ptr, M, N, K, BM: sl.constexpr, BN: sl.constexpr):
    """y = dequant(xq, xs) @ dequant(wq, ws)^T; W stored [N, K] like a GGUF weight."""
    rm = sl.program_id(0) * BM + sl.arange(0, BM)
    rn = sl.program_id(1) * BN + sl.arange(0, BN)
    rk = sl.arange(0, 32)
    nb = K // 32
    acc = sl.zeros((BM, BN), dtype=sl.float32)
    for b in range(0, nb):
        xq = sl.load(xq_ptr + rm[:, None] * K + (b * 32 + rk)[None, :])          # [BM, 32] i8
        wq = sl.load(wq_ptr + rn[None, :] * K + (b * 32 + rk)[:, None])          # [32, BN] i8
        xs = sl.load(xs_ptr + rm * nb + b)                                       # [BM]
        ws = sl.load(ws_ptr + rn * nb + b)                                       # [BN]
        acc += sl.dot(xq, wq).to(sl.float32) * xs[:, None] * ws[None, :]
    sl.store(y_ptr + rm[:, None] * N + rn[None, :], acc)


def _quantize(x):
    """Q8_0's rule per 32-value block: d = max|x| / 127, q = round(x / d)."""
    blocks = x.reshape(x.shape[0], -1, QK)
    d = np.abs(blocks).max(axis=2) / 127.0
    d[d == 0] = 1.0
    q = np.round(blocks / d[:, :, None]).astype(np.int8)
    return q.reshape(x.shape), d.astype(np.float32)


def _reference(xq, xs, wq, ws):
    M, K = xq.shape
    x = xq.reshape(M, -1, QK).astype(np.float64) * xs[:, :, None]
    w = wq.reshape(wq.shape[0], -1, QK).astype(np.float64) * ws[:, :, None]
    return x.reshape(M, K) @ w.reshape(wq.shape[0], K).T


def test_quantized_loop_stays_on_matrices(monkeypatch):
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    xq = spvjit.empty((16, 64), np.int8)
    s = spvjit.empty((16, 2), np.float32)
    y = spvjit.empty((16, 16), np.float32)
    ir = q8_matmul.ir_module(xq, s, xq, s, y, 16, 16, 64, BM=16, BN=16)
    ck = compile_kernel(ir, lavapipe_26_target(), num_warps=1, param_div={"M": 16, "N": 16, "K": 16})
    validate(ck.spirv, target_env="vulkan1.3")
    text = disassemble(ck.spirv)
    coop = {line.split("=")[0].strip(): line for line in text.splitlines() if "OpTypeCooperativeMatrixKHR" in line}
    f32_acc = [t for t, line in coop.items() if "%float" in line]
    phis = [line.split()[3] for line in text.splitlines() if " OpPhi " in line]
    assert sum(p in f32_acc for p in phis) == 4, text          # 16x16 in 8x8 tiles, carried
    assert "MatrixASignedComponentsKHR" in text
    converts = re.findall(r"= OpConvertSToF (%\w+)", text)
    assert converts and all(t in f32_acc for t in converts), text
    # the scales: Stride-0 loads, as a column (ColumnMajorKHR) and a row (RowMajorKHR)
    assert re.search(r"OpCooperativeMatrixLoadKHR %\w+ %\w+ %uint_1 %uint_0\b", text), text
    assert re.search(r"OpCooperativeMatrixLoadKHR %\w+ %\w+ %uint_0 %uint_0\b", text), text


@pytest.mark.parametrize("M,N,K,BM,BN", [(16, 16, 64, 16, 16), (32, 48, 96, 16, 16)])
def test_quantized_matmul_on_a_coopmat_device(monkeypatch, M, N, K, BM, BN):
    dev = get_device()
    if not any(c.a_type == "i8" for c in dev.kernel_caps.cooperative_matrix):
        pytest.skip(f"{dev.caps.name} has no i8 cooperative matrices (run under scripts/coopmat-env)")
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    rng = np.random.default_rng(9)
    xq, xs = _quantize(rng.standard_normal((M, K)).astype(np.float32))
    wq, ws = _quantize(rng.standard_normal((N, K)).astype(np.float32))
    ref = _reference(xq, xs, wq, ws)
    outs = {}
    for coop in (True, False):
        if not coop:
            monkeypatch.setenv("SPVJIT_DISABLE_COOPMAT", "1")
        y = spvjit.zeros((M, N), np.float32)
        q8_matmul[(M // BM, N // BN)](spvjit.tensor(xq), spvjit.tensor(xs), spvjit.tensor(wq), spvjit.tensor(ws), y,
                                      M, N, K, BM=BM, BN=BN)
        outs[coop] = y.numpy()
    # block sums are exact in i32; each block's f32 product of the sum and two scales rounds at
    # 2^-24 relative, and K/32 <= 3 f32 adds of terms up to ~30 stay well within 1e-4 relative
    np.testing.assert_allclose(outs[True], ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(outs[True], outs[False], rtol=1e-4, atol=1e-4)


def test_llama_q8_prompt_kernel_stays_on_matrices(monkeypatch):
    # the llama runner's Q8_0 prompt matmul (kernels/matmul_q8.py): f32 accumulator carried as
    # matrices, W's int8 tiles read column-major straight from its copy
    from spvjit.models.llama.kernels.matmul_q8 import matmul_q8_kernel
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    wq = spvjit.empty((64, 96), np.int8)
    s = spvjit.empty((64, 3), np.float32)
    y = spvjit.empty((40, 64), np.float32)
    ir = matmul_q8_kernel.ir_module(wq, s, wq, s, y, 40, 64, 96, 64, 0, BM=32, BN=32, ACC=False)
    ck = compile_kernel(ir, lavapipe_26_target(), num_warps=1, param_div={"N": 16, "K": 16, "ldy": 16})
    validate(ck.spirv, target_env="vulkan1.3")
    text = disassemble(ck.spirv)
    coop = {line.split("=")[0].strip(): line for line in text.splitlines() if "OpTypeCooperativeMatrixKHR" in line}
    f32_acc = [t for t, line in coop.items() if "%float" in line]
    phis = [line.split()[3] for line in text.splitlines() if " OpPhi " in line]
    assert sum(p in f32_acc for p in phis) == 16, text         # 32x32 in 8x8 tiles
    chains = dict(re.findall(r"(%\w+) = OpAccessChain (%\w+)", text))
    loads = re.findall(r"OpCooperativeMatrixLoadKHR %\w+ (%\w+) %uint_1 ", text)
    assert any("StorageBuffer" in chains[p] for p in loads), text
