"""A looped dot's staged f16 A as packed halves: one shared load per two rows and 4 k steps.

A looped dot whose A the loop cannot read from memory (block_loops.py: a computed tile, such
as attention's `p.to(f16)`) stages A in the shared scratch and reads A[i, k..k+3] back at a
uniform address in every trip.  lavapipe (Mesa 22.3) turns every per-lane shared load into a
loop over the lanes with an `if` per lane, whatever its width, and LLVM's cost for the
thousands of basic blocks this makes (dominator trees, register allocation across them) was
most of the driver's compile time of tutorial 06's backward: with those reads replaced by
constants, dK/dV at 32x64 blocks and HEAD_DIM 64 compiled in 13 s of CPU instead of 44.
So the number of load *instructions* in a trip's body is what to cut, not the bytes.

An f16 A packs two halves per 32-bit word: the 4 steps k..k+3 of rows 2p and 2p+1 are 8
halves, one uvec4 of the scratch:

    quad (k/4) * M/2 + p  =  [A[2p, k:k+2], A[2p, k+2:k+4], A[2p+1, k:k+2], A[2p+1, k+2:k+4]]

so a trip of 4 steps loads M/2 quads instead of M (f32 words, one row per quad).  The store
side also halves: in A's blocked layout with K % 4W == 0, lane l's register block for row i
and column block c holds A[i, 4(cW + l) .. +3], the same k range as its block for row i + 1,
so the lane writes both rows' halves as one uvec4.  The halves travel exactly (no rounding:
f16 -> f32 is exact), so the products are the ones of the f32-word staging.
"""
from __future__ import annotations

from ..ir import types as T


def applies(lw, a_t: T.TileType, U: int) -> bool:
    """An f16 A of even M whose rows span whole vec4 blocks of every lane (K % 4W == 0), read
    4 steps at a time (U % 4 == 0)."""
    M, K = a_t.shape
    return (a_t.elem == T.f16 and M % 2 == 0 and K % (4 * lw.W) == 0 and U % 4 == 0
            and lw.vec(M * K) == 4)


def store(lw, regs: list[int], M: int, K: int):
    """A's f16 registers (blocked layout, v=4) into the scratch as packed quads (see above)."""
    em, W = lw.em, lw.W
    h2 = em.b.type_vector(em.type_of_f16(), 2)
    pack = lambda lo, hi: em.op("OpBitcast", em.u32, em.op("OpCompositeConstruct", h2, lo, hi))  # noqa: E731
    cpr = K // (4 * W)                      # register blocks per row in each lane
    lane_part = em.imul(lw.lane, em.ci(M // 2))
    for p in range(M // 2):
        for c in range(cpr):
            j1, j2 = 2 * p * cpr + c, (2 * p + 1) * cpr + c
            r1, r2 = regs[4 * j1:4 * j1 + 4], regs[4 * j2:4 * j2 + 4]
            const = c * W * (M // 2) + p    # quad (cW + lane) * M/2 + p
            quad = lane_part if const == 0 else em.iadd(lane_part, em.ci(const))
            lw.mem.scratch_store4(quad, [pack(r1[0], r1[1]), pack(r1[2], r1[3]),
                                         pack(r2[0], r2[1]), pack(r2[2], r2[3])])


class Reader:
    """A[i, k + u] in f32 for a trip starting at k (a multiple of 4): one uvec4 load per row
    pair and 4 steps, cached for the trip."""

    def __init__(self, lw, M: int):
        self.lw, self.M = lw, M
        self.cache = {}
        em = lw.em
        self.h2 = em.b.type_vector(em.type_of_f16(), 2)
        self.f2 = em.b.type_vector(em.f32, 2)

    def at(self, i: int, k: int, u: int) -> int:
        em, half = self.lw.em, self.M // 2
        g, p = u // 4, i // 2
        if k not in self.cache:             # (k / 4) * M/2: the trip's first quad
            self.cache[k] = em.imul(em.op("OpShiftRightArithmetic", em.i32, k, em.ci(2)), em.ci(half))
        key = (k, g, p)
        if key not in self.cache:
            const = g * half + p
            quad = self.cache[k] if const == 0 else em.iadd(self.cache[k], em.ci(const))
            vals = []
            for w in self.lw.mem.scratch_load4(quad):
                pair = em.op("OpFConvert", self.f2, em.op("OpBitcast", self.h2, w))
                vals += [em.op("OpCompositeExtract", em.f32, pair, 0), em.op("OpCompositeExtract", em.f32, pair, 1)]
            self.cache[key] = vals
        return self.cache[key][4 * (i % 2) + u % 4]
