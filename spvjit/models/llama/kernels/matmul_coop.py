"""Prompt matmuls on matrix cores, for devices with f16 cooperative matrices.

The quantized matmul kernels decode weights inside the K loop, one weight row (or one
[BU, BN] tile of a few units) per `sl.dot`, which suits register blocks on CPUs but is far
too narrow for a cooperative-matrix `dot`.  On a device with f16*f16+f32 cooperative
matrices, a weight matrix is decoded once into an f16 copy (the same decoding helpers, the
embedding lookup's `dequant_rows`, with stores converting to f16), kept on the device next
to the packed weight, and prompt rows are multiplied against it with a plain f16 tiled matmul
whose K loop keeps its accumulators in matrix registers.  Activations are rounded to f16 on
the way in (as llama.cpp's coopmat path does); sums stay in f32.
"""
from __future__ import annotations

import numpy as np

import spvjit
import spvjit.language as sl

from .linear import rows_inv_rms, x_at

# (BM, BN, BK, num_warps): CPU drivers emulate matrices one subgroup at a time; GPUs get
# 4 subgroups sharing 64x64 tiles
BLOCKS_CPU = dict(BM=32, BN=64, BK=16, num_warps=1)
BLOCKS_GPU = dict(BM=64, BN=64, BK=32, num_warps=4)
MIN_ROWS = 32        # fewer prompt rows than this: the quantized kernels read less memory


@spvjit.kernel
def matmul_f16_kernel(w16, x_ptr, y_ptr, w_norm, M, N, K, ldx, ldy, y_off, eps,
                      PRE: sl.constexpr, BM: sl.constexpr, BN: sl.constexpr, BK: sl.constexpr,
                      ACC: sl.constexpr, EVEN: sl.constexpr):
    """y[m, y_off + n] (+)= sum_k f(x)[m, k] W16[n, k] (grid: cdiv(N, BN), cdiv(M, BM)).
    EVEN: N % BN == 0 and K % BK == 0, so W's tiles need neither clamp nor mask and the
    coopmat dot reads them straight from W16 (column-major B, codegen/coopmat_operands.py)."""
    offs_n = sl.program_id(0) * BN + sl.arange(0, BN)
    offs_m = sl.program_id(1) * BM + sl.arange(0, BM)
    n = sl.minimum(offs_n, N - 1)
    x_rows = x_ptr + sl.minimum(offs_m, M - 1)[:, None] * ldx          # [BM, 1] row pointers
    inv = 1.0
    if PRE == "norm":
        inv = rows_inv_rms(x_rows, K, eps, BM)
    acc = sl.zeros((BM, BN), sl.float32)
    for k in range(0, K, BK):
        kk = k + sl.arange(0, BK)
        x = x_at(x_rows, kk[None, :], (kk < K)[None, :], K, w_norm, inv, PRE).to(sl.float16)   # [BM, BK]
        if EVEN:
            wt = sl.load(w16 + offs_n[None, :] * K + kk[:, None])                            # [BK, BN]
        else:
            wt = sl.load(w16 + n[None, :] * K + kk[:, None], mask=(kk < K)[:, None], other=0.0)
        acc = sl.dot(x, wt, acc)
    out = y_ptr + offs_m[:, None] * ldy + y_off + offs_n[None, :]
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    if ACC:
        acc += sl.load(out, mask=mask, other=0.0)
    sl.store(out, acc, mask=mask)


def coopmat_f16_available() -> bool:
    """Whether this device multiplies f16 into f32 on cooperative matrices (and may)."""
    if spvjit.knobs.get("SPVJIT_DISABLE_COOPMAT"):
        return False
    caps = spvjit.get_device().kernel_caps
    return any(c.scope == "subgroup" and (c.a_type, c.b_type, c.c_type, c.result_type) == ("f16", "f16", "f32", "f32")
               for c in caps.cooperative_matrix)


def f16_copy(w, dequant_rows) -> "spvjit.Tensor":
    """The f16 [rows, cols] copy of weight `w`, decoded on first use and kept with it."""
    copy = getattr(w, "_f16_copy", None)
    if copy is None:
        copy = spvjit.empty((w.rows, w.cols), np.float16)
        dequant_rows(w, spvjit.tensor(np.arange(w.rows, dtype=np.int32)), copy, w.rows)
        object.__setattr__(w, "_f16_copy", copy)      # DeviceWeight may be a frozen dataclass
    return copy


def matmul_f16(w16, x, y, m: int, n: int, k: int, ldx: int, ldy: int, y_off: int, acc: bool,
               pre: str, w_norm, eps: float) -> None:
    cpu = spvjit.get_device().caps.device_type == "cpu"
    cfg = dict(BLOCKS_CPU if cpu else BLOCKS_GPU)
    warps = cfg.pop("num_warps")
    grid = (spvjit.cdiv(n, cfg["BN"]), spvjit.cdiv(m, cfg["BM"]))
    even = n % cfg["BN"] == 0 and k % cfg["BK"] == 0
    matmul_f16_kernel[grid](w16, x, y, w_norm, m, n, k, ldx, ldy, y_off, float(eps), PRE=pre, ACC=acc,
                            EVEN=even, num_warps=warps, **cfg)
