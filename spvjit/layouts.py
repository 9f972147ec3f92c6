"""Launch layouts for memory-bound kernels (row kernels, matrix-vector products), chosen
from the device's capabilities: device type, subgroup size, workgroup limit and, where an
extension reports it, the number of compute units (`DeviceCaps.compute_units`). Never from
the device's or driver's name.

A layout is what a launcher passes a kernel besides its data: block sizes, rows per
program, `num_warps`, and so the grid. The compiler's blocked layout does the rest (a tile's
flat element f lives in lane (f // v) % W; v = 4, one 128-bit load per lane for f32, when
the tile holds a multiple of 4W elements), so the choices below are about W and the tile:

- **CPU drivers** (lavapipe): a program is one subgroup whatever `num_warps` says and pays
  a fixed cost per workgroup, so the choices are the ones measured there before this
  module existed (one row per program, the whole row as one block; matvec 8 rows x 64
  columns). They must not change: lavapipe's speed is what they were tuned for.
- **GPUs**: a row that fits in one subgroup's registers (at most ROW_LANE_ELEMS f32 per
  lane) is reduced by one subgroup with no shared memory and no barrier (`num_warps`
  gives W = 32 lanes, one 32-wide subgroup; the lowering then uses subgroup reductions
  only); longer rows spread over a workgroup of about WIDE_LANE_ELEMS values per lane,
  Triton's tutorial choice. Short rows take several rows per program so that each lane
  still has a few 128-bit loads in flight, but only while enough programs remain to fill
  every compute unit (PROGRAMS_PER_CU of them each, the resident-block limit of an SM on
  recent NVIDIA GPUs); when there are too few rows for that, a row gets as many warps as
  fill the device, down to one 128-bit load per lane (a decoded token's single row).

None of the GPU choices here has been measured on a GPU yet (docs/PERFORMANCE.md): they
follow from documented facts (32-lane warps, 128-byte memory transactions, 64 resident
warps and 32 resident blocks per SM, 255 registers per thread).
"""
from __future__ import annotations

from dataclasses import dataclass

from .codegen.layout import choose_workgroup
from .codegen.target import Target

WARP = 32                  # Triton's num_warps unit: the compiler makes W = num_warps * 32 on GPUs
ROW_LANE_ELEMS = 32        # f32 of one row a lane holds at most when one subgroup owns the row
WIDE_LANE_ELEMS = 16       # f32 per lane when a row spans a workgroup (4 vec4 loads)
MAX_WARPS = 16             # Triton's ceiling for row kernels (its tutorial's 16 at >= 4096 columns)
PROGRAMS_PER_CU = 32       # resident blocks per SM (Hopper, Ampere): a full SM of 1-warp programs
DEFAULT_COMPUTE_UNITS = 64  # where no extension reports the count: a mid-size discrete GPU
CPU_NUM_WARPS = 4          # the jit's default; W is one subgroup on CPU drivers whatever it is


def pow2(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1)."""
    return 1 << max(0, int(n) - 1).bit_length()


def is_cpu(caps) -> bool:
    return getattr(caps, "device_type", "") == "cpu"


def compute_units(caps) -> int:
    """SMs / compute units the device reports, else DEFAULT_COMPUTE_UNITS."""
    return int(getattr(caps, "compute_units", 0) or 0) or DEFAULT_COMPUTE_UNITS


def subgroup_warps(caps) -> int:
    """num_warps of a program that is exactly one subgroup (1 on 32-lane GPUs, 2 on 64-lane
    ones); at least 1, so subgroups narrower than 32 lanes give several per program."""
    return max(1, int(getattr(caps, "subgroup_size", 0) or 0) // WARP)


def max_warps(caps) -> int:
    return max(1, min(MAX_WARPS, int(getattr(caps, "max_workgroup_invocations", 1024) or 1024) // WARP))


def lanes(caps, num_warps: int, tile_elems: int) -> int:
    """W the compiler will pick for a kernel whose biggest tile has `tile_elems` elements
    (its own rule, codegen/layout.choose_workgroup: one subgroup on CPU drivers except big
    tiles on llvmpipe from Mesa 26, num_warps * 32 elsewhere, never more lanes than the
    tile's power of two)."""
    return choose_workgroup(tile_elems, num_warps, Target.of(caps))


@dataclass(frozen=True)
class RowLayout:
    """How a row kernel (softmax, layer norm, RMS norm: reductions along a row) is launched:
    `block` columns per step (the whole row where it fits), `rows_per_program` rows one
    after another in each program (it divides the row count: no row mask needed), and
    `num_warps`. `lanes` is the W the compiler will use; `scheme` says which rule chose it."""
    block: int
    num_warps: int
    rows_per_program: int
    lanes: int
    scheme: str

    def programs(self, n_rows: int) -> int:
        return -(-int(n_rows) // self.rows_per_program)

    @property
    def vector_width(self) -> int:
        """4 where a row block fills whole vec4 registers of every lane (128-bit f32 loads)."""
        return 4 if self.block % (4 * self.lanes) == 0 else 1


def row_layout(caps, n_cols: int, n_rows: int, max_block: int | None = None) -> RowLayout:
    """The layout of a row kernel over `n_rows` rows of `n_cols` f32 values. `max_block`
    caps the block (kernels that loop over a row in blocks); without it the block is the
    whole row rounded up to a power of two (kernels that hold the row in registers)."""
    block = pow2(n_cols)
    if max_block:
        block = min(block, pow2(max_block))
    if is_cpu(caps):
        return RowLayout(block, CPU_NUM_WARPS, 1, lanes(caps, CPU_NUM_WARPS, block), "cpu: one row per subgroup")
    one = subgroup_warps(caps)
    top = max(one, max_warps(caps))
    cus = compute_units(caps)
    sg_lanes = one * WARP
    long_row = block > ROW_LANE_ELEMS * sg_lanes
    # a row that fits in one subgroup's registers stays in it (no shared memory, no barrier)
    base = min(top, max(one, pow2(block // (WIDE_LANE_ELEMS * WARP)))) if long_row else one
    target = cus * PROGRAMS_PER_CU          # warps that keep every compute unit busy
    if n_rows * base < target:
        # too few rows to fill the device: a row gets as many warps as fill it, down to one
        # vec4 per lane (decoding: one row, all of it in flight at once)
        want = pow2(-(-target // max(1, n_rows)))
        warps = min(top, max(base, min(want, block // (4 * WARP))))
        if warps > one:
            return RowLayout(block, warps, 1, lanes(caps, warps, block), "few rows: row per workgroup")
    if long_row:
        return RowLayout(block, base, 1, lanes(caps, base, block), "long rows: row per workgroup")
    per_lane = max(1, block // sg_lanes)
    rows = 1
    while (rows < 4 and per_lane * rows * 2 <= WIDE_LANE_ELEMS and n_rows % (rows * 2) == 0
           and n_rows // (rows * 2) >= cus * PROGRAMS_PER_CU):
        rows *= 2
    return RowLayout(block, one, rows, lanes(caps, one, block), "row per subgroup")


@dataclass(frozen=True)
class MatvecLayout:
    """A matrix-vector product y = W @ x, W n x k row-major: `rows_per_program` rows of W
    per program, `block_k` columns per step (the [rows, block_k] tile), `num_warps`."""
    rows_per_program: int
    block_k: int
    num_warps: int
    lanes: int
    scheme: str

    def programs(self, n: int) -> int:
        return -(-int(n) // self.rows_per_program)

    @property
    def vector_width(self) -> int:
        return 4 if (self.rows_per_program * self.block_k) % (4 * self.lanes) == 0 else 1


CPU_MATVEC = (8, 64)       # rows x columns per program on lavapipe (benchmarks/kernels.py's figures)


def matvec_layout(caps, n: int, k: int) -> MatvecLayout:
    """Dense f32/f16 matvec without masks: the layout's rows divide n and its block divides k.
    GPUs: the rows of a program are reduced by one subgroup (each row's block_k columns are
    whole vec4 runs of all its lanes, so x broadcast over the rows stays in the lane that
    loaded it); 2 x 128-bit loads of W per lane and row each step; up to 4 rows per program
    while enough programs remain to fill every compute unit."""
    if is_cpu(caps):
        bn, bk = CPU_MATVEC
        return MatvecLayout(bn, bk, CPU_NUM_WARPS, lanes(caps, CPU_NUM_WARPS, bn * bk), "cpu")
    one = subgroup_warps(caps)
    sg_lanes = one * WARP
    bk = next((b for b in (8 * sg_lanes, 4 * sg_lanes, 2 * sg_lanes, sg_lanes) if k % b == 0), None)
    if bk is None:
        bk = next(b for b in (64, 32, 16, 8, 4, 2, 1) if k % b == 0)
    cus = compute_units(caps)
    rows = 1
    while rows < 4 and n % (rows * 2) == 0 and n // (rows * 2) >= cus * PROGRAMS_PER_CU:
        rows *= 2
    return MatvecLayout(rows, bk, one, lanes(caps, one, rows * bk), "rows per subgroup")
