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

The helpers read the layout :mod:`.packing` makes at upload. The quants keep the
file's bit order, so each helper is the twin of its numpy dequantizer in
``models/llama/quants.py`` (the tests compare them bit for bit):

  qw   uint32 words of quant bits, row-major: each row's blocks' quant bytes back to back
  sc   float16 per-block scale fields in file order (d; d, m; d, dmin), row-major
  aux  uint32 words of K-quant sub-block scales (Q4_K: 12 bytes, Q6_K: 16 bytes / block)

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
def dq_q8_0(qw, sc, aux, row, u, K):
    # x = d * q, q int8. A unit is two words (8 quants: with one-word units the per-unit
    # work made the logits matvec ~30% slower); word w of a row holds quants 4w..4w+3,
    # byte i at bits 8i..8i+7.
    base = qw + row * (K >> 2) + 2 * u
    words = (sl.load(base), sl.load(base + 1))
    d = sl.load(sc + row * (K >> 5) + (u >> 2)).to(sl.float32)
    vals = ()
    cols = ()
    for i in sl.static_range(8):
        # move byte i % 4 to the top; the arithmetic shift back sign-extends it
        q = (words[i >> 2] << (24 - 8 * (i & 3))).to(sl.int32, bitcast=True) >> 24
        vals = vals + (d * q.to(sl.float32),)
        cols = cols + ((u << 3) + i,)
    return vals, cols


@spvjit.kernel
def _q4_cols(u):
    """Columns of a Q4_0/Q4_1 unit: byte j of a 32-block holds element j (low nibble)
    and j + 16 (high nibble); unit u is bytes 4(u%4)..4(u%4)+3 of block u // 4."""
    base = ((u >> 2) << 5) + ((u & 3) << 2)
    cols = ()
    for i in sl.static_range(8):
        cols = cols + (base + (i & 3) + 16 * (i >> 2),)
    return cols


@spvjit.kernel
def dq_q4_0(qw, sc, aux, row, u, K):
    # x = d * (q - 8)
    word = sl.load(qw + row * (K >> 3) + u)
    d = sl.load(sc + row * (K >> 5) + (u >> 2)).to(sl.float32)
    vals = ()
    for i in sl.static_range(8):
        q = ((word >> (8 * (i & 3) + 4 * (i >> 2))) & 15).to(sl.float32)
        vals = vals + (d * (q - 8.0),)
    return vals, _q4_cols(u)


@spvjit.kernel
def dq_q4_1(qw, sc, aux, row, u, K):
    # x = d * q + m; sc holds (d, m) per block
    word = sl.load(qw + row * (K >> 3) + u)
    s = (row * (K >> 5) + (u >> 2)) * 2
    d = sl.load(sc + s).to(sl.float32)
    m = sl.load(sc + s + 1).to(sl.float32)
    vals = ()
    for i in sl.static_range(8):
        q = ((word >> (8 * (i & 3) + 4 * (i >> 2))) & 15).to(sl.float32)
        vals = vals + (d * q + m,)
    return vals, _q4_cols(u)


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
