"""A kernel whose cooperative-matrix dots together need more shared memory than the device has
is built without cooperative matrices instead of being refused (codegen/compiler.py).

Each coopmat dot is checked against the shared-memory budget on its own (coopmat.find_config),
but the staging arrays, the conversions between layouts and the scratch add up: Triton's
attention backward at 32x64 blocks, HEAD_DIM 64, asked for 33-35 KiB on Mesa 26.1's lavapipe
(32 KiB) and was refused, while the same kernel without cooperative matrices fits.  The
kernel here is an attention step of the same shape.  SPIR-V is compiled for lavapipe 26.1's
configurations on every machine; the numbers come from a coopmat device (scripts/coopmat-env).
"""
import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit.codegen.compiler import compile_kernel
from spvjit.codegen.spirv.tools import disassemble, validate
from spvjit.runtime import get_device

from test_coopmat_epilogue import lavapipe_26_target

pytestmark = pytest.mark.coopmat


@spvjit.kernel
def attention_rows(q_ptr, k_ptr, v_ptr, out_ptr, L, M: sl.constexpr, BN: sl.constexpr, D: sl.constexpr,
                   SOFTMAX: sl.constexpr):
    """out = sum over key blocks of exp(q k^T / 16 [- row max]) v (no normalisation)."""
    rm = sl.arange(0, M)
    rn = sl.arange(0, BN)
    rd = sl.arange(0, D)
    q = sl.load(q_ptr + rm[:, None] * D + rd[None, :])
    acc = sl.zeros((M, D), dtype=sl.float32)
    for start in range(0, L, BN):
        keep = (start + rn) < L
        kt = sl.load(k_ptr + (start + rn)[None, :] * D + rd[:, None], mask=keep[None, :], other=0.0)
        v = sl.load(v_ptr + (start + rn)[:, None] * D + rd[None, :], mask=keep[:, None], other=0.0)
        s = sl.dot(q, kt) * 0.0625
        if SOFTMAX:          # the row max adds a conversion and a reduction's arrays
            s = s - sl.max(s, 1)[:, None]
        acc = sl.dot(sl.exp(s).to(sl.float16), v, acc)
    sl.store(out_ptr + rm[:, None] * D + rd[None, :], acc)


M, BN, D, L = 32, 64, 64, 100     # 100 keys: the last block is masked


def _compiled(softmax: bool):
    q = spvjit.empty((L, D), np.float16)
    out = spvjit.empty((M, D), np.float32)
    ir = attention_rows.ir_module(q, q, q, out, L, M=M, BN=BN, D=D, SOFTMAX=softmax)
    notes = {}
    ck = compile_kernel(ir, lavapipe_26_target(), num_warps=1, notes=notes)
    validate(ck.spirv, target_env="vulkan1.3")
    return disassemble(ck.spirv), [notes.get(id(op), "") for op in ir.walk() if op.name == "dot"]


def test_dots_that_fit_together_stay_on_cooperative_matrices(monkeypatch):
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    text, dots = _compiled(softmax=False)     # 28.9 KiB of 32 with cooperative matrices
    assert "OpCooperativeMatrixMulAddKHR" in text
    assert not any("not on cooperative matrices" in n for n in dots), dots


def test_dots_over_shared_memory_together_are_built_without_them(monkeypatch):
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    text, dots = _compiled(softmax=True)      # 45 KiB with cooperative matrices
    assert "OpCooperativeMatrixMulAddKHR" not in text
    assert len(dots) == 2 and all(n.startswith("not on cooperative matrices (") for n in dots), dots


def test_attention_rows_built_without_them_on_a_coopmat_device(monkeypatch):
    # (SOFTMAX=False, on cooperative matrices, is not run here: lavapipe 26.1 took 354 s to
    # compile it cold, against 8.5 s for this one; the coopmat numerics of such dots are in
    # test_coopmat_epilogue.py and test_coopmat_operands.py at smaller tiles)
    dev = get_device()
    if not dev.kernel_caps.cooperative_matrix:
        pytest.skip(f"{dev.caps.name} has no cooperative matrices (run under scripts/coopmat-env)")
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    # the KHR path: with VK_NV_cooperative_matrix2's reductions (lavapipe 26.1 reports them) the
    # row max needs no conversion arrays and the kernel fits on cooperative matrices
    # (test_coopmat2_reduce.py), which lavapipe takes minutes to compile at these tiles
    monkeypatch.setenv("SPVJIT_DISABLE_COOPMAT2", "1")
    rng = np.random.default_rng(11)
    q, k, v = (rng.standard_normal((L, D)).astype(np.float16) for _ in range(3))
    out = spvjit.zeros((M, D), np.float32)
    attention_rows[(1,)](spvjit.tensor(q), spvjit.tensor(k), spvjit.tensor(v), out, L, M=M, BN=BN, D=D,
                         SOFTMAX=True)
    ref = np.zeros((M, D))
    qf, kf, vf = (x.astype(np.float64) for x in (q, k, v))
    for start in range(0, L, BN):
        s = qf[:M] @ kf[start:start + BN].T / 16
        s -= s.max(axis=1, keepdims=True)
        p = np.exp(s).astype(np.float16).astype(np.float64)   # the kernel rounds p to f16
        ref += p @ vf[start:start + BN]
    # p rounded to f16 in both (a rounding boundary may differ by one ulp, 2**-11 relative,
    # when the f32 exp lands next to it); f32 sums of 100 terms: within 2e-3 relative overall
    np.testing.assert_allclose(out.numpy(), ref, rtol=2e-3, atol=2e-3 * np.abs(ref).max())
