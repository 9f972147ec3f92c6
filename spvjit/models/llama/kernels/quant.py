"""Block decoding of every GGUF weight type, one small helper kernel per type.

A row of a quantized matrix is read in *units* of 8 weights: one 32-bit word of 4-bit
quants (Q6_K: a word of low bits and the word of high bits that goes with it; Q8_0: two
words of int8); F32/F16 units are single values (``unit_elems(QTYPE)``).
``dq_<type>(qw, sc, aux, row, u, K)`` decodes unit ``u`` of row ``row`` (index tiles of
any broadcastable shapes) of a ``rows x K`` matrix and returns two tuples of tiles,
``(values, cols)``: the float32 weights and the column each one belongs to. Loading a
word once and taking all its values from registers is what makes this fast (5x over
one gather per weight on lavapipe); the matrix-vector, matrix-matrix and embedding
kernels inline the same helpers. Indices must be in range: callers clamp them and mask
what they multiply.

The helpers read the layouts :mod:`.packing` makes at upload: row-major for the K-quants
(the file's bit order, so a unit's weights are not adjacent columns: ``cols`` says which
they are) and row-tiled for Q4_0, Q4_1 and Q8_0 (unit u is columns 8u .. 8u + 7).
Each helper computes what its numpy dequantizer in ``models/llama/quants.py`` computes,
with the same fp32 operations (the tests compare them bit for bit):

  qw   uint32 words of quant bits
  sc   per-block scales: float16 d (Q4_0, Q8_0, Q6_K), d, dmin (Q4_K); Q4_1: uint32 d | m << 16
  aux  uint32 words of K-quant sub-block scales (Q4_K: 12 bytes, Q6_K: 16 bytes / block)

For the row-tiled types these helpers serve the embedding lookup (and matvec_kernel /
matmul_kernel if called on them): ``linear.matvec_tiled_kernel`` and
``linear.matmul_tiled_kernel`` decode one word of 64 rows at a time instead.

F32 and F16 weights are plain arrays in ``qw`` (sc and aux unused), one value per unit.
"""

from __future__ import annotations

import spvjit
import spvjit.language as sl


@spvjit.kernel
def unit_elems(QTYPE: sl.constexpr):
    """Weights per unit (a compile-time int)."""
    if QTYPE == "F32" or QTYPE == "F16":
        return 1
    return 8


@spvjit.kernel
def dq_f32(qw, sc, aux, row, u, K):
    return (sl.load(qw + row * K + u),), (u,)


@spvjit.kernel
def dq_f16(qw, sc, aux, row, u, K):
    return (sl.load(qw + row * K + u).to(sl.float32),), (u,)


@spvjit.kernel
def _tile_block(row, u, K):
    """Row-tiled types: (tile of the row) * blocks per row + block of unit u."""
    return (row >> 6) * (K >> 5) + (u >> 2)


@spvjit.kernel
def _f16_lo(word):
    """The float16 in the low half of a uint32, as float32."""
    return (word & 0xFFFF).to(sl.uint16).to(sl.float16, bitcast=True).to(sl.float32)


@spvjit.kernel
def dq_q8_0(qw, sc, aux, row, u, K):
    # x = d * q, q int8. Unit u = words 2(u % 4) and 2(u % 4) + 1 of block u // 4, which
    # hold weights 8u .. 8u + 7 of the row (byte i of a word: weight 4w + i of the block).
    tb = _tile_block(row, u, K)
    r = row & 63
    w0 = (tb << 9) + ((u & 3) << 7) + r          # word 2(u % 4) of the block, this row
    words = (sl.load(qw + w0), sl.load(qw + w0 + 64))
    d = sl.load(sc + (tb << 6) + r).to(sl.float32)
    vals = ()
    cols = ()
    for i in sl.static_range(8):
        # move byte i % 4 to the top; the arithmetic shift back sign-extends it
        q = (words[i >> 2] << (24 - 8 * (i & 3))).to(sl.int32, bitcast=True) >> 24
        vals = vals + (d * q.to(sl.float32),)
        cols = cols + ((u << 3) + i,)
    return vals, cols


@spvjit.kernel
def _q4_unit(qw, sc, row, u, K):
    """Row-tiled Q4: the word of unit u (word u % 4 of block u // 4: weights 8u .. 8u + 7
    of the row, nibble p is weight 8u + p), the scale word of its block, the columns."""
    tb = _tile_block(row, u, K)
    word = sl.load(qw + (tb << 8) + ((u & 3) << 6) + (row & 63))
    s = sl.load(sc + (tb << 6) + (row & 63))
    cols = ()
    for p in sl.static_range(8):
        cols = cols + ((u << 3) + p,)
    return word, s, cols


@spvjit.kernel
def dq_q4_0(qw, sc, aux, row, u, K):
    # x = d * (q - 8)
    word, s, cols = _q4_unit(qw, sc, row, u, K)
    d = s.to(sl.float32)
    vals = ()
    for p in sl.static_range(8):
        q = ((word >> (4 * p)) & 15).to(sl.float32)
        vals = vals + (d * (q - 8.0),)
    return vals, cols


@spvjit.kernel
def dq_q4_1(qw, sc, aux, row, u, K):
    # x = d * q + m; sc holds d | m << 16 per block
    word, s, cols = _q4_unit(qw, sc, row, u, K)
    d = _f16_lo(s)
    m = _f16_lo(s >> 16)
    vals = ()
    for p in sl.static_range(8):
        q = ((word >> (4 * p)) & 15).to(sl.float32)
        vals = vals + (d * q + m,)
    return vals, cols


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
    # the 12 scale bytes b (3 words): s < 4: scale = b[s] & 63, min = b[s+4] & 63;
    # s >= 4: scale = (b[s+4] & 15) | (b[s-4] >> 6) << 4, min = (b[s+4] >> 4) | (b[s] >> 6) << 4.
    # Sub-blocks 2g and 2g+1 use byte lane j = s % 4 of each word.
    a0 = sl.load(aux + blk * 3)
    a1 = sl.load(aux + blk * 3 + 1)
    a2 = sl.load(aux + blk * 3 + 2)
    dm = ()
    for half in sl.static_range(2):
        s = 2 * g + half
        sh = (s & 3) << 3
        b0 = (a0 >> sh) & 255
        b1 = (a1 >> sh) & 255
        b2 = (a2 >> sh) & 255
        lo = s < 4
        scale = sl.where(lo, b0 & 63, (b2 & 15) | ((b0 >> 6) << 4)).to(sl.float32)
        mn = sl.where(lo, b1 & 63, (b2 >> 4) | ((b1 >> 6) << 4)).to(sl.float32)
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
def dequant(QTYPE: sl.constexpr, qw, sc, aux, row, u, K):
    """Unit ``u`` of row ``row`` of a ``QTYPE`` matrix: ``(values, cols)`` (see the module
    doc); picks the type's helper at compile time."""
    if QTYPE == "F32":
        return dq_f32(qw, sc, aux, row, u, K)
    if QTYPE == "F16":
        return dq_f16(qw, sc, aux, row, u, K)
    if QTYPE == "Q8_0":
        return dq_q8_0(qw, sc, aux, row, u, K)
    if QTYPE == "Q4_0":
        return dq_q4_0(qw, sc, aux, row, u, K)
    if QTYPE == "Q4_1":
        return dq_q4_1(qw, sc, aux, row, u, K)
    if QTYPE == "Q4_K":
        return dq_q4_k(qw, sc, aux, row, u, K)
    sl.static_assert(QTYPE == "Q6_K", "unsupported weight type")
    return dq_q6_k(qw, sc, aux, row, u, K)


@spvjit.kernel
def dequant_rows_kernel(qw, sc, aux, rows_ptr, out_ptr, K, QTYPE: sl.constexpr, BU: sl.constexpr):
    """out[i, :] = row rows[i] of the matrix (grid: n_rows, cdiv(units per row, BU)).
    Also the embedding lookup: the rows are token ids."""
    i = sl.program_id(0)
    U = K // unit_elems(QTYPE)
    u = sl.program_id(1) * BU + sl.arange(0, BU)
    vals, cols = dequant(QTYPE, qw, sc, aux, sl.load(rows_ptr + i), sl.minimum(u, U - 1), K)
    for s in sl.static_range(len(vals)):
        sl.store(out_ptr + i * K + cols[s], vals[s], mask=u < U)
