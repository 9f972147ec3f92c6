"""`sum`, `max`, `min` along a row or column of a matrix-layout value, on the matrices
themselves (VK_NV_cooperative_matrix2's OpCooperativeMatrixReduceNV).

Where the device reports cooperativeMatrixReductions, a reduction over axis 1 (each row) or 0
(each column) of a 2-D float value in matrix layout does not go to the blocked layout first:
the tiles of one tile row (axis 1) or tile column (axis 0) are combined element by element
(OpFAdd on matrices for sum; for max/min OpCooperativeMatrixPerElementOpNV with a two-matrix
element function where per-element operations are reported, else a loop over the
invocation's components, which pairs components of one type index by index), then one
OpCooperativeMatrixReduceNV (Row or Column) with a combine function reduces that tile.  Its
result has the tile's own type: every element of a row (column) holds that row's (column's)
reduction, which is exactly the reduction broadcast back over the tile.  So:

  - `x - m[:, None]`, `p / l[:, None]`, `acc * s[:, None]` (the broadcast of the reduction
    along the axis it removed, over a tile of the reduced value's shape) use that matrix as
    an operand of a matrix-layout epilogue op (operand kind "reduced"): no shared memory at
    all; the expand_dims and broadcast in between are not lowered when nothing else uses them;
  - any other use (a store, `tl.maximum(m_i, m)` with a blocked vector, ...) gets the 1-D
    blocked registers: the reduced tiles are stored once to the shared conversion array and
    each lane reads its elements from column 0 (row 0).

Only where every tile row (column) belongs to one subgroup (one subgroup per program, as on
CPU drivers, or tiles as wide as the value for rows / tile columns dealt whole to subgroups
for columns): combining partials of other subgroups would need shared memory again, which is
today's blocked path.  f32 and f16 components only (the GLSL extension defines reductions for
floating-point matrices).  Sums combine in the device's order, not the blocked path's (f32
rounding differs in the last bits); max/min ignore NaNs (NMax/NMin), a row of only NaNs gives
NaN.
"""
from __future__ import annotations

from ..ir import types as T
from . import coopmat2_functions as fns
from .coopmat_values import ROW_MAJOR, CoopValue, _shared_array, _Tiles, by_components
from .values import LV

KINDS = ("sum", "max", "min")
_ROW, _COLUMN = 0x1, 0x2        # Cooperative Matrix Reduce mode bits


def tile_groups(n_sub: int, rows: int, cols: int, axis: int):
    """Positions (in a subgroup's list of owned tiles, `_Tiles.index`) of the tiles that make up
    each whole tile row (axis 1) or tile column (axis 0), or None where one of them spans
    subgroups.  Subgroup s owns tiles s, s + S, ... of the rows x cols grid (row-major)."""
    count = rows * cols // n_sub
    if n_sub == 1:
        key = (lambda j: j // cols) if axis == 1 else (lambda j: j % cols)
    elif axis == 1 and cols == 1 or axis == 0 and rows == 1:
        key = lambda j: j                     # noqa: E731  (each tile is a whole row / column)
    elif axis == 0 and cols % n_sub == 0:
        key = lambda j: j % (cols // n_sub)   # noqa: E731  (tile s + jS is in column (s + jS) % cols)
    else:
        return None
    groups: dict[int, list[int]] = {}
    for j in range(count):
        groups.setdefault(key(j), []).append(j)
    return list(groups.values())


def plan(p, op, caps) -> None:
    """Mark `op` (a reduce) to run on cooperative matrices where it can (p: coopmat.Plan)."""
    src = op.operands[0]
    cfg = p.matrix.get(id(src))
    if cfg is None or op.attrs["kind"] not in KINDS or len(src.type.shape) != 2:
        return
    if src.type.elem.name not in ("f32", "f16") or not fns.reported(caps, "reductions"):
        return
    if not fns.granule_shape(cfg):
        p.wants_granule.add(cfg)          # coopmat.Plan plans again with the granule shapes
        return
    M, N = src.type.shape
    groups = tile_groups(p.w // caps.subgroup_size, M // cfg.m, N // cfg.n, op.attrs["axis"])
    if groups is None:
        return
    p.reductions[id(op)] = (cfg, groups)
    p.reduced[id(op.result)] = op


def reduced_source(p, v, shape):
    """The reduce op whose result, broadcast back along the axis it removed, is tile `v` of
    `shape` (`m[:, None]` for a row reduction of an M x N value), else None."""
    bc = v.owner
    if getattr(bc, "name", None) != "broadcast" or tuple(v.type.shape) != tuple(shape):
        return None
    ex = bc.operands[0].owner
    if getattr(ex, "name", None) not in ("expand_dims", "reshape"):
        return None
    red = p.reduced.get(id(ex.operands[0]))
    if red is None or tuple(red.operands[0].type.shape) != tuple(shape):
        return None
    axis = red.attrs["axis"]
    kept = (shape[0], 1) if axis == 1 else (1, shape[1])
    if tuple(ex.result.type.shape) != kept or (ex.name == "expand_dims" and ex.attrs["axis"] != axis):
        return None
    return red


def _merge(lw, kind, elem, tc, x, y):
    """Two same-type tiles combined element by element."""
    em = lw.em
    if kind == "sum":
        return em.op("OpFAdd", tc, x, y)
    if fns.reported(lw.caps, "per_element_operations"):
        fns.enable(em, "CooperativeMatrixPerElementOperationsNV")
        return em.op("OpCooperativeMatrixPerElementOpNV", tc, x, fns.pair_function(lw, kind, elem), y)
    # the invocation's own components, index by index (one type: the same positions)
    ct = em.type_of(elem)
    return by_components(lw, elem, elem, tc, tc, [x, y], ["matrix", "matrix"],
                         lambda a, b: fns.combine(em, kind, elem, ct, a, b))


def lower_reduce(lw, op, cfg, groups) -> None:
    em = lw.em
    src = lw.get(op.operands[0]).coop
    kind, axis = op.attrs["kind"], op.attrs["axis"]
    elem = op.operands[0].type.elem
    tc = src.tile_type
    fns.enable(em, "CooperativeMatrixReductionsNV")
    fid = fns.combine_function(lw, kind, elem)
    ids = [None] * len(src.ids)
    for group in groups:
        acc = src.ids[group[0]]
        for j in group[1:]:
            acc = _merge(lw, kind, elem, tc, acc, src.ids[j])
        r = em.op("OpCooperativeMatrixReduceNV", tc, acc, _ROW if axis == 1 else _COLUMN, fid)
        for j in group:
            ids[j] = r
    cv = CoopValue(src.cfg, tc, ids)
    lw.note(op, f"OpCooperativeMatrixReduceNV ({'Row' if axis == 1 else 'Column'}) on "
                f"{len(groups)} tile {'rows' if axis == 1 else 'columns'}")
    regs = _to_vector(lw, cv, op.operands[0].type, axis) if lw.coop_plan.needs_blocked(op.result) else None
    lw.bind(op, LV(regs, False, coop=cv))


def _to_vector(lw, cv, src_t: T.TileType, axis: int) -> list[int]:
    """The 1-D blocked registers of a reduction held as reduced tiles: the tiles go to the
    shared conversion array, each lane reads its elements from column 0 (axis 1) or row 0."""
    em, mem = lw.em, lw.mem
    M, N = src_t.shape
    ct = em.type_of(src_t.elem)
    c_sh = _shared_array(mem, "coop_c", ct, M * N, src_t.elem.nbytes)
    pc = em.b.type_pointer("Workgroup", ct)
    tiles = _Tiles(lw, cv.cfg, M, N)
    cols = N // cv.cfg.n
    static = lw.W == lw.caps.subgroup_size      # tile t is position t: store only column / row 0
    em.barrier()
    for j, (t, c) in enumerate(zip(tiles.index, cv.ids)):
        if static and (j % cols if axis == 1 else j // cols) != 0:
            continue
        ptr = em.op("OpAccessChain", pc, c_sh, tiles.offset(em, t))
        em.op("OpCooperativeMatrixStoreKHR", None, ptr, c, em.cu(ROW_MAJOR), em.cu(N))
    em.barrier()
    length = M if axis == 1 else N
    out = []
    for r in range(lw.nregs(T.TileType((length,), src_t.elem))):
        i = lw.flat_or_zero(r, length)
        idx = em.imul(i, em.ci(N)) if axis == 1 else i
        out.append(em.op("OpLoad", ct, em.op("OpAccessChain", pc, c_sh, idx)))
    lw.note_move("reduced tiles to the blocked layout through shared memory")
    return out
