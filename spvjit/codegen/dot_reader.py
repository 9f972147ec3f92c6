"""Emits the loads a looped dot makes of an operand it reads itself (dot_operands.Analysis
found which): A[i, k..] at uniform addresses and B[k, this lane's columns], with the load's
mask recomputed for the elements read (remat.py).  See dot_operands.py for the rules.
"""
from __future__ import annotations

from ..ir import types as T
from ..ir.core import Operation
from . import remat, subgroup
from .dot_operands import Analysis, _Id


class Reader:
    """Emits the loads of one fused dot operand; `prepare` runs before the k loop."""

    def __init__(self, lw, analysis: Analysis, load, axis: int, work, transposed: bool = False,
                 lane_row=None):
        self.lw, self.load, self.axis, self.work = lw, load, axis, work
        self.transposed = transposed
        # B's rows narrower than the lanes' vec4 blocks (N < 4W): the id of this lane's row in
        # a register block (block_loops._RowGroups.lane_row); None where a row spans every lane
        self.lane_row = lane_row
        em, mem = lw.em, lw.mem
        ptr_v = load.operands[0]
        self.ptr = lw.get(ptr_v)
        self.bd = mem.bindings[self.ptr.binding]
        self.dt = load.result.type.elem
        stride = analysis.stride(ptr_v, axis, lw)
        self.stride = int(stride) if isinstance(stride, _Id) else em.ci(stride)
        self.mask = load.operands[1] if len(load.operands) > 1 else None
        # `other` is one value everywhere (_constant_like); its tile may not have been lowered
        other = remat.evaluate(lw, load.operands[2], em.ci(0)) if len(load.operands) > 2 else None
        self.other = other if other is not None else em.const(self.dt, 0)
        self.vec4 = axis == 0 and ptr_v.type.shape[0] > 1 and mem._vectorizable(lw, load, self.bd)
        self.shape = ptr_v.type.shape
        self._columns = {}                      # ids of _column for narrow rows, made once
        if transposed:
            self._column_bases(ptr_v)

    def _column_bases(self, ptr_v):
        """B = trans(x): B's column n starts at x's element (n, 0).  This lane's columns of B
        are not where x's registers put x's rows, so their pointers are recomputed from the
        pointer tile's expression (remat.py) once, before the k loop."""
        lw, em = self.lw, self.lw.em
        rows, cols = self.shape                 # x's shape: B is [cols, rows]
        self.col_bases = []
        for r in range(4 * max(1, rows // (4 * lw.W))):
            n = self._column(r)                 # row 0 of B: the column index itself
            self.col_bases.append(remat.evaluate(lw, ptr_v, em.imul(n, em.ci(cols))))

    def _column(self, r: int) -> int:
        """The column of B that this lane's B register r holds (B's blocked layout, v=4).
        Where B's rows are narrower than the lanes' vec4 blocks (N < 4W), a block spans
        4W/N rows and register r of lane l lies in row l // (N/4): its column is the flat
        index modulo N (N is then a power of two)."""
        lw, em = self.lw, self.lw.em
        numel = self.shape[0] * self.shape[1]
        if self.lane_row is None:
            return lw.flat(r, numel)
        if r not in self._columns:            # once per dot, where first used
            n = self.shape[0] if self.transposed else self.shape[1]
            self._columns[r] = em.op("OpBitwiseAnd", em.i32, lw.flat(r, numel), em.ci(n - 1))
        return self._columns[r]

    def _masked(self, g, idx):
        """(predicate or None, safe index) for flat element g of the operand."""
        if self.mask is None:
            return None, idx
        em = self.lw.em
        pred = remat.evaluate(self.lw, self.mask, g)
        return pred, em.select(em.i32, pred, idx, em.ci(0))

    def _finish(self, pred, v):
        lw, em = self.lw, self.lw.em
        if pred is not None:
            v = em.select(em.type_of(self.dt), pred, v, self.other)
        return lw.convert(v, self.dt, self.work)

    # ---- A: rows i, element (i, k) at a uniform address ----------------------------------------
    def row_bases(self, rows: int, cols: int) -> list[int]:
        """The pointer of A[i, 0] for each row i, handed out by a subgroup broadcast from the
        lane that holds it.  (Recomputing it from the pointer tile's expression instead, where
        it is one, made tutorial 06's dK/dV compile 10% faster on lavapipe 22.3 but the f32
        matmul of benchmarks/kernels.py run 28% slower: 27.5 -> 20 GFLOP/s at 64x64x32.)"""
        from .layout import lane_np, reg_np
        lw = self.lw
        va = lw.vec(rows * cols)
        out = []
        for i in range(rows):
            f = i * cols
            out.append(subgroup.broadcast(lw, self.dtype_i32(), self.ptr.regs[int(reg_np(f, lw.W, va))],
                                          int(lane_np(f, lw.W, va))))
        return out

    @staticmethod
    def dtype_i32():
        return T.i32

    def a_step(self, k: int, cols: int):
        """What every row shares at step k: the pointer offset, and the mask when it is a row
        broadcast ([1, K] -> [M, K], as in `offs_k[None, :] < K - k * BK`)."""
        em = self.lw.em
        shared = None
        m = self.mask.owner if self.mask is not None else None
        if isinstance(m, Operation) and m.name == "broadcast" and m.operands[0].type.shape[0] == 1:
            shared = remat.evaluate(self.lw, m.operands[0], k)
        return em.imul(k, self.stride), shared

    def a_lane_step(self, k0: int):
        """Lane l loads A[i, k0 + l] for every row i (the trip's W steps, one element per lane)."""
        lw, em = self.lw, self.lw.em
        k = em.iadd(k0, lw.lane)
        shared = None
        m = self.mask.owner if self.mask is not None else None
        if isinstance(m, Operation) and m.name == "broadcast" and m.operands[0].type.shape[0] == 1:
            shared = remat.evaluate(lw, m.operands[0], k)
        return k, em.imul(k, self.stride), shared

    def a_lane_element(self, base_i: int, row_flat, k0: int, step) -> int:
        k, off, shared_pred = step
        pred, idx = self._a_index(base_i, row_flat, k, (off, shared_pred))
        return self._finish(pred, self.lw.mem.load_elem(self.bd, idx))

    def _a_index(self, base_i: int, row_flat, k: int, step) -> tuple:
        """(mask predicate or None, element index) of A[i, k] for a k step; `base_i` is the
        pointer of A[i, 0] and `row_flat()` emits the id of its flat index i * K (uniform where
        every lane reads row i, per lane where the lanes of a C register block hold several
        rows), needed only for a mask that is not a row broadcast."""
        em = self.lw.em
        off, shared_pred = step
        idx = em.iadd(base_i, off)
        if shared_pred is not None:
            return shared_pred, em.select(em.i32, shared_pred, idx, em.ci(0))
        return self._masked(em.iadd(row_flat(), k), idx)

    def a_element(self, base_i: int, row_flat, k: int, step) -> int:
        pred, idx = self._a_index(base_i, row_flat, k, step)
        return self._finish(pred, self.lw.mem.load_elem(self.bd, idx))

    def a_vec4_ok(self) -> bool:
        """A's rows hold 4 aligned consecutive k under one mask value (memory._vectorizable):
        then A[i, k..k+3] is one vec4 fetch at a uniform address."""
        return self.axis == 1 and self.lw.mem._vectorizable(self.lw, self.load, self.bd)

    def a_vec4(self, base_i: int, row_flat, k: int, step) -> list[int]:
        """A[i, k..k+3] (k a multiple of 4): one fetch, at a uniform address where every lane
        reads row i."""
        em, mem = self.lw.em, self.lw.mem
        pred, idx = self._a_index(base_i, row_flat, k, step)
        q = em.op("OpShiftRightArithmetic", em.i32, idx, em.ci(2))
        return [self._finish(pred, v) for v in mem.load_vec4(self.bd, q)]

    # ---- B: row k, this lane's 4 columns of block cb -------------------------------------------
    def b_block(self, cb: int, k: int, cols: int) -> list[int]:
        em, mem = self.lw.em, self.lw.mem
        if self.transposed:                     # B[k, n] = x[n, k]: x's flat index n * K + k
            off = em.imul(k, self.stride)
            out = []
            for e in range(4):
                n = self._column(4 * cb + e)
                idx = em.iadd(self.col_bases[4 * cb + e], off)
                pred, idx = self._masked(em.iadd(em.imul(n, em.ci(self.shape[1])), k), idx)
                out.append(self._finish(pred, mem.load_elem(self.bd, idx)))
            return out
        # this lane's pointer registers are row 0's, or the lane's own row where N < 4W
        r0 = self.lane_row
        off = em.imul(k if r0 is None else em.op("OpISub", em.i32, k, r0), self.stride)
        if self.vec4:
            idx = em.iadd(self.ptr.regs[4 * cb], off)
            pred, idx = self._masked(em.iadd(em.imul(k, em.ci(cols)), self._column(4 * cb)), idx)
            q = em.op("OpShiftRightArithmetic", em.i32, idx, em.ci(2))
            return [self._finish(pred, v) for v in mem.load_vec4(self.bd, q)]
        out = []
        for e in range(4):
            idx = em.iadd(self.ptr.regs[4 * cb + e], off)
            pred, idx = self._masked(em.iadd(em.imul(k, em.ci(cols)), self._column(4 * cb + e)), idx)
            out.append(self._finish(pred, mem.load_elem(self.bd, idx)))
        return out
