"""Decoding helpers of the 256-weight super-block types (row-major): Q2_K, Q3_K, Q4_K,
Q5_K, Q6_K and IQ4_XS. Same contract as the helpers in :mod:`.quant` (its module doc):
``dq_<type>(qw, sc, aux, row, u, K) -> (values, cols)``, bit for bit what the numpy
dequantizer in ``models/llama/quants.py`` computes. A unit is one word of the block's
main quant bits (8 weights of 4-bit quants, 16 of 2-bit ones) with the high-bit word
that goes with it; ``blk`` below is the block's index in the whole matrix.
"""

from __future__ import annotations

import spvjit
import spvjit.language as sl

from .quant import _f16_lo, iq4_value


@spvjit.kernel
def _byte(words, j):
    """Byte j of a little-endian run of uint32 words at ``words`` (a pointer)."""
    return (sl.load(words + (j >> 2)) >> ((j & 3) << 3)) & 255


@spvjit.kernel
def dq_q2_k(qw, sc, aux, row, u, K):
    # qw: 16 words of qs per block; sc: d, dmin; aux: the 16 scale bytes (4 words).
    # Unit u = qs word w = u % 16 (bytes 32h + l, h = w // 8, l = 4 (w % 8) + i): weight
    # 128h + 32k + l is bits 2k..2k+1 of byte i; its group (e // 16) is 8h + 2k + (l // 16).
    # x = (d * (s & 15)) * q - dmin * (s >> 4), s the group's scale byte.
    blk = row * (K >> 8) + (u >> 4)
    w = u & 15
    h = w >> 3
    word = sl.load(qw + row * (K >> 4) + u)
    d = sl.load(sc + blk * 2).to(sl.float32)
    dmin = sl.load(sc + blk * 2 + 1).to(sl.float32)
    g0 = (h << 3) + ((w >> 2) & 1)
    base = ((u >> 4) << 8) + (h << 7) + ((w & 7) << 2)
    vals = ()
    cols = ()
    for k in sl.static_range(4):
        s = _byte(aux + (blk << 2), g0 + 2 * k)
        dl = d * (s & 15).to(sl.float32)
        ml = dmin * (s >> 4).to(sl.float32)
        for i in sl.static_range(4):
            q = ((word >> (8 * i + 2 * k)) & 3).to(sl.float32)
            vals = vals + (dl * q - ml,)
            cols = cols + (base + 32 * k + i,)
    return vals, cols


@spvjit.kernel
def _q3_k_scale(aux, blk, j):
    """Signed 6-bit scale j of a Q3_K block (see quants.q3_k_scales), as float32."""
    a = aux + blk * 3
    low = (_byte(a, j & 7) >> ((j >> 3) << 2)) & 15
    high = (_byte(a, 8 + (j & 3)) >> ((j >> 2) << 1)) & 3
    return ((low | (high << 4)).to(sl.int32) - 32).to(sl.float32)


@spvjit.kernel
def dq_q3_k(qw, sc, aux, row, u, K):
    # qw: 8 words of hmask then 16 of qs per block; sc: d; aux: the 12 scale bytes.
    # Unit u = qs word w = u % 16, as in Q2_K, with hmask word w % 8 (bytes l): weight
    # 128h + 32k + l has bit 4h + k of hmask byte l as its third bit (clear: minus 4).
    # x = (d * scale[e // 16]) * q
    blk = row * (K >> 8) + (u >> 4)
    w = u & 15
    h = w >> 3
    lw = sl.load(qw + blk * 24 + 8 + w)
    hw = sl.load(qw + blk * 24 + (w & 7))
    d = sl.load(sc + blk).to(sl.float32)
    g0 = (h << 3) + ((w >> 2) & 1)
    base = ((u >> 4) << 8) + (h << 7) + ((w & 7) << 2)
    vals = ()
    cols = ()
    for k in sl.static_range(4):
        dl = d * _q3_k_scale(aux, blk, g0 + 2 * k)
        for i in sl.static_range(4):
            low = (lw >> (8 * i + 2 * k)) & 3
            high = (hw >> (8 * i + k + (h << 2))) & 1
            q = ((low | (high << 2)).to(sl.int32) - 4).to(sl.float32)
            vals = vals + (dl * q,)
            cols = cols + (base + 32 * k + i,)
    return vals, cols


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
def _k_dm(sc, aux, blk, g):
    """(d * scale, dmin * min) of sub-blocks 2g and 2g + 1 of a Q4_K / Q5_K block."""
    d = sl.load(sc + blk * 2).to(sl.float32)
    dmin = sl.load(sc + blk * 2 + 1).to(sl.float32)
    a0 = sl.load(aux + blk * 3)
    a1 = sl.load(aux + blk * 3 + 1)
    a2 = sl.load(aux + blk * 3 + 2)
    dm = ()
    for half in sl.static_range(2):
        scale, mn = _k_scale_min(a0, a1, a2, 2 * g + half)
        dm = dm + ((d * scale, dmin * mn),)
    return dm


@spvjit.kernel
def dq_q4_k(qw, sc, aux, row, u, K):
    # Super-block of 256 = 4 groups of 64 (32 words each block); group g's 32 quant bytes
    # hold sub-block 2g in their low nibbles and 2g+1 in their high nibbles.
    # x = d * scale[s] * q - dmin * min[s], 6-bit scale and min per 32-sub-block s.
    blk = row * (K >> 8) + (u >> 5)
    w = u & 31
    g = w >> 3
    word = sl.load(qw + row * (K >> 3) + u)
    dm = _k_dm(sc, aux, blk, g)
    base = ((u >> 5) << 8) + (g << 6) + ((w & 7) << 2)
    vals = ()
    cols = ()
    for i in sl.static_range(8):
        q = ((word >> (8 * (i & 3) + 4 * (i >> 2))) & 15).to(sl.float32)
        vals = vals + (dm[i >> 2][0] * q - dm[i >> 2][1],)
        cols = cols + (base + (i & 3) + 32 * (i >> 2),)
    return vals, cols


@spvjit.kernel
def dq_q5_k(qw, sc, aux, row, u, K):
    # Q4_K plus a fifth bit: qw holds 8 words of qh then 32 of qs per block; bit j of qh
    # byte l is bit 4 of element l of sub-block j. Unit u = qs word w = u % 32 (as Q4_K)
    # with qh word w % 8.
    blk = row * (K >> 8) + (u >> 5)
    w = u & 31
    g = w >> 3
    lw = sl.load(qw + blk * 40 + 8 + w)
    hw = sl.load(qw + blk * 40 + (w & 7))
    dm = _k_dm(sc, aux, blk, g)
    base = ((u >> 5) << 8) + (g << 6) + ((w & 7) << 2)
    vals = ()
    cols = ()
    for i in sl.static_range(8):
        low = (lw >> (8 * (i & 3) + 4 * (i >> 2))) & 15
        high = (hw >> (8 * (i & 3) + (g << 1) + (i >> 2))) & 1
        q = (low | (high << 4)).to(sl.float32)
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
def dq_iq4_xs(qw, sc, aux, row, u, K):
    # qw: the 32 words of qs per block; aux: 2 words per block, d | scales_h << 16 and
    # the 4 bytes of scales_l. Sub-block j (32 weights) has qs bytes 16j .. 16j + 15, byte
    # l holding its weights l (low nibble) and l + 16 (high); its 6-bit scale is nibble j
    # of scales_l with bits 2j..2j+1 of scales_h on top. x = (d * (s - 32)) * T[q].
    blk = row * (K >> 8) + (u >> 5)
    w = u & 31
    j = w >> 2
    word = sl.load(qw + row * (K >> 3) + u)
    head = sl.load(aux + blk * 2)
    ls = ((sl.load(aux + blk * 2 + 1) >> (j << 2)) & 15) | (((head >> (16 + (j << 1))) & 3) << 4)
    dl = _f16_lo(head) * (ls.to(sl.int32) - 32).to(sl.float32)
    base = ((u >> 5) << 8) + (j << 5) + ((w & 3) << 2)
    vals = ()
    cols = ()
    for i in sl.static_range(8):
        q = (word >> (8 * (i & 3) + 4 * (i >> 2))) & 15
        vals = vals + (dl * iq4_value(q),)
        cols = cols + (base + (i & 3) + 16 * (i >> 2),)
    return vals, cols
