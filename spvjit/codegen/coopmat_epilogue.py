"""What happens to a matrix-layout value after its last `dot`: elementwise epilogues and stores
on the cooperative matrices themselves, without the trip through shared memory to the
blocked layout.

Planning (`plan`, called by coopmat.Plan): an elementwise op stays in matrix layout when one
operand is in it and every other operand is one of
  - another value in matrix layout with the same configuration,
  - uniform: a splat of a scalar or a constant (`acc * scale`, `acc + 1.0`),
  - a row or column vector broadcast over the tile (`acc + bias[None, :]`, `acc * s[:, None]`):
    written once to shared memory and read back with OpCooperativeMatrixLoadKHR with Stride 0,
    which repeats one row (row-major) or one column (column-major) over the tile.  The
    SPV_KHR_cooperative_matrix layouts allow Stride >= 0 for loads (> 0 for stores), so the
    element at (r, c) is v[c] (or v[r]) whatever the element-to-invocation mapping is,
and its result has a component type the device has accumulator matrices of.  add, sub, mul,
div, neg and the casts f16 <-> f32, i32 -> f32 are SPIR-V instructions on cooperative
matrices; every other elementwise op (maximum for relu, exp, sigmoid, ...) runs element by
element over the invocation's own components (OpCooperativeMatrixLengthKHR, access chains
into a Function variable), which is exact for ops that do not depend on the element's
position: an elementwise op of matrices of one type pairs components of the same index,
because the mapping of components to (row, column) belongs to the type.  Where the device
reports VK_NV_cooperative_matrix2's per-element operations (on granule-shaped tiles) those ops
are one OpCooperativeMatrixPerElementOpNV each instead (coopmat2_functions), which also lets
an operand be computed from the element's position (coopmat2_position: masks, tl.where).

A store of a matrix-layout value goes out with OpCooperativeMatrixStoreKHR when its pointer
tile is provably strided (coopmat_affine.py) and, for masked stores, the subgroup's tile is
entirely inside the mask (a subgroup vote, one branch per tile).  Other tiles (the ragged
edge of a masked store, or any pointer tile that can only be recomputed elementwise) are
stored by their own subgroup: the tile goes to its slot of the shared conversion array and
each invocation stores a few of its elements, recomputing pointer and mask per element
(remat.py).  Only a pointer tile that cannot be recomputed at all takes the blocked route.

f32 -> f16 on matrices is OpFConvert: round to nearest even where the device reports
shaderRoundingModeRTEFloat16 (the module then declares RoundingModeRTE 16, as the blocked
path does); elsewhere Vulkan lets it round toward zero, one f16 ulp from the blocked path's
explicitly rounded conversion.
"""
from __future__ import annotations

from ..ir import types as T
from ..ir.core import Operation
from ..ir.ops import OP_INFO
from . import coopmat2, coopmat2_functions, coopmat2_position, coopmat2_reduce, coopmat_affine, remat
from .coopmat_values import (ROW_MAJOR, CoopValue, _shared_array, _stage, _Tiles, by_components, tile_type,
                             to_blocked)
from .values import LV

SCOPE_SUBGROUP = 3
_SEM_ACQ_REL_WG = 0x8 | 0x100
_FLOAT_NATIVE = {"add": "OpFAdd", "sub": "OpFSub", "mul": "OpFMul", "truediv": "OpFDiv"}
_INT_NATIVE = {"add": "OpIAdd", "sub": "OpISub", "mul": "OpIMul"}
_NO_MATRIX = {"cmp", "select", "bitcast"}       # bool results or operands, bit reinterpretation


# ---- planning ---------------------------------------------------------------------------------

def _uniform_source(v):
    """The scalar IR value or the constant op whose value fills tile `v`, else None."""
    while True:
        if v.type.is_scalar:
            return v
        op = v.owner
        name = getattr(op, "name", None)
        if name == "constant":
            return op
        if name not in ("splat", "broadcast", "expand_dims", "reshape"):
            return None
        v = op.operands[0]


def _vector_source(v, shape):
    """The [1, N] or [M, 1] value broadcast into tile `v` of `shape`, else None."""
    op = v.owner
    if getattr(op, "name", None) != "broadcast":
        return None
    src = op.operands[0]
    s = src.type.shape
    if len(s) == 2 and (s == (1, shape[1]) or s == (shape[0], 1)):
        return src
    return None


def legal_types(caps, cfg) -> set[str]:
    """Component types of m x n accumulator matrices the device lists (Vulkan allows only those)."""
    out = set()
    for c in caps.cooperative_matrix:
        if c.scope == "subgroup" and (c.m, c.n) == (cfg.m, cfg.n):
            out |= {c.c_type, c.result_type}
    return out | coopmat2.legal_types(caps, cfg)


def _native_cast(src: T.DType, dst: T.DType) -> str | None:
    if src.is_float and dst.is_float and {src.name, dst.name} == {"f16", "f32"}:
        return "OpFConvert"
    if src.is_int and dst.is_float and src.bits == 32 and dst.name == "f32":
        return "OpConvertSToF" if src.is_signed else "OpConvertUToF"
    return None


def operand_kinds(plan, op, cfg, legal):
    """('matrix' | 'uniform' | 'vector' | 'reduced' | 'position', ...) for an elementwise op that
    can stay in matrix layout with configuration cfg, else None ('reduced': a broadcast of an NV
    reduction's tiles, coopmat2_reduce; 'position': evaluated inside an NV per-element function,
    coopmat2_position)."""
    ty = op.result.type
    # operands evaluated per element from their position (coopmat2_position): where the device
    # runs per-element functions on these tiles
    per_element = coopmat2_functions.reported(plan.caps, "per_element_operations")
    positional = per_element and coopmat2_functions.granule_shape(cfg)
    if per_element and not positional and _needs_position(plan, op, ty, cfg):
        plan.wants_granule.add(cfg)             # coopmat.Plan plans again with granule tiles
    if OP_INFO[op.name].category != "elementwise" or len(ty.shape) != 2:
        return None
    if op.name in _NO_MATRIX and not (op.name == "select" and positional):
        return None
    if ty.elem.name not in legal or ty.elem.name == "bf16":
        return None
    kinds, elems = [], set()
    for i, v in enumerate(op.operands):
        if op.name == "select" and i == 0:      # tl.where's condition: only a position one
            if v.type.shape != ty.shape or not coopmat2_position.expression(v):
                return None
            kinds.append("position")
            continue
        if v.type.elem.is_bool or v.type.elem.name == "bf16":
            return None
        if id(v) in plan.matrix:
            if (plan.matrix[id(v)].m, plan.matrix[id(v)].n) != (cfg.m, cfg.n) or v.type.shape != ty.shape:
                return None
            kinds.append("matrix")
            elems.add(v.type.elem)
        elif _reduced_matrix(plan, v, ty.shape, cfg) is not None:
            kinds.append("reduced")             # m[:, None] of a reduction on the matrices
            elems.add(v.type.elem)
        elif _uniform_source(v) is not None:
            kinds.append("uniform")
        elif positional and v.type.shape == ty.shape and coopmat2_position.expression(v):
            kinds.append("position")            # a mask or index tile, computed per element
        elif _vector_source(v, ty.shape) is not None and v.type.elem.name in legal:
            kinds.append("vector")
        else:
            return None
    if "matrix" not in kinds:
        return None
    if op.name == "cast":
        return kinds if _native_cast(op.operands[0].type.elem, ty.elem) else None
    if elems != {ty.elem} and op.name != "fma":
        return None                         # per-element pairing needs one component type
    return kinds


def _needs_position(plan, op, ty, cfg) -> bool:
    """op has a matrix operand and one that only a position operand could be (a `tl.where`
    condition, a mask tile)."""
    if OP_INFO[op.name].category != "elementwise" or len(ty.shape) != 2:
        return False
    if not any(id(v) in plan.matrix for v in op.operands):
        return False
    for i, v in enumerate(op.operands):
        if id(v) in plan.matrix or _uniform_source(v) is not None or _vector_source(v, ty.shape) is not None:
            continue
        if v.type.shape == ty.shape and coopmat2_position.expression(v):
            return op.name != "select" or i == 0 or not v.type.elem.is_bool
    return False


def _reduced_matrix(plan, v, shape, cfg):
    """The matrix-layout reduce whose result broadcast back is `v`, for tiles of cfg's shape."""
    red = coopmat2_reduce.reduced_source(plan, v, shape)
    if red is None or (plan.reductions[id(red)][0].m, plan.reductions[id(red)][0].n) != (cfg.m, cfg.n):
        return None
    return red


def plan(p, kernel, caps, axis) -> None:
    """Mark elementwise ops and stores that keep matrix layout (p: coopmat.Plan)."""
    if not p.matrix:
        return
    for op in kernel.walk():
        if op.name == "store":
            v = op.operands[1]
            cfg = p.matrix.get(id(v))
            pt = op.operands[0].type.elem.pointee
            if cfg is not None and len(v.type.shape) == 2 and pt == v.type.elem and pt.name != "bf16" \
                    and not op.operands[0].type.elem.global_address:     # addresses: blocked stores
                p.stores[id(op)] = cfg
                p.store_layout[id(op)] = coopmat_affine.strided(op.operands[0], axis, pt.nbytes, cfg.m, cfg.n)
            continue
        if op.name == "reduce":
            coopmat2_reduce.plan(p, op, caps)
            continue
        if len(op.results) != 1 or id(op.result) in p.matrix or op.name not in OP_INFO:
            continue
        cfgs = [p.matrix[id(v)] for v in op.operands if id(v) in p.matrix]
        if not cfgs or len({(c.m, c.n) for c in cfgs}) != 1:
            continue
        cfg = cfgs[0]
        kinds = operand_kinds(p, op, cfg, legal_types(caps, cfg))
        if kinds is not None:
            p.epilogue[id(op)] = (cfg, tuple(kinds))
            p.matrix[id(op.result)] = cfg


# ---- lowering: elementwise ------------------------------------------------------------------------

def _scalar_id(lw, v, elem):
    src = _uniform_source(v)
    if isinstance(src, Operation):           # a constant tile
        return lw.em.const(elem, src.attrs["value"])
    return lw.get(src).regs[0]


def _vector_matrices(lw, v, shape, tc, tiles, cfg):
    """A row / column vector broadcast over the tile as cooperative matrices: staged in shared
    memory, loaded with Stride 0 (every row, or column, is the same vector)."""
    em = lw.em
    src = _vector_source(v, shape)
    elem = src.type.elem
    ct = em.type_of(elem)
    row = src.type.shape[0] == 1
    length = shape[1] if row else shape[0]
    sh = _shared_array(lw.mem, "coop_vec", ct, max(shape), elem.nbytes)
    pc = em.b.type_pointer("Workgroup", ct)
    em.barrier()
    _stage(lw, sh, pc, length, lw.get(src).regs, elem, elem)
    em.barrier()
    out = []
    for t in tiles.index:
        r0, c0 = tiles.row_col(em, t)
        ptr = em.op("OpAccessChain", pc, sh, c0 if row else r0)
        out.append(em.op("OpCooperativeMatrixLoadKHR", tc, ptr, em.cu(ROW_MAJOR if row else 1), em.cu(0)))
    return out


def lower_elementwise(lw, op, cfg, kinds) -> None:
    em = lw.em
    ty = op.result.type
    M, N = ty.shape
    tiles = _Tiles(lw, cfg, M, N)
    in_elem = ty.elem if op.name == "select" else op.operands[0].type.elem   # (where's condition is bool)
    tc_in = tile_type(em, cfg, in_elem)
    tc_out = tile_type(em, cfg, ty.elem)
    args = []          # per operand: list of per-tile matrix ids, or a scalar id
    for v, kind in zip(op.operands, kinds):
        if kind == "matrix":
            args.append(lw.get(v).coop.ids)
        elif kind == "reduced":
            args.append(lw.get(_reduced_matrix(lw.coop_plan, v, ty.shape, cfg).result).coop.ids)
        elif kind == "uniform":
            args.append(_scalar_id(lw, v, v.type.elem))
        elif kind == "position":
            args.append(None)                   # computed inside the element function
        else:
            args.append(_vector_matrices(lw, v, ty.shape, tile_type(em, cfg, v.type.elem), tiles, cfg))
    name = op.name
    native = (_FLOAT_NATIVE if ty.elem.is_float else _INT_NATIVE).get(name)
    out = []
    if "position" in kinds:
        values = [v for v, k in zip(op.operands, kinds) if k == "position"]
        leaves = coopmat2_position.leaves(lw, values)
        leaf_ids = [lw.get(x).regs[0] for x in leaves]
        scalar_types = [em.type_of(v.type.elem) for v in op.operands]
        for j, t in enumerate(tiles.index):
            r0, c0 = tiles.row_col(em, t)
            out.append(coopmat2_functions.per_element(
                lw, op, in_elem, ty.elem, tc_out, _tile_args(args, j), kinds,
                scalar_types, (N, leaves, leaf_ids, r0, c0)))
        lw.note(op, "OpCooperativeMatrixPerElementOpNV, position operands computed per element")
    elif name == "cast":
        inst = _native_cast(in_elem, ty.elem)
        if ty.elem.name == "f16" and lw.caps.rounding_rte_float16:
            lw.rte_float16 = True       # the module's RoundingModeRTE 16 makes it round to even
        out = [em.op(inst, tc_out, x) for x in args[0]]
        lw.note(op, f"on cooperative matrices ({inst})")
    elif name == "neg":
        out = [em.op("OpFNegate" if ty.elem.is_float else "OpSNegate", tc_out, x) for x in args[0]]
        lw.note(op, "on cooperative matrices")
    elif native is not None and len(args) == 2:
        x, y = args
        if name == "mul" and ty.elem.is_float and kinds[1] == "uniform":
            out = [em.op("OpMatrixTimesScalar", tc_out, a, y) for a in x]
        elif name == "mul" and ty.elem.is_float and kinds[0] == "uniform":
            out = [em.op("OpMatrixTimesScalar", tc_out, b, x) for b in y]
        else:
            x = x if isinstance(x, list) else [em.op("OpCompositeConstruct", tc_in, x)] * len(tiles.index)
            y = y if isinstance(y, list) else [em.op("OpCompositeConstruct", tc_in, y)] * len(tiles.index)
            out = [em.op(native, tc_out, a, b) for a, b in zip(x, y)]
        lw.note(op, "on cooperative matrices")
    elif _per_element_nv(lw, op, cfg, in_elem, ty.elem, kinds):
        scalar_types = [em.type_of(v.type.elem) for v in op.operands]
        out = [coopmat2_functions.per_element(lw, op, in_elem, ty.elem, tc_out, _tile_args(args, j), kinds,
                                              scalar_types)
               for j in range(len(tiles.index))]
        lw.note(op, "OpCooperativeMatrixPerElementOpNV")
    else:
        out = [_per_element(lw, op, in_elem, ty.elem, tc_in, tc_out, _tile_args(args, j), kinds)
               for j in range(len(tiles.index))]
        lw.note(op, "per element of cooperative matrices")
    cv = CoopValue(cfg, tc_out, out)
    regs = to_blocked(lw, cv, ty) if lw.coop_plan.needs_blocked(op.result) else None
    lw.bind(op, LV(regs, False, coop=cv))


def _tile_args(args, j: int) -> list:
    """The operands for tile j: a matrix operand's j-th tile id, a scalar as it is."""
    return [a[j] if isinstance(a, list) else a for a in args]


def _per_element_nv(lw, op, cfg, in_elem, out_elem, kinds) -> bool:
    """OpCooperativeMatrixPerElementOpNV can do op: the device reports per-element operations,
    the tiles have a granule shape (coopmat2_functions.granule_shape), and the result and every
    matrix operand have one type (the instruction's rule)."""
    if not coopmat2_functions.reported(lw.caps, "per_element_operations") or in_elem != out_elem \
            or not coopmat2_functions.granule_shape(cfg):
        return False
    return all(k == "uniform" or v.type.elem == in_elem for v, k in zip(op.operands, kinds))


def _per_element(lw, op, in_elem, out_elem, tc_in, tc_out, args, kinds) -> int:
    """op applied to each of this invocation's components of one tile."""
    return by_components(lw, in_elem, out_elem, tc_in, tc_out, args, kinds,
                         lambda *xs: lw.scalar_op(op, in_elem, out_elem, *xs))


# ---- lowering: stores ------------------------------------------------------------------------------

def _subgroup_barrier(em):
    em.op("OpControlBarrier", None, em.cu(SCOPE_SUBGROUP), em.cu(SCOPE_SUBGROUP), em.cu(_SEM_ACQ_REL_WG))


def lower_store(lw, op, cfg) -> None:
    em, mem = lw.em, lw.mem
    ptr_v, val_v = op.operands[0], op.operands[1]
    mask_v = op.operands[2] if len(op.operands) > 2 else None
    lv = lw.get(val_v)
    bd = mem.bindings[lw.get(ptr_v).binding]
    ty = val_v.type
    ok = (not bd.atomic and not bd.texel and bd.storage == ty.elem and
          remat.expression(lw, ptr_v, max_ops=64) and (mask_v is None or remat.expression(lw, mask_v, max_ops=64)))
    if not ok:
        regs = lv.regs if lv.regs is not None else to_blocked(lw, lv.coop, ty)
        lw.env[id(val_v)] = LV(regs, False, coop=lv.coop)
        lw.note(op, "matrix value converted to the blocked layout")
        mem.lower_store(lw, op)
        return
    M, N = ty.shape
    sg = lw.caps.subgroup_size
    tiles = _Tiles(lw, cfg, M, N)
    ct = em.type_of(ty.elem)
    layout = lw.coop_plan.store_layout.get(id(op))
    vote = "vote" in lw.caps.subgroup_ops

    def ptr_at(g):
        return remat.evaluate(lw, ptr_v, g)

    stride, stride_known = None, False
    if layout is not None:
        step = N if layout.layout == ROW_MAJOR else 1       # flat index of element (1, 0) or (0, 1)
        if layout.stride.value is not None:
            stride, stride_known = em.ci(layout.stride.value), layout.stride.value > 0
        else:
            stride = em.op("OpISub", em.i32, ptr_at(em.ci(step)), ptr_at(em.ci(0)))
        if layout.stride.value is not None and layout.stride.value <= 0:
            layout = None                     # stores need Stride > 0
    staged = layout is None or mask_v is not None or not stride_known
    c_sh = pc = None
    if staged:
        c_sh = _shared_array(mem, "coop_c", ct, M * N, ty.elem.nbytes)
        pc = em.b.type_pointer("Workgroup", ct)
        em.barrier()          # earlier readers of the conversion array are done with it
    sub_lane = em.op("OpSMod", em.i32, lw.lane, em.ci(sg))
    per_lane = -(-cfg.m * cfg.n // sg)

    def tile_elements(off):
        """(flat index in the M x N value, in-tile check or None) of this lane's elements."""
        out = []
        for k in range(per_lane):
            e = em.iadd(sub_lane, em.ci(k * sg))
            i = em.op("OpSDiv", em.i32, e, em.ci(cfg.n))
            j = em.op("OpSMod", em.i32, e, em.ci(cfg.n))
            g = em.iadd(off, em.iadd(em.imul(i, em.ci(N)), j))
            inside = None if (k + 1) * sg <= cfg.m * cfg.n else em.ilt(e, em.ci(cfg.m * cfg.n))
            out.append((g, inside))
        return out

    def direct(t, c):
        ptr = em.op("OpAccessChain", bd.ptr_type, bd.var, em.ci(0), ptr_at(tiles.offset(em, t)))
        em.op("OpCooperativeMatrixStoreKHR", None, ptr, c, em.cu(layout.layout), stride)

    def by_elements(t, c):
        off = tiles.offset(em, t)
        em.op("OpCooperativeMatrixStoreKHR", None, em.op("OpAccessChain", pc, c_sh, off), c,
              em.cu(ROW_MAJOR), em.cu(N))
        _subgroup_barrier(em)
        for g, inside in tile_elements(off):
            gs = g if inside is None else em.select(em.i32, inside, g, em.ci(0))
            pred = inside
            if mask_v is not None:
                m = remat.evaluate(lw, mask_v, gs)
                pred = m if pred is None else em.land(pred, m)
            with lw.scope():
                value = em.op("OpLoad", ct, em.op("OpAccessChain", pc, c_sh, gs))
                if pred is None:
                    mem.store_elem(bd, ptr_at(gs), value)
                else:
                    with em.if_then(pred):
                        mem.store_elem(bd, ptr_at(gs), value)

    how = set()
    for t, c in zip(tiles.index, lv.coop.ids):
        with lw.scope():
            if layout is None:
                by_elements(t, c)
                how.add("by elements")
                continue
            cond = None if stride_known else em.op("OpSGreaterThan", em.bool, stride, em.ci(0))
            if mask_v is not None:
                if not vote:
                    by_elements(t, c)
                    how.add("by elements")
                    continue
                em.capability("GroupNonUniformVote")
                full = None
                for g, inside in tile_elements(tiles.offset(em, t)):
                    gs = g if inside is None else em.select(em.i32, inside, g, em.ci(0))
                    m = remat.evaluate(lw, mask_v, gs)
                    full = m if full is None else em.land(full, m)
                full = em.op("OpGroupNonUniformAll", em.bool, em.cu(SCOPE_SUBGROUP), full)
                cond = full if cond is None else em.land(cond, full)
            if cond is None:
                direct(t, c)
                how.add("OpCooperativeMatrixStoreKHR")
            else:
                _if_else(em, lw, cond, lambda: direct(t, c), lambda: by_elements(t, c))
                how.add("OpCooperativeMatrixStoreKHR where the tile is whole, else by elements")
    lw.note(op, "; ".join(sorted(how)))


def _if_else(em, lw, cond, then_fn, else_fn):
    then_l, else_l, merge = (em.b.new_id() for _ in range(3))
    em.op("OpSelectionMerge", None, merge, 0)
    em.op("OpBranchConditional", None, cond, then_l, else_l)
    for label, fn in ((then_l, then_fn), (else_l, else_fn)):
        em.b.label(label)
        with lw.scope():
            fn()
        em.op("OpBranch", None, merge)
    em.b.label(merge)
