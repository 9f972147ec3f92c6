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

**Row-tiled helpers** (Q4_0, Q4_1, Q8_0, the default model's types; see packing.py for
the layout): ``tu_<type>(qw, sc, tb, r, u)`` decodes unit ``u`` (columns 8u .. 8u + 7)
of rows ``r`` (index within the 64-row tile, any shape) of tile-block ``tb`` (tile *
blocks per row + u // 4) into 8 values; ``mv_<type>(qw, sc, ro, tb, xs, x0, sx)`` is one
block's share of a matrix-vector product, sum_e W[ro, e] x[e], for the rows ``ro``,
from ``xs[x0 + e]`` = x[e] * ``xs_<q4|q8>(e)`` (pre-scaled so that a quant masked in
place, (word & (15 << 4p)) = q * 16^p exactly, needs no shift) and sx = sum_e x[e].
"""

from __future__ import annotations

import spvjit
import spvjit.language as sl


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


# -- K-quants (256-weight super-blocks, row-major) -----------------------------------------

@spvjit.kernel
def _k_scale_min(a0, a1, a2, s):
    """6-bit scale and min of sub-block s (Q4_K, Q5_K) from the 12 scale bytes b (3 words
    a0..a2): s < 4: scale = b[s] & 63, min = b[s+4] & 63; s >= 4: scale = (b[s+4] & 15) |
    (b[s-4] >> 6) << 4, min = (b[s+4] >> 4) | (b[s] >> 6) << 4. Byte lane s % 4 of each word."""
    sh = (s & 3) << 3
    b0 = (a0 >> sh) & 255
    b1 = (a1 >> sh) & 255
    b2 = (a2 >> sh) & 255
    lo = s < 4
    scale = sl.where(lo, b0 & 63, (b2 & 15) | ((b0 >> 6) << 4)).to(sl.float32)
    mn = sl.where(lo, b1 & 63, (b2 >> 4) | ((b1 >> 6) << 4)).to(sl.float32)
    return scale, mn


@spvjit.kernel
def dq_q4_k(qw, sc, aux, row, u, K):
    # Super-block of 256 = 4 groups of 64 (32 words each block); group g's 32 quant bytes
    # hold sub-block 2g in their low nibbles and 2g+1 in their high nibbles.
    # x = d * scale[s] * q - dmin * min[s], 6-bit scale and min per 32-sub-block s.
    blk = row * (K >> 8) + (u >> 5)
    w = u & 31
    g = w >> 3
    word = sl.load(qw + row * (K >> 3) + u)
    d = sl.load(sc + blk * 2).to(sl.float32)
    dmin = sl.load(sc + blk * 2 + 1).to(sl.float32)
    a0 = sl.load(aux + blk * 3)
    a1 = sl.load(aux + blk * 3 + 1)
    a2 = sl.load(aux + blk * 3 + 2)
    dm = ()
    for half in sl.static_range(2):   # sub-blocks 2g (low nibbles) and 2g + 1 (high)
        scale, mn = _k_scale_min(a0, a1, a2, 2 * g + half)
        dm = dm + ((d * scale, dmin * mn),)
    base = ((u >> 5) << 8) + (g << 6) + ((w & 7) << 2)
    vals = ()
    cols = ()
    for i in sl.static_range(8):
        q = ((word >> (8 * (i & 3) + 4 * (i >> 2))) & 15).to(sl.float32)
        vals = vals + (dm[i >> 2][0] * q - dm[i >> 2][1],)
        cols = cols + (base + (i & 3) + 32 * (i >> 2),)
    return vals, cols


@spvjit.kernel
def dq_q6_k(qw, sc, aux, row, u, K):
    # Super-block of 256 = 2 halves of 128; a block's qw holds 32 words of ql then 16
    # of qh. Half h has ql bytes 64h..64h+63: byte 64h + 32c + l holds quarter c's lane l
    # (low nibble) and quarter c + 2's (high nibble); qh byte 32h + l holds bits 2k..2k+1
    # of quarter k's lane l. x = d * scale[e // 16] * (q - 32), scales int8.
    # Unit u = ql word w = u % 32 of block u // 32, with its qh word.
    blk = row * (K >> 8) + (u >> 5)
    w = u & 31
    h = w >> 4
    c = (w >> 3) & 1
    l0 = (w & 7) << 2                 # lane of the word's first byte
    lw = sl.load(qw + blk * 48 + w)
    hw = sl.load(qw + blk * 48 + 32 + (h << 3) + (w & 7))
    d = sl.load(sc + blk).to(sl.float32)
    ds = ()
    for half in sl.static_range(2):   # low nibbles: quarter c, high nibbles: quarter c + 2
        si = (h << 3) + ((c + 2 * half) << 1) + (l0 >> 4)     # scale index (e // 16)
        sw = sl.load(aux + (blk << 2) + (si >> 2))
        scale = (sw << (24 - ((si & 3) << 3))).to(sl.int32, bitcast=True) >> 24
        ds = ds + (d * scale.to(sl.float32),)
    base = ((u >> 5) << 8) + (h << 7) + (c << 5) + l0
    vals = ()
    cols = ()
    for i in sl.static_range(8):
        k_shift = 2 * (2 * (i >> 2))  # quarter offset 0 or 2 -> qh bit 2k = 2c + 4*(i >> 2)
        low = (lw >> (8 * (i & 3) + 4 * (i >> 2))) & 15
        high = (hw >> (8 * (i & 3) + (c << 1) + k_shift)) & 3
        q = (low | (high << 4)).to(sl.float32) - 32.0
        vals = vals + (ds[i >> 2] * q,)
        cols = cols + (base + (i & 3) + 64 * (i >> 2),)
    return vals, cols


@spvjit.kernel
def dequant_rows_kernel(qw, sc, aux, rows_ptr, out_ptr, K, DQ: sl.constexpr, UE: sl.constexpr,
                        BU: sl.constexpr):
    """out[i, :] = row rows[i] of the matrix (grid: n_rows, cdiv(units per row, BU)); DQ is
    the type's row-major helper, UE its weights per unit. Also the embedding lookup: the
    rows are token ids."""
    i = sl.program_id(0)
    U = K // UE
    u = sl.program_id(1) * BU + sl.arange(0, BU)
    vals, cols = DQ(qw, sc, aux, sl.load(rows_ptr + i), sl.minimum(u, U - 1), K)
    for s in sl.static_range(len(vals)):
        sl.store(out_ptr + i * K + cols[s], vals[s], mask=u < U)
