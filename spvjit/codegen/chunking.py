"""Big tiles on one subgroup of a CPU driver: the program runs as a loop over slices of a
row-parallel axis (ir/passes/strip_mine.py), so that each lane holds a slice's registers.

llvmpipe compiles one subgroup's code, and LLVM's register allocation and scheduling grow
faster than linearly with the values live in a lane.  From Mesa 26 such kernels spread over
more lanes instead (layout.spread_over_warps); before it, where the spread form runs 2-10x
slower, they are cut into slices.  Tutorial 06's dK/dV at Triton's 32x128 blocks (tiles of
128x32: 512 registers per lane) compiled on Mesa 22.3 in 107 s whole, 13.5 s as four slices
of 32 rows and 6.3 s as eight of 16 with its dots looped (docs/PERFORMANCE.md, "Big tiles in
slices").
"""
from __future__ import annotations

from ..ir.core import KernelIR
from ..ir.passes.strip_mine import row_axes, strip_mine

CHUNK_ABOVE_REGS = 256
     # the same bound as layout.SPREAD_ABOVE_REGS: 32x32 tiles (128 registers per lane on 8
     # lanes) stay whole, and no tile off the cut axis may hold more after the cut
CHUNK_TO_REGS = 128
     # the tiles on the cut axis are cut until they hold at most this many registers per lane
CHUNK_TO_REGS_DOTS = 64
     # the same in a kernel with several dots, whose accumulators and operands are live in a
     # lane together: LLVM's greedy register allocation took most of the driver's time.
     # Tutorial 06 at Triton's blocks, HEAD_DIM 16, on lavapipe 22.3: dK/dV (four dots) compiled
     # in 6.3 s instead of 13.5 s and dQ in 6.6 s instead of 10.5 s with the backward as fast
     # (ratios to numpy 0.86-1.18 against 0.74-1.32), the forward (two dots) in 7.4 s instead
     # of 13.9 s and ran 7-20% slower (16.9-20.4 ms against 15.8-18.0 ms at N_CTX 1024).  The
     # tutorial matmul (one dot) at 64x64x32 ran slower in 8-row slices (16.7 against 21.1
     # GFLOP/s) for 0.3 s less compile, so a lone dot keeps CHUNK_TO_REGS


def max_numel(kernel: KernelIR) -> int:
    """Elements of the kernel's biggest tile."""
    best = 1
    for op in kernel.walk():
        for v in list(op.results) + list(op.operands):
            best = max(best, v.type.numel if v.type.shape else 1)
    return best


def plan_chunks(kernel: KernelIR, w: int, caps):
    """(axis, slices) to cut `kernel` into on `caps` at W lanes, or None: only on a CPU
    driver running one subgroup per program, without the driver's emulated cooperative
    matrices (their kernels were sized for one subgroup) and unless SPVJIT_WHOLE_TILES asks
    for whole tiles (caps.chunk_big_tiles), where the biggest tile holds more than
    CHUNK_ABOVE_REGS per lane.  The fewest slices that bring every tile to CHUNK_TO_REGS per
    lane (CHUNK_TO_REGS_DOTS with several dots) on the cut axis and leave none above
    CHUNK_ABOVE_REGS off it, on the axis that needs fewest; None where no axis can."""
    sg = caps.subgroup_size
    if not (caps.cpu and sg and w == sg) or caps.cooperative_matrix or not caps.chunk_big_tiles:
        return None
    if max_numel(kernel) <= CHUNK_ABOVE_REGS * w:
        return None
    dots = sum(op.name == "dot" for op in kernel.walk())
    to_regs = CHUNK_TO_REGS_DOTS if dots > 1 else CHUNK_TO_REGS
    # sources (aranges, splats, constants) have the sizes of the tiles they feed, counted there
    sizes = [(v, v.type.numel) for op in kernel.walk() if op.name not in ("arange", "splat", "constant")
             for v in op.results if v.type.shape]
    best = None
    for axis in row_axes(kernel):
        chunks = 2
        off_axis = max([n for v, n in sizes if id(v) not in axis.dims], default=0)
        on_axis = max([n for v, n in sizes if id(v) in axis.dims], default=0)
        while axis.size % chunks == 0 and off_axis <= CHUNK_ABOVE_REGS * w:
            if on_axis // chunks <= to_regs * w:
                if best is None or chunks < best[1]:
                    best = (axis, chunks)
                break
            chunks *= 2
    return best


def chunk_big_tiles(kernel: KernelIR, w: int, caps) -> KernelIR:
    """`kernel` cut into slices where plan_chunks says so (in place), else unchanged."""
    plan = plan_chunks(kernel, w, caps)
    if plan is not None:
        strip_mine(kernel, *plan)
    return kernel
