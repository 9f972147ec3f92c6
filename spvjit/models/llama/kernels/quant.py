"""Block decoding of the GGUF weight types, as spvjit helper kernels (inlined by callers).

Each type's helpers are named in its descriptor (:mod:`.qtypes`); the matrix-vector,
matrix-matrix and embedding kernels receive them as constexpr arguments, so no kernel
lists the types. Every helper computes what the type's numpy dequantizer in
``models/llama/quants.py`` computes, with the same fp32 operations in the same order
(the tests compare them bit for bit).

**Row-major helpers** ``dq_<type>(qw, sc, aux, row, u, K)`` decode *unit* ``u`` of row
``row`` of a ``rows x K`` matrix (index tiles of any broadcastable shapes) and return
two tuples of tiles, ``(values, cols)``: the float32 weights and the column each one
belongs to. A unit is what one loaded word gives (8 weights for 4-bit quants; F32,
F16, BF16: one value); loading a word once and taking all its values from registers is
what makes this fast (5x over one gather per weight on lavapipe). Units need not be
adjacent columns (the K-quants keep the file's bit order): ``cols`` says which they are.
Indices must be in range: callers clamp them and mask what they multiply. The arrays
are those :mod:`.packing` makes:

  qw   the quant bits as uint32 words (float types: the values)
  sc   per-block fp16 scales, in the order the descriptor lists them
  aux  uint32 words of packed sub-block scales

**Row-tiled helpers** (Q4_0, Q4_1, Q8_0, the default model's types, and Q5_0, Q5_1;
see packing.py for the layout): ``tu_<type>(qw, sc, tb, r, u)`` decodes unit ``u``
(columns 8u .. 8u + 7) of rows ``r`` (index within the 64-row tile, any shape) of
tile-block ``tb`` (tile * blocks per row + u // 4) into 8 values; ``mv_<type>(qw, sc, ro, tb, xs, x0, sx)`` is one
block's share of a matrix-vector product, sum_e W[ro, e] x[e], for the rows ``ro``,
from ``xs[x0 + e]`` = x[e] * ``xs_<q4|q8>(e)`` (pre-scaled so that a quant masked in
place, (word & (15 << 4p)) = q * 16^p exactly, needs no shift) and sx = sum_e x[e].
"""

from __future__ import annotations

import spvjit
import spvjit.language as sl

from ..quants import IQ4_VALUES


@spvjit.kernel
def _f16_lo(word):
    """The float16 in the low half of a uint32, as float32."""
    return (word & 0xFFFF).to(sl.uint16).to(sl.float16, bitcast=True).to(sl.float32)


@spvjit.kernel
def _unit_cols(u):
    """Columns of unit u when its 8 weights are the adjacent columns 8u .. 8u + 7."""
    cols = ()
    for p in sl.static_range(8):
        cols = cols + ((u << 3) + p,)
    return cols


# -- float types: one value per unit -------------------------------------------------------

@spvjit.kernel
def dq_f32(qw, sc, aux, row, u, K):
    return (sl.load(qw + row * K + u),), (u,)


@spvjit.kernel
def dq_f16(qw, sc, aux, row, u, K):
    return (sl.load(qw + row * K + u).to(sl.float32),), (u,)


@spvjit.kernel
def dq_bf16(qw, sc, aux, row, u, K):
    # qw: the uint16 bits; a bfloat16 is the top half of a float32
    return ((sl.load(qw + row * K + u).to(sl.uint32) << 16).to(sl.float32, bitcast=True),), (u,)


# -- row-tiled types: Q4_0, Q4_1, Q8_0 -----------------------------------------------------

@spvjit.kernel
def _tile_block(row, u, K):
    """(tile of the row) * blocks per row + block of unit u."""
    return (row >> 6) * (K >> 5) + (u >> 2)


@spvjit.kernel
def xs_q4(e):
    """Pre-scale of x for weight e of a Q4 block: nibble e % 8 of its word sits at 16^(e % 8)."""
    return 1.0 / (16 ** (e % 8))


@spvjit.kernel
def xs_q8(e):
    """Pre-scale of x for weight e of a Q8_0 block: byte e % 4 of its word sits at 256^(e % 4)."""
    return 1.0 / (256 ** (e % 4))


@spvjit.kernel
def _q4_word(qw, tb, r, u):
    """Word u % 4 of a Q4 tile-block: weights 8u .. 8u + 7 (nibble p is weight 8u + p)."""
    return sl.load(qw + (tb << 8) + ((u & 3) << 6) + r)


@spvjit.kernel
def _q4_dot(qw, ro, tb, xs, x0):
    """sum_e q_e * 16^p * xs[x0 + e] over a Q4 block's 32 weights (4 words of 64 rows)."""
    qx = sl.zeros(ro.shape, sl.float32)
    for w in sl.static_range(4):
        wd = sl.load(qw + ro + (tb * 4 + w) * 64)
        for p in sl.static_range(8):
            qx += (wd & (15 << (4 * p))).to(sl.float32) * xs[x0 + 8 * w + p]
    return qx


@spvjit.kernel
def tu_q4_0(qw, sc, tb, r, u):
    # x = d * (q - 8)
    word = _q4_word(qw, tb, r, u)
    d = sl.load(sc + (tb << 6) + r).to(sl.float32)
    vals = ()
    for p in sl.static_range(8):
        q = ((word >> (4 * p)) & 15).to(sl.float32)
        vals = vals + (d * (q - 8.0),)
    return vals


@spvjit.kernel
def mv_q4_0(qw, sc, ro, tb, xs, x0, sx):
    # sum d (q - 8) x = d (sum q x - 8 sum x)
    qx = _q4_dot(qw, ro, tb, xs, x0)
    return sl.load(sc + ro + tb * 64).to(sl.float32) * (qx - 8.0 * sx)


@spvjit.kernel
def dq_q4_0(qw, sc, aux, row, u, K):
    return tu_q4_0(qw, sc, _tile_block(row, u, K), row & 63, u), _unit_cols(u)


@spvjit.kernel
def tu_q4_1(qw, sc, tb, r, u):
    # x = d * q + m; sc holds d | m << 16 per block (the file's 4 bytes)
    word = _q4_word(qw, tb, r, u)
    s = sl.load(sc + (tb << 6) + r)
    d = _f16_lo(s)
    m = _f16_lo(s >> 16)
    vals = ()
    for p in sl.static_range(8):
        q = ((word >> (4 * p)) & 15).to(sl.float32)
        vals = vals + (d * q + m,)
    return vals


@spvjit.kernel
def mv_q4_1(qw, sc, ro, tb, xs, x0, sx):
    # sum (d q + m) x = d sum q x + m sum x
    qx = _q4_dot(qw, ro, tb, xs, x0)
    s = sl.load(sc + ro + tb * 64)
    return _f16_lo(s) * qx + _f16_lo(s >> 16) * sx


@spvjit.kernel
def dq_q4_1(qw, sc, aux, row, u, K):
    return tu_q4_1(qw, sc, _tile_block(row, u, K), row & 63, u), _unit_cols(u)


@spvjit.kernel
def tu_q8_0(qw, sc, tb, r, u):
    # x = d * q, q int8. Unit u = words 2(u % 4) and 2(u % 4) + 1 of the block (byte i of
    # a word: weight 4w + i of the block).
    w0 = (tb << 9) + ((u & 3) << 7) + r
    words = (sl.load(qw + w0), sl.load(qw + w0 + 64))
    d = sl.load(sc + (tb << 6) + r).to(sl.float32)
    vals = ()
    for i in sl.static_range(8):
        # move byte i % 4 to the top; the arithmetic shift back sign-extends it
        q = (words[i >> 2] << (24 - 8 * (i & 3))).to(sl.int32, bitcast=True) >> 24
        vals = vals + (d * q.to(sl.float32),)
    return vals


@spvjit.kernel
def mv_q8_0(qw, sc, ro, tb, xs, x0, sx):
    # Bytes are read as q + 128 (flip the sign bit: unsigned, masked in place), so
    # sum d q x = d (sum (q + 128) x - 128 sum x).
    qx = sl.zeros(ro.shape, sl.float32)
    for w in sl.static_range(8):
        wd = sl.load(qw + ro + (tb * 8 + w) * 64) ^ 0x80808080
        for i in sl.static_range(4):
            qx += (wd & (255 << (8 * i))).to(sl.float32) * xs[x0 + 4 * w + i]
    return sl.load(sc + ro + tb * 64).to(sl.float32) * (qx - 128.0 * sx)


@spvjit.kernel
def dq_q8_0(qw, sc, aux, row, u, K):
    return tu_q8_0(qw, sc, _tile_block(row, u, K), row & 63, u), _unit_cols(u)


# Row-tiled Q5_0 / Q5_1: Q4's 4 nibble words, then the block's qh word (bit e: bit 4 of
# weight e), 5 words of 64 rows per tile-block.

@spvjit.kernel
def _q5_tile_unit(qw, tb, r, u):
    """The 5-bit quants of unit u of a Q5 tile-block, as 8 uint32 tiles."""
    word = sl.load(qw + tb * 320 + ((u & 3) << 6) + r)
    high = sl.load(qw + tb * 320 + 256 + r) >> ((u & 3) << 3)
    q = ()
    for p in sl.static_range(8):
        q = q + (((word >> (4 * p)) & 15) | (((high >> p) & 1) << 4),)
    return q


@spvjit.kernel
def _q5_dot(qw, ro, tb, xs, x0):
    """sum_e q_e x_e over a Q5 block's 32 weights, from xs pre-scaled as for Q4: the
    nibbles as in _q4_dot, then each high bit masked in place, (qh & 2^e) = h_e 2^e,
    times xs[x0 + e] and the compile-time 16 * 16^(e % 8) / 2^e (powers of two: exact),
    which makes it h_e * 16 * x_e."""
    qx = sl.zeros(ro.shape, sl.float32)
    for w in sl.static_range(4):
        wd = sl.load(qw + ro + (tb * 5 + w) * 64)
        for p in sl.static_range(8):
            qx += (wd & (15 << (4 * p))).to(sl.float32) * xs[x0 + 8 * w + p]
    hw = sl.load(qw + ro + (tb * 5 + 4) * 64)
    for e in sl.static_range(32):
        qx += (hw & (1 << e)).to(sl.float32) * (xs[x0 + e] * (16.0 * 16 ** (e % 8) / 2 ** e))
    return qx


@spvjit.kernel
def tu_q5_0(qw, sc, tb, r, u):
    # x = d * (q - 16)
    q = _q5_tile_unit(qw, tb, r, u)
    d = sl.load(sc + (tb << 6) + r).to(sl.float32)
    vals = ()
    for p in sl.static_range(8):
        vals = vals + (d * (q[p].to(sl.float32) - 16.0),)
    return vals


@spvjit.kernel
def mv_q5_0(qw, sc, ro, tb, xs, x0, sx):
    qx = _q5_dot(qw, ro, tb, xs, x0)
    return sl.load(sc + ro + tb * 64).to(sl.float32) * (qx - 16.0 * sx)


@spvjit.kernel
def dq_q5_0(qw, sc, aux, row, u, K):
    return tu_q5_0(qw, sc, _tile_block(row, u, K), row & 63, u), _unit_cols(u)


@spvjit.kernel
def tu_q5_1(qw, sc, tb, r, u):
    # x = d * q + m; sc holds d | m << 16 per block
    q = _q5_tile_unit(qw, tb, r, u)
    s = sl.load(sc + (tb << 6) + r)
    d = _f16_lo(s)
    m = _f16_lo(s >> 16)
    vals = ()
    for p in sl.static_range(8):
        vals = vals + (d * q[p].to(sl.float32) + m,)
    return vals


@spvjit.kernel
def mv_q5_1(qw, sc, ro, tb, xs, x0, sx):
    qx = _q5_dot(qw, ro, tb, xs, x0)
    s = sl.load(sc + ro + tb * 64)
    return _f16_lo(s) * qx + _f16_lo(s >> 16) * sx


@spvjit.kernel
def dq_q5_1(qw, sc, aux, row, u, K):
    return tu_q5_1(qw, sc, _tile_block(row, u, K), row & 63, u), _unit_cols(u)


# -- other 32-weight block types (row-major): IQ4_NL -------------------------------------
# qw: the 4 words of qs per block (word w: bytes 4w .. 4w + 3; byte j holds weight j in
# its low nibble and j + 16 in its high nibble), so unit u (word u of the row) holds
# weights 4w + i and 4w + i + 16 (i < 4) of block u // 4.

@spvjit.kernel
def _q32_unit(qw, row, u, K):
    """The qs word of unit u, the nibble of each of its 8 weights, and their columns."""
    word = sl.load(qw + row * (K >> 3) + u)
    base = ((u >> 2) << 5) + ((u & 3) << 2)
    nib = ()
    cols = ()
    for i in sl.static_range(8):
        nib = nib + ((word >> (8 * (i & 3) + 4 * (i >> 2))) & 15,)
        cols = cols + (base + (i & 3) + 16 * (i >> 2),)
    return nib, cols


# IQ4_VALUES as int8 bytes, 4 to a word: a code is looked up with two selects and a shift
IQ4_WORDS = sl.constexpr(tuple(
    int.from_bytes(bytes(v & 255 for v in IQ4_VALUES[4 * k:4 * k + 4]), "little") for k in range(4)))


@spvjit.kernel
def iq4_value(q):
    """IQ4_VALUES[q] as float32, for a uint32 tile of 4-bit codes q."""
    word = sl.where(q < 8, sl.where(q < 4, IQ4_WORDS[0], IQ4_WORDS[1]),
                    sl.where(q < 12, IQ4_WORDS[2], IQ4_WORDS[3]))
    # move byte q % 4 to the top; the arithmetic shift back sign-extends it
    return ((word << (24 - 8 * (q & 3))).to(sl.int32, bitcast=True) >> 24).to(sl.float32)


@spvjit.kernel
def dq_iq4_nl(qw, sc, aux, row, u, K):
    # x = d * T[q]; sc: d per block
    nib, cols = _q32_unit(qw, row, u, K)
    d = sl.load(sc + row * (K >> 5) + (u >> 2)).to(sl.float32)
    vals = ()
    for i in sl.static_range(8):
        vals = vals + (d * iq4_value(nib[i]),)
    return vals, cols


@spvjit.kernel
def dequant_rows_kernel(qw, sc, aux, rows_ptr, out_ptr, K, row0, n_rows, DQ: sl.constexpr,
                        UE: sl.constexpr, BU: sl.constexpr):
    """out[i, :] = row rows[i] of the matrix (grid: n_rows, cdiv(units per row, BU)); DQ is
    the type's row-major helper, UE its weights per unit. The matrix holds rows row0 ..
    row0 + n_rows - 1 (a part of a split one); ids outside them are left alone. Also the
    embedding lookup: the rows are token ids."""
    i = sl.program_id(0)
    U = K // UE
    u = sl.program_id(1) * BU + sl.arange(0, BU)
    r = sl.load(rows_ptr + i) - row0
    inside = (r >= 0) & (r < n_rows)
    vals, cols = DQ(qw, sc, aux, sl.minimum(sl.maximum(r, 0), n_rows - 1), sl.minimum(u, U - 1), K)
    for s in sl.static_range(len(vals)):
        sl.store(out_ptr + i * K + cols[s], vals[s], mask=(u < U) & inside)
