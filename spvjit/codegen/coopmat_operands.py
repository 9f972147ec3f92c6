"""A and B of a cooperative-matrix `dot` read straight from the storage buffer.

An operand qualifies when it is a `load` without a mask whose only use is the dot, whose
pointer tile is provably strided and aligned (coopmat_affine.strided: row-major with unit
steps along the inner dimension, or column-major, as a transposed weight `w[n, k]` read as
B[k, n] is), with no write that could run between the load and the dot (so reading it
there reads the loaded values, whatever the arguments alias), and whose tiles no two subgroups need: an A row block read by one
subgroup only, a B column block likewise.  Then each subgroup loads its m x k and k x n
tiles with OpCooperativeMatrixLoadKHR from the buffer itself: no staging in shared memory,
no barrier.  Tiles several subgroups read stay staged in shared memory (read once per
workgroup).  Kernels that wrap row indices (`% M`, as Triton's tutorial does) or mask their
loads keep staging.

Vulkan wants load strides >= 0.  A stride known only at run time (the `K` of `rm * K`) is
checked once per dot; if negative, every invocation loads its elements of the tile into its
subgroup's slot of a small shared array and the matrix is loaded from there.
"""
from __future__ import annotations

from ..ir.core import Operation
from . import coopmat_affine, dot_operands, remat
from .coopmat_values import _shared_array, memory_type
from .coopmat_affine import ROW_MAJOR


def _root_param(ptr_value, depth=0):
    """The pointer parameter a pointer tile is built from, or None."""
    if depth > 64:
        return None
    op = ptr_value.owner
    if not isinstance(op, Operation):
        return ptr_value if ptr_value.type.is_scalar else None
    for v in op.operands:
        if v.type.is_pointer:
            return _root_param(v, depth + 1)
    return None


def _reused(tiles: int, cols: int, n_sub: int, by_row: bool) -> bool:
    """Whether some row (A) or column (B) block of the tiles is owned by two subgroups."""
    owners: dict[int, set] = {}
    for t in range(tiles):
        owners.setdefault(t // cols if by_row else t % cols, set()).add(t % n_sub)
    return any(len(s) > 1 for s in owners.values())


def plan(p, kernel, caps, w: int, axis) -> None:
    """Fill p.direct (id(load op) -> Strided), p.direct_operands ((id(dot), 0 | 1) -> the load
    op) and p.storage_params (ids of pointer parameters that must stay storage buffers)."""
    if not p.dots:
        return
    uses: dict[int, int] = {}
    for op in kernel.walk():
        for v in op.operands:
            uses[id(v)] = uses.get(id(v), 0) + 1
    reread_ok = dot_operands.reread_check(kernel)
    n_sub = w // caps.subgroup_size
    for op in kernel.walk():
        cfg = p.dots.get(id(op))
        if cfg is None:
            continue
        (M, K), N = op.operands[0].type.shape, op.operands[1].type.shape[1]
        tiles, cols = (M // cfg.m) * (N // cfg.n), N // cfg.n
        for i, dims in ((0, (cfg.m, cfg.k)), (1, (cfg.k, cfg.n))):
            v = op.operands[i]
            ld = v.owner
            if getattr(ld, "name", None) != "load" or len(ld.operands) != 1 or uses.get(id(v)) != 1:
                continue
            if n_sub > 1 and _reused(tiles, cols, n_sub, by_row=(i == 0)):
                continue
            root = _root_param(ld.operands[0])
            if root is None or not reread_ok(ld, op):
                continue
            layout = coopmat_affine.strided(ld.operands[0], axis, v.type.elem.nbytes, *dims)
            if layout is None or (layout.stride.value is not None and layout.stride.value < 0):
                continue
            p.direct[id(ld)] = layout
            p.direct_operands[(id(op), i)] = ld
            p.storage_params.add(id(root))


class DirectOperand:
    """How the dot reads one operand from memory: its load op and proven layout."""

    def __init__(self, lw, ld, layout, use, tile_type, rows: int, cols: int):
        em = lw.em
        self.lw, self.ptr_v, self.layout, self.use = lw, ld.operands[0], layout, use
        self.tile_type, self.rows, self.cols = tile_type, rows, cols
        self.shape = ld.result.type.shape
        self.bd = lw.mem.bindings[lw.get(self.ptr_v).binding]
        self.elem = ld.result.type.elem
        step = self.shape[1] if layout.layout == ROW_MAJOR else 1      # element (1, 0) or (0, 1)
        if layout.stride.value is not None:
            self.stride = em.ci(layout.stride.value)       # >= 0 (plan)
            self.check = None
        else:
            self.stride = em.op("OpISub", em.i32, self.at(em.ci(step)), self.at(em.ci(0)))
            self.check = em.op("OpSGreaterThanEqual", em.bool, self.stride, em.ci(0))

    def at(self, g):
        """Element offset in the buffer of flat element g of the operand tile."""
        return remat.evaluate(self.lw, self.ptr_v, g)

    def load(self, r0, c0):
        """The tile whose first element is (r0, c0), straight from the buffer."""
        em = self.lw.em
        g = em.iadd(em.imul(r0, em.ci(self.shape[1])), c0)
        ptr = em.op("OpAccessChain", self.bd.ptr_type, self.bd.var, em.ci(0), self.at(g))
        return em.op("OpCooperativeMatrixLoadKHR", self.tile_type, ptr, em.cu(self.layout.layout), self.stride)

    def load_by_elements(self, r0, c0):
        """The same tile, gathered element by element into this subgroup's shared slot."""
        from .coopmat_epilogue import _subgroup_barrier
        lw = self.lw
        em, mem = lw.em, lw.mem
        sg = lw.caps.subgroup_size
        size = self.rows * self.cols
        ct = memory_type(em, self.elem)
        sh = _shared_array(mem, f"coop_gather_{self.use}", ct, (lw.W // sg) * size, self.elem.nbytes)
        pc = em.b.type_pointer("Workgroup", ct)
        base = em.imul(em.op("OpSDiv", em.i32, lw.lane, em.ci(sg)), em.ci(size))
        sub_lane = em.op("OpSMod", em.i32, lw.lane, em.ci(sg))
        _subgroup_barrier(em)               # the slot's last matrix load is done
        for k in range(-(-size // sg)):
            e = em.iadd(sub_lane, em.ci(k * sg))
            i = em.op("OpSDiv", em.i32, e, em.ci(self.cols))
            j = em.op("OpSMod", em.i32, e, em.ci(self.cols))
            g = em.iadd(em.imul(em.iadd(r0, i), em.ci(self.shape[1])), em.iadd(c0, j))

            def put(e=e, g=g):
                value = (em.op("OpLoad", ct, mem._elem_ptr(self.bd, self.at(g))) if self.elem.name == "bf16"
                         else mem.load_elem(self.bd, self.at(g)))     # bf16: its u16 bits as stored
                em.op("OpStore", None, em.op("OpAccessChain", pc, sh, em.iadd(base, e)), value)
            if (k + 1) * sg <= size:
                put()
            else:
                with em.if_then(em.ilt(e, em.ci(size))):
                    put()
        _subgroup_barrier(em)
        return em.op("OpCooperativeMatrixLoadKHR", self.tile_type, em.op("OpAccessChain", pc, sh, base),
                     em.cu(ROW_MAJOR), em.cu(self.cols))
