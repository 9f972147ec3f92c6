"""Quantized linear layers: y = W @ f(x) for one token (matvec) or many (matmul).

W is ``N x K`` (out x in) in the device layout of :mod:`.packing`, decoded in registers
and never written out. Two kernel pairs:

- ``matvec_tiled_kernel`` / ``matmul_tiled_kernel`` for the row-tiled types (Q4_0, Q4_1,
  Q8_0, the default model's): they read one word of each of a tile's 64 rows at a time
  (vec4 loads); the matvec keeps f(x) in registers and reads W as one stream per program.
- ``matvec_kernel`` / ``matmul_kernel`` for the row-major types: blocks are decoded by
  the type's helper, a unit (UE weights) at a time; the dot products run over the
  columns in the order the units list them, with x gathered at the same columns.

Which type a kernel reads is only the helpers it is given (constexpr arguments, from
the type's descriptor in :mod:`.qtypes`): the kernels themselves name no type.

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
def x_vals(x_ptr, offs, K, w_norm, inv, PRE: sl.constexpr):
    """f(x) at ``offs`` (all in range): see the module doc."""
    if PRE == "norm":
        return sl.load(x_ptr + offs) * inv * sl.load(w_norm + offs)
    if PRE == "swiglu":
        g = sl.load(x_ptr + offs)
        return g / (1.0 + sl.exp(-g)) * sl.load(x_ptr + K + offs)
    sl.static_assert(PRE == "none", "PRE must be none, norm or swiglu")
    return sl.load(x_ptr + offs)


@spvjit.kernel
def rms_inv(x_row, K, eps):
    """1 / sqrt(mean(x^2) + eps) of the K values at x_row."""
    sq = sl.zeros((64,), sl.float32)
    for k in range(0, K, 64):
        c = k + sl.arange(0, 64)
        v = sl.load(x_row + c, mask=c < K, other=0.0)
        sq += v * v
    return 1.0 / sl.sqrt(sl.sum(sq, axis=0) / K + eps)


@spvjit.kernel
def rows_inv_rms(x_rows, K, eps, BM: sl.constexpr):
    """1 / rms of each of the BM rows at ``x_rows`` ([BM, 1] row pointers), as [BM, 1]."""
    sq = sl.zeros((BM, 32), sl.float32)
    for k in range(0, K, 32):
        c = k + sl.arange(0, 32)[None, :]
        v = sl.load(x_rows + c, mask=c < K, other=0.0)
        sq += v * v
    return (1.0 / sl.sqrt(sl.sum(sq, axis=1) / K + eps))[:, None]


@spvjit.kernel
def matvec_kernel(qw, sc, aux, x_ptr, y_ptr, w_norm, N, K, x_off, y_off, eps,
                  DQ: sl.constexpr, UE: sl.constexpr, PRE: sl.constexpr, BR: sl.constexpr,
                  BU: sl.constexpr, ACC: sl.constexpr):
    """y[y_off + n] (+)= sum_k W[n, k] f(x)[k], x at x_ptr + x_off; each program owns BR
    rows and walks their units (UE weights, decoded by DQ) BU at a time (grid: cdiv(N, BR))."""
    rows = sl.program_id(0) * BR + sl.arange(0, BR)
    rmask = rows < N
    r = sl.minimum(rows, N - 1)[:, None]
    x_row = x_ptr + x_off
    inv = 1.0
    if PRE == "norm":
        inv = rms_inv(x_row, K, eps)
    U = K // UE
    acc = sl.zeros((BR, BU), sl.float32)
    for k in range(0, U, BU):
        u = k + sl.arange(0, BU)
        umask = (u < U)[None, :]
        vals, cols = DQ(qw, sc, aux, r, sl.minimum(u, U - 1)[None, :], K)
        for s in sl.static_range(len(vals)):
            acc += vals[s] * x_at(x_row, cols[s], umask, K, w_norm, inv, PRE)
    y = sl.sum(acc, axis=1)
    if ACC:
        y += sl.load(y_ptr + y_off + rows, mask=rmask, other=0.0)
    sl.store(y_ptr + y_off + rows, y, mask=rmask)


@spvjit.kernel
def matvec_tiled_kernel(qw, sc, x_ptr, y_ptr, w_norm, N, K, x_off, y_off, eps,
                        MV: sl.constexpr, XS: sl.constexpr, PRE: sl.constexpr, KB: sl.constexpr,
                        ACC: sl.constexpr):
    """matvec for the row-tiled types (see packing.py). Grid: (P,); program p owns a
    contiguous range of 64-row tiles, which it reads as one stream.

    The [2, 8, 4] tiles hold one word of each of a tile's 64 rows (a lane: 4 consecutive
    rows, one vec4 load). f(x) for KB blocks (K/32 % KB == 0) is loaded once per program
    into uniform registers, each value pre-scaled by XS(e) for its position in a word, so
    the type's block helper MV decodes a quant with one AND and one conversion (see
    quant.py). With K/32 > KB, blocks go KB at a time and y is read back and added to."""
    pid = sl.program_id(0)
    nprog = sl.num_programs(0)
    x_row = x_ptr + x_off
    inv = 1.0
    if PRE == "norm":
        inv = rms_inv(x_row, K, eps)
    NB = K >> 5
    ntiles = (N + 63) >> 6
    per = (ntiles + nprog - 1) // nprog
    t0 = pid * per
    t1 = sl.minimum(t0 + per, ntiles)
    lanes = sl.arange(0, 2)[:, None, None] * 32 + sl.arange(0, 8)[None, :, None] * 4
    ro = sl.broadcast_to(lanes, (2, 8, 4)) + sl.broadcast_to(sl.arange(0, 4)[None, None, :], (2, 8, 4))
    for kb in range(0, NB, KB):
        xs = ()
        sxs = ()
        for j in sl.static_range(KB):
            sx = 0.0
            for e in sl.static_range(32):
                v = x_vals(x_row, 32 * (kb + j) + e, K, w_norm, inv, PRE)
                sx += v
                xs = xs + (v * XS(e),)
            sxs = sxs + (sx,)
        for t in range(t0, t1):
            acc = sl.zeros((2, 8, 4), sl.float32)
            for j in sl.static_range(KB):
                acc += MV(qw, sc, ro, t * NB + kb + j, xs, 32 * j, sxs[j])
            rows = t * 64 + ro
            out = y_ptr + y_off + rows
            if ACC:
                acc += sl.load(out, mask=rows < N, other=0.0)
            else:
                acc += sl.load(out, mask=(rows < N) & (kb > 0), other=0.0)
            sl.store(out, acc, mask=rows < N)


@spvjit.kernel
def matmul_kernel(qw, sc, aux, x_ptr, y_ptr, w_norm, M, N, K, ldx, ldy, y_off, eps,
                  DQ: sl.constexpr, UE: sl.constexpr, PRE: sl.constexpr, BM: sl.constexpr,
                  BN: sl.constexpr, BU: sl.constexpr, ACC: sl.constexpr):
    """y[m, y_off + n] (+)= sum_k f(x)[m, k] W[n, k] (grid: cdiv(N, BN), cdiv(M, BM)).
    Weights are decoded as [BU, BN] tiles (W transposed), the B operand of sl.dot."""
    offs_n = sl.program_id(0) * BN + sl.arange(0, BN)
    offs_m = sl.program_id(1) * BM + sl.arange(0, BM)
    n = sl.minimum(offs_n, N - 1)[None, :]
    x_rows = x_ptr + sl.minimum(offs_m, M - 1)[:, None] * ldx          # [BM, 1] row pointers
    inv = 1.0
    if PRE == "norm":
        inv = rows_inv_rms(x_rows, K, eps, BM)
    U = K // UE
    acc = sl.zeros((BM, BN), sl.float32)
    for k in range(0, U, BU):
        u = k + sl.arange(0, BU)
        umask = (u < U)[None, :]
        vals, cols = DQ(qw, sc, aux, n, sl.minimum(u, U - 1)[:, None], K)  # [BU, BN] each
        for s in sl.static_range(len(vals)):
            x = x_at(x_rows, sl.reshape(cols[s], (1, BU)), umask, K, w_norm, inv, PRE)   # [BM, BU]
            acc = sl.dot(x, vals[s], acc)
    out = y_ptr + offs_m[:, None] * ldy + y_off + offs_n[None, :]
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    if ACC:
        acc += sl.load(out, mask=mask, other=0.0)
    sl.store(out, acc, mask=mask)


@spvjit.kernel
def matmul_tiled_kernel(qw, sc, x_ptr, y_ptr, w_norm, M, N, K, ldx, ldy, y_off, eps,
                        TU: sl.constexpr, PRE: sl.constexpr, BM: sl.constexpr, ACC: sl.constexpr):
    """matmul for the row-tiled types (grid: cdiv(N, 64), cdiv(M, BM)): a program owns one
    64-row tile of W and BM rows of x. Per unit of 8 weights, the type's helper TU loads
    the tile's words and scales as [1, 64] vectors (one word of each row: vec4 loads);
    each decoded weight position goes to sl.dot as a [1, 64] row of B."""
    tile = sl.program_id(0)
    n64 = sl.arange(0, 64)[None, :]
    offs_m = sl.program_id(1) * BM + sl.arange(0, BM)
    x_rows = x_ptr + sl.minimum(offs_m, M - 1)[:, None] * ldx          # [BM, 1] row pointers
    inv = 1.0
    if PRE == "norm":
        inv = rows_inv_rms(x_rows, K, eps, BM)
    NB = K >> 5
    acc = sl.zeros((BM, 64), sl.float32)
    for u in range(0, K >> 3):                   # units of 8 weights: columns 8u .. 8u + 7
        b = TU(qw, sc, tile * NB + (u >> 2), n64, u)
        for e in sl.static_range(8):
            x = x_vals(x_rows, 8 * u + e, K, w_norm, inv, PRE)       # [BM, 1]
            acc = sl.dot(x, b[e], acc)
    offs_n = tile * 64 + n64
    out = y_ptr + offs_m[:, None] * ldy + y_off + offs_n
    mask = (offs_m[:, None] < M) & (offs_n < N)
    if ACC:
        acc += sl.load(out, mask=mask, other=0.0)
    sl.store(out, acc, mask=mask)
