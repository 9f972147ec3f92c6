"""The llama kernels' launch layouts on the device at hand (rules: :mod:`spvjit.layouts`).

CPU drivers keep the block sizes measured on lavapipe (the ``MATVEC`` / ``MATVEC_TILED``
tables of this package, read at each launch, so tuning tables and overrides still apply).
GPUs get layouts for 32-lane subgroups:

- row-major quantized types (``matvec_kernel``): a [BR, BU] tile of BR = 2 rows by one
  unit per lane (BU = the subgroup's 32 lanes, fewer for short rows), so consecutive
  lanes read consecutive units of a row and each row is summed by one subgroup with no
  shared memory; one program per 2 rows fills the device for every projection of a model;
- row-tiled types (``matvec_tiled_kernel``, Q4_0/Q4_1/Q8_0): one 64-lane program per 64-row
  tile (a lane per row, each word load 256 contiguous bytes per tile), and f(x) held for
  at most GPU_TILED_KB blocks (64 values) per step: the CPU choice of 18 blocks would be 576
  registers per lane, far past the 255 a GPU thread has.
"""
from __future__ import annotations

from dataclasses import dataclass

from spvjit import layouts as L

GPU_MATVEC_ROWS = 2        # rows of W per program of matvec_kernel on GPUs
GPU_TILED_KB = 2           # f(x) blocks of 32 held in registers by matvec_tiled_kernel on GPUs
TILE_ROWS = 64             # rows of a tile of the row-tiled types (packing.py)


@dataclass(frozen=True)
class KernelLayout:
    """Constexpr block sizes of one launch and its num_warps."""
    blocks: dict
    num_warps: int


def _largest_divisor(n: int, most: int) -> int:
    return max(d for d in range(1, min(n, most) + 1) if n % d == 0)


def matvec_rowmajor(caps, cols: int, unit_elems: int, cpu_table: dict) -> KernelLayout:
    """BR x BU of matvec_kernel for a row of ``cols`` weights in units of ``unit_elems``."""
    if L.is_cpu(caps):
        return KernelLayout(dict(cpu_table), L.CPU_NUM_WARPS)
    one = L.subgroup_warps(caps)
    units = max(1, cols // unit_elems)
    return KernelLayout(dict(BR=GPU_MATVEC_ROWS, BU=min(one * L.WARP, L.pow2(units))), one)


def matvec_tiled(caps, cols: int, cpu_table: dict) -> KernelLayout:
    """KB (f(x) blocks per step, a divisor of cols/32) and P (programs; 0: the launcher's
    default) of matvec_tiled_kernel."""
    if L.is_cpu(caps):
        return KernelLayout(dict(cpu_table), L.CPU_NUM_WARPS)
    kb = _largest_divisor(max(1, cols // 32), GPU_TILED_KB)
    return KernelLayout(dict(KB=kb, P=0), max(L.subgroup_warps(caps), TILE_ROWS // L.WARP))


def norm_rows(caps, n_cols: int, n_rows: int) -> L.RowLayout:
    """rms_norm and softmax: rows in blocks of at most 1024 columns."""
    return L.row_layout(caps, n_cols, n_rows, max_block=1024)
