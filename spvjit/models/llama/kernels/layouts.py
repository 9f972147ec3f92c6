"""The llama kernels' launch layouts on the device at hand (rules: :mod:`spvjit.layouts`).

CPU drivers keep the block sizes measured on lavapipe (the ``MATVEC`` / ``MATVEC_TILED``
tables of this package, read at each launch, so tuning tables and overrides still apply).
GPUs get layouts for 32-lane subgroups and many programs per SM:

- row-major quantized types (``matvec_kernel``): a [BR, BU] tile of BR = 2 rows by one
  unit per lane (BU = the subgroup's 32 lanes, fewer for short rows), so consecutive
  lanes read consecutive units of a row and each row is summed by one subgroup with no
  shared memory; one program per 2 rows fills the device for every projection of a model;
- row-tiled types (Q4_0/Q4_1/Q8_0) also run ``matvec_kernel``, through the type's unit
  decoder (which reads the tiled layout): ``matvec_tiled_kernel`` makes one program per
  64-row tile, 9 programs for a 576-row projection, far too few for a GPU, and holds f(x)
  in registers (18 blocks: 576 values per lane on lavapipe). Here a program is 8 rows x 16
  units (4 blocks) in one 32-lane subgroup. The [8, 16] tile fills whole vec4 registers,
  so lane 4r + b holds the 4 words of block b of row r, and one load instruction of the
  subgroup reads word w of 4 blocks for 8 adjacent rows: 4 whole 32-byte sectors (the
  tiled layout puts the 64 rows of a word side by side). There are rows / 8 programs (72
  for a 576-row projection, 6144 for the 49152-row output). ``blocks`` with KB / P still
  select the tiled kernel.
"""
from __future__ import annotations

from dataclasses import dataclass

from spvjit import layouts as L

GPU_MATVEC_ROWS = 2        # rows of W per program of matvec_kernel on GPUs (row-major types)
GPU_TILED_ROWS = 8         # ... for the row-tiled types: 8 rows x 4 bytes, one 32-byte sector per word
GPU_TILED_UNITS = 16       # ... and units (words) per step: 4 blocks, [8, 16] = 4 x 32 lanes (vec4 registers)
TILED_KERNEL_WARPS = 2     # matvec_tiled_kernel on a GPU when asked for: 64 lanes, a row of the tile each


@dataclass(frozen=True)
class KernelLayout:
    """Constexpr block sizes of one launch, its num_warps, and for a matvec which kernel:
    "rows" (matvec_kernel, blocks BR/BU) or "tiled" (matvec_tiled_kernel, blocks KB/P)."""
    blocks: dict
    num_warps: int
    kernel: str = "rows"


def matvec_rowmajor(caps, cols: int, unit_elems: int, cpu_table: dict) -> KernelLayout:
    """BR x BU of matvec_kernel for a row of ``cols`` weights in units of ``unit_elems``."""
    if L.is_cpu(caps):
        return KernelLayout(dict(cpu_table), L.CPU_NUM_WARPS)
    one = L.subgroup_warps(caps)
    units = max(1, cols // unit_elems)
    return KernelLayout(dict(BR=GPU_MATVEC_ROWS, BU=min(one * L.WARP, L.pow2(units))), one)


def matvec_tiled(caps, cols: int, unit_elems: int, cpu_table: dict) -> KernelLayout:
    """The row-tiled types: KB (f(x) blocks per step) and P (programs; 0: the launcher's
    default) of matvec_tiled_kernel on CPU drivers; BR x BU of matvec_kernel on GPUs."""
    if L.is_cpu(caps):
        return KernelLayout(dict(cpu_table), L.CPU_NUM_WARPS, "tiled")
    one = L.subgroup_warps(caps)
    units = max(1, cols // unit_elems)
    return KernelLayout(dict(BR=GPU_TILED_ROWS, BU=min(GPU_TILED_UNITS * one, L.pow2(units))), one)


def norm_rows(caps, n_cols: int, n_rows: int) -> L.RowLayout:
    """rms_norm and softmax: rows in blocks of at most 1024 columns."""
    return L.row_layout(caps, n_cols, n_rows, max_block=1024)
