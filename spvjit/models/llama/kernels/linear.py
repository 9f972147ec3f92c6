"""Quantized linear layers: y = W @ f(x) for one token (matvec) or many (matmul).

W is ``N x K`` (out x in) in the device layout of :mod:`.packing`. Its blocks are
decoded in registers by the type's helper from :mod:`.quant`, a unit (8 weights) at a
time, and never written out. The dot products run over the columns in the order the
units list them, with x gathered at the same columns.

The input can go through the layer before the matrix on the fly (``PRE``), which
saves a dispatch and a round trip through memory per use:
  "none"    f(x) = x
  "norm"    f(x) = rms_norm(x) * w_norm   (each program computes its rows' 1/rms)
  "swiglu"  f(x) = silu(gate) * up        (a row of x is [gate (K) | up (K)])

Both kernels can write into a column range of a wider output (``y_off``, ``ldy``),
so Wq/Wk/Wv (or gate/up) of different types still fill one activation buffer, and can
add into what is there (``ACC``): the residual connection.
"""

from __future__ import annotations

import spvjit
import spvjit.language as sl

from .quant import dequant, unit_elems


@spvjit.kernel
def x_at(x_ptr, cols, mask, K, w_norm, inv, PRE: sl.constexpr):
    """f(x) at ``cols`` (0 where ``mask`` is false): see the module doc."""
    if PRE == "norm":
        w = sl.load(w_norm + cols, mask=mask, other=0.0)
        return sl.load(x_ptr + cols, mask=mask, other=0.0) * inv * w
    if PRE == "swiglu":
        g = sl.load(x_ptr + cols, mask=mask, other=0.0)
        u = sl.load(x_ptr + K + cols, mask=mask, other=0.0)
        return g / (1.0 + sl.exp(-g)) * u
    sl.static_assert(PRE == "none", "PRE must be none, norm or swiglu")
    return sl.load(x_ptr + cols, mask=mask, other=0.0)


@spvjit.kernel
def matvec_kernel(qw, sc, aux, x_ptr, y_ptr, w_norm, N, K, x_off, y_off, eps,
                  QTYPE: sl.constexpr, PRE: sl.constexpr, BR: sl.constexpr, BU: sl.constexpr,
                  ACC: sl.constexpr):
    """y[y_off + n] (+)= sum_k W[n, k] f(x)[k], x at x_ptr + x_off; each program owns BR
    rows and walks their units BU at a time (grid: cdiv(N, BR))."""
    rows = sl.program_id(0) * BR + sl.arange(0, BR)
    rmask = rows < N
    r = sl.minimum(rows, N - 1)[:, None]
    x_row = x_ptr + x_off
    inv = 1.0
    if PRE == "norm":
        sq = sl.zeros((64,), sl.float32)
        for k in range(0, K, 64):
            c = k + sl.arange(0, 64)
            v = sl.load(x_row + c, mask=c < K, other=0.0)
            sq += v * v
        inv = 1.0 / sl.sqrt(sl.sum(sq, axis=0) / K + eps)
    U = K // unit_elems(QTYPE)
    acc = sl.zeros((BR, BU), sl.float32)
    for k in range(0, U, BU):
        u = k + sl.arange(0, BU)
        umask = (u < U)[None, :]
        vals, cols = dequant(QTYPE, qw, sc, aux, r, sl.minimum(u, U - 1)[None, :], K)
        for s in sl.static_range(len(vals)):
            acc += vals[s] * x_at(x_row, cols[s], umask, K, w_norm, inv, PRE)
    y = sl.sum(acc, axis=1)
    if ACC:
        y += sl.load(y_ptr + y_off + rows, mask=rmask, other=0.0)
    sl.store(y_ptr + y_off + rows, y, mask=rmask)


@spvjit.kernel
def matmul_kernel(qw, sc, aux, x_ptr, y_ptr, w_norm, M, N, K, ldx, ldy, y_off, eps,
                  QTYPE: sl.constexpr, PRE: sl.constexpr, BM: sl.constexpr, BN: sl.constexpr,
                  BU: sl.constexpr, ACC: sl.constexpr):
    """y[m, y_off + n] (+)= sum_k f(x)[m, k] W[n, k] (grid: cdiv(N, BN), cdiv(M, BM)).
    Weights are decoded as [BU, BN] tiles (W transposed), the B operand of sl.dot."""
    offs_n = sl.program_id(0) * BN + sl.arange(0, BN)
    offs_m = sl.program_id(1) * BM + sl.arange(0, BM)
    n = sl.minimum(offs_n, N - 1)[None, :]
    x_rows = x_ptr + sl.minimum(offs_m, M - 1)[:, None] * ldx          # [BM, 1] row pointers
    inv = 1.0
    if PRE == "norm":
        sq = sl.zeros((BM, 32), sl.float32)
        for k in range(0, K, 32):
            c = k + sl.arange(0, 32)[None, :]
            v = sl.load(x_rows + c, mask=c < K, other=0.0)
            sq += v * v
        inv = (1.0 / sl.sqrt(sl.sum(sq, axis=1) / K + eps))[:, None]
    U = K // unit_elems(QTYPE)
    acc = sl.zeros((BM, BN), sl.float32)
    for k in range(0, U, BU):
        u = k + sl.arange(0, BU)
        umask = (u < U)[None, :]
        vals, cols = dequant(QTYPE, qw, sc, aux, n, sl.minimum(u, U - 1)[:, None], K)  # [BU, BN] each
        for s in sl.static_range(len(vals)):
            x = x_at(x_rows, sl.reshape(cols[s], (1, BU)), umask, K, w_norm, inv, PRE)   # [BM, BU]
            acc = sl.dot(x, vals[s], acc)
    out = y_ptr + offs_m[:, None] * ldy + y_off + offs_n[None, :]
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    if ACC:
        acc += sl.load(out, mask=mask, other=0.0)
    sl.store(out, acc, mask=mask)
