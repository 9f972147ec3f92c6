"""How a tile's elements are spread over the W invocations of a workgroup.

The blocked layout: flat (row-major) element f lives in lane (f // v) % W,
register (f // (v*W)) * v + f % v, where the vector width v is 4 when the
tile's size is a multiple of 4W (so contiguous loads become one vec4 load per
4 registers) and 1 otherwise (lane f % W, register f // W).  Consecutive
lanes touch consecutive addresses and elementwise ops never move data.
Scalars are uniform: every lane holds them.

Ops that move elements (broadcast, trans, reshape, reductions) are described
by an `IndexMap`: the source flat index for each destination flat index.
Since W and shapes are compile-time constants, the lowering evaluates the map
for every lane at compile time and moves data through shared memory only for
registers where the element really lives in another lane.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np


def strides(shape) -> list[int]:
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return out[::-1]


@dataclass(frozen=True)
class IndexMap:
    """s(f) = sum(((f // div) % mod) * mul for each term) + offset; mod 0 means no modulo."""
    terms: tuple[tuple[int, int, int], ...]
    offset: int = 0

    def eval(self, f: np.ndarray) -> np.ndarray:
        s = np.full_like(f, self.offset)
        for div, mod, mul in self.terms:
            q = f // div
            if mod:
                q = q % mod
            s = s + q * mul
        return s


def identity_map() -> IndexMap:
    return IndexMap(((1, 0, 1),))


def broadcast_map(src_shape, dst_shape) -> IndexMap:
    ds, ss = strides(dst_shape), strides(src_shape)
    terms = tuple((ds[d], dst_shape[d], ss[d]) for d in range(len(dst_shape))
                  if src_shape[d] == dst_shape[d] and dst_shape[d] > 1)
    return IndexMap(terms)


def trans_map(src_shape) -> IndexMap:
    m, n = src_shape            # destination is [n, m]; dest flat f = j*m + i -> src i*n + j
    return IndexMap(((1, m, n), (m, 0, 1)))


def reduce_base_map(src_shape, axis: int) -> tuple[IndexMap, int, int]:
    """For reducing `axis`: (map dest flat -> src flat of k=0, stride of k, K)."""
    dst_shape = src_shape[:axis] + src_shape[axis + 1:]
    ds, ss = strides(dst_shape), strides(src_shape)
    src_dims = [d for d in range(len(src_shape)) if d != axis]
    terms = tuple((ds[i], dst_shape[i], ss[d]) for i, d in enumerate(src_dims) if dst_shape[i] > 1)
    return IndexMap(terms), ss[axis], src_shape[axis]


def flat_np(lanes, r: int, w: int, v: int):
    """Flat index held by (lane, register r) in the blocked layout of vector width v.

    With v > 1 each lane holds runs of v consecutive elements (lane l: v*l .. v*l+v-1,
    then v*(l+W) ...), so one vector load fills v registers."""
    return (r // v) * (v * w) + lanes * v + (r % v)


def lane_np(f, w: int, v: int):
    return (f // v) % w


def reg_np(f, w: int, v: int):
    return (f // (v * w)) * v + f % v


def vec_width(numel: int, w: int, enabled: bool) -> int:
    return 4 if enabled and numel % (4 * w) == 0 else 1


def regs(numel: int, w: int) -> int:
    return max(1, -(-numel // w))


SPREAD_FROM_MESA = (26, 0)
     # llvmpipe from this version runs a program over num_warps * 32 lanes where its biggest
     # tile would hold more than SPREAD_ABOVE_REGS registers per lane on one subgroup.  Mesa
     # 26.1 (2-core AVX2 host) compiled tutorial 06's dK/dV at Triton's 32x128 blocks in 4.6 s
     # instead of 196 s that way, dQ at 128x32 in 3.5 s, the tutorial matmul's 64x64x32 in 2.1 s
     # instead of 43.6 s, and ran them as fast (backward 78 against 74 ms, matmul 5.3 against
     # 5.7 GFLOP/s).  Mesa 22.3 compiled dK/dV in 2.5 s too but ran the backward 3.3x slower
     # (431 against 131 ms) and the matmul 10x (its per-lane shared-memory accesses inside
     # control flow are loops over the lanes), so it keeps one subgroup (docs/PERFORMANCE.md)
     # and cuts such tiles into slices instead (chunking.py)
SPREAD_ABOVE_REGS = 256
     # 32x32 tiles (128 registers per lane on 8 lanes) stay on one subgroup: tutorial 06's
     # forward at 32x32 blocks ran 29.3 ms over 32 lanes against 19.4 ms on one subgroup


def choose_workgroup(max_numel: int, num_warps: int, caps) -> int:
    """W, the lanes of one program.

    GPUs: num_warps * 32 as in Triton.  CPU drivers (lavapipe) run a workgroup
    as a loop over SIMD subgroups and pay dearly for barriers, so there one
    program is one subgroup and all exchanges become subgroup ops, except where
    spread_over_warps says a big tile is cheaper spread as on a GPU.  Never more
    lanes than the largest tile has elements.
    """
    sg = caps.subgroup_size
    if caps.cpu and sg and not spread_over_warps(max_numel, caps):
        want = sg
    else:
        want = num_warps * 32
    biggest = 1
    while biggest < max_numel:
        biggest *= 2
    return max(1, min(want, biggest, caps.max_workgroup_invocations))


def spread_over_warps(max_numel: int, caps) -> bool:
    """On a CPU driver, whether a kernel whose biggest tile has `max_numel` elements runs
    num_warps * 32 lanes instead of one subgroup: llvmpipe from SPREAD_FROM_MESA, where one
    subgroup would hold more than SPREAD_ABOVE_REGS of the tile's registers per lane (LLVM's
    register allocation and scheduling grow faster than linearly with the values live in
    one lane; tiles spread over more lanes cost that driver no run time).  Not where kernels
    take the driver's emulated cooperative matrices (SPVJIT_CPU_COOPMAT=1): their kernels
    (the llama prompt matmul's CPU blocks, the coopmat tests) were sized and measured on one
    subgroup, and the spread form was not measured with them."""
    mesa, sg = caps.mesa_version, caps.subgroup_size
    return bool(caps.cpu and sg and mesa is not None and mesa >= SPREAD_FROM_MESA
                and not caps.cooperative_matrix and max_numel > SPREAD_ABOVE_REGS * sg)


def tile_numel(shape) -> int:
    return prod(shape) if shape else 1
