"""Prompt matmuls of Q8_0 weights on i8 cooperative matrices.

Q8_0 keeps 32 int8 weights per block with one f16 scale.  On a device with i8*i8+i32
cooperative matrices (and whose f32 accumulators tile alike), prompt rows are quantized the
same way, 32 values per block with d = max|x| / 127 and q = round(x / d) (llama.cpp's
Q8_0/Q8_1 activation rule), and

    y[m, n] = sum_b xs[m, b] * ws[n, b] * sum_{k in b} xq[m, k] * wq[n, k]

runs one block per K step: an i8 dot into i32, converted to f32 and scaled by the activation
scales (a column) and the weight scales (a row) on the matrices, then added to an f32
accumulator the loop carries as cooperative matrices (codegen/coopmat.py, coopmat_epilogue.py).
The weight's int8 values and scales are rearranged once from the row-tiled device layout
(packing.py) into a plain [rows, cols] int8 copy and [rows, blocks] f32 scales, 1.125 bytes
per weight, against the f16 copy's 2.  Activation quantization adds its own rounding: each
x is off by at most d/2 of its block (matmul_f16 rounds x to f16 instead, 2^-11 relative).
"""
from __future__ import annotations

import numpy as np

import spvjit
import spvjit.language as sl

from .linear import rows_inv_rms, x_at
from .packing import TILE_ROWS

QK = 32
BLOCKS_CPU = dict(BM=32, BN=32, num_warps=1)
BLOCKS_GPU = dict(BM=64, BN=64, num_warps=4)


@spvjit.kernel
def _round(v):
    # half away from zero, as roundf (|v| <= 127 here)
    return sl.where(v < 0.0, -sl.floor(0.5 - v), sl.floor(v + 0.5))


@spvjit.kernel
def quantize_rows_kernel(x_ptr, xq_ptr, xs_ptr, w_norm, M, K, ldx, eps, PRE: sl.constexpr, BM: sl.constexpr):
    """xq[m, k], xs[m, b] = Q8 blocks of f(x)[m] (grid: cdiv(M, BM), K / 32)."""
    b = sl.program_id(1)
    rm = sl.program_id(0) * BM + sl.arange(0, BM)
    x_rows = x_ptr + sl.minimum(rm, M - 1)[:, None] * ldx
    inv = 1.0
    if PRE == "norm":
        inv = rows_inv_rms(x_rows, K, eps, BM)
    cols = b * 32 + sl.arange(0, 32)[None, :]
    x = x_at(x_rows, cols, cols < K, K, w_norm, inv, PRE)                # [BM, 32]
    d = sl.max(sl.abs(x), axis=1) / 127.0
    d = sl.where(d == 0.0, 1.0, d)
    q = _round(x / d[:, None])
    ok = rm[:, None] < M
    sl.store(xq_ptr + rm[:, None] * K + cols, q.to(sl.int8), mask=ok)
    sl.store(xs_ptr + rm * (K // 32) + b, d, mask=rm < M)


@spvjit.kernel
def matmul_q8_kernel(wq_ptr, ws_ptr, xq_ptr, xs_ptr, y_ptr, M, N, K, ldy, y_off, BM: sl.constexpr,
                     BN: sl.constexpr, ACC: sl.constexpr):
    """y[m, y_off + n] (+)= the block-scaled product (grid: N / BN, cdiv(M, BM)); N % BN == 0."""
    rn = sl.program_id(0) * BN + sl.arange(0, BN)
    rm = sl.program_id(1) * BM + sl.arange(0, BM)
    rmc = sl.minimum(rm, M - 1)              # ragged rows read row M-1 again, and are not stored
    rk = sl.arange(0, 32)
    nb = K // 32
    acc = sl.zeros((BM, BN), dtype=sl.float32)
    for b in range(0, nb):
        xq = sl.load(xq_ptr + rmc[:, None] * K + (b * 32 + rk)[None, :])          # [BM, 32] i8
        wq = sl.load(wq_ptr + rn[None, :] * K + (b * 32 + rk)[:, None])           # [32, BN] i8
        xs = sl.load(xs_ptr + rmc * nb + b)
        ws = sl.load(ws_ptr + rn * nb + b)
        acc += sl.dot(xq, wq).to(sl.float32) * xs[:, None] * ws[None, :]
    out = y_ptr + rm[:, None] * ldy + y_off + rn[None, :]
    mask = rm[:, None] < M
    if ACC:
        acc += sl.load(out, mask=mask, other=0.0)
    sl.store(out, acc, mask=mask)


def i8_available() -> bool:
    """Whether this device multiplies i8 into i32 on cooperative matrices whose m x n an f32
    accumulator shares (and may: SPVJIT_DISABLE_COOPMAT)."""
    if spvjit.knobs.get("SPVJIT_DISABLE_COOPMAT"):
        return False
    cms = [c for c in spvjit.get_device().kernel_caps.cooperative_matrix if c.scope == "subgroup"]
    f32 = {(c.m, c.n) for c in cms if c.result_type == "f32"}
    return any((c.a_type, c.b_type, c.c_type, c.result_type) == ("i8", "i8", "i32", "i32") and (c.m, c.n) in f32
               for c in cms)


def usable(w, n_rows: int) -> bool:
    """A Q8_0 weight whose rows fill whole BN tiles (every model matrix: multiples of 64)."""
    cfg = BLOCKS_CPU if spvjit.get_device().caps.device_type == "cpu" else BLOCKS_GPU
    return w.qtype == "Q8_0" and w.rows % cfg["BN"] == 0 and w.cols % QK == 0 and i8_available()


def q8_copy(w):
    """(int8 [rows, cols], f32 [rows, cols / 32]) of a row-tiled Q8_0 weight, made on first use
    and kept with it: the same bits, rearranged (packing.py: qw [tile][block][word][64 rows])."""
    copy = getattr(w, "_q8_copy", None)
    if copy is None:
        blocks = w.cols // QK
        tiles = -(-w.rows // TILE_ROWS)
        qw = w.qw.numpy().reshape(tiles, blocks, 8, TILE_ROWS).view(np.uint32)
        qs = qw.transpose(0, 3, 1, 2).copy().view(np.int8).reshape(tiles * TILE_ROWS, w.cols)[:w.rows]
        sc = w.sc.numpy().view(np.float16).reshape(tiles, blocks, TILE_ROWS).transpose(0, 2, 1)
        d = sc.reshape(tiles * TILE_ROWS, blocks)[:w.rows].astype(np.float32)
        copy = (spvjit.tensor(np.ascontiguousarray(qs)), spvjit.tensor(np.ascontiguousarray(d)))
        object.__setattr__(w, "_q8_copy", copy)
    return copy


def matmul_q8(w, x, y, m: int, ldx: int, ldy: int, y_off: int, acc: bool, pre: str, w_norm, eps: float) -> None:
    cfg = dict(BLOCKS_CPU if spvjit.get_device().caps.device_type == "cpu" else BLOCKS_GPU)
    warps = cfg.pop("num_warps")
    n, k = w.rows, w.cols
    wq, ws = q8_copy(w)
    xq = spvjit.empty((m, k), np.int8)
    xs = spvjit.empty((m, k // QK), np.float32)
    quantize_rows_kernel[(spvjit.cdiv(m, 32), k // QK)](x, xq, xs, w_norm, m, k, ldx, float(eps), PRE=pre, BM=32)
    matmul_q8_kernel[(n // cfg["BN"], spvjit.cdiv(m, cfg["BM"]))](wq, ws, xq, xs, y, m, n, k, ldy, y_off, ACC=acc,
                                                                  num_warps=warps, **cfg)
