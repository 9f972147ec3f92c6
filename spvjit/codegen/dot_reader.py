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

    def __init__(self, lw, analysis: Analysis, load, axis: int, work, transposed: bool = False):
        self.lw, self.load, self.axis, self.work = lw, load, axis, work
        self.transposed = transposed
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
        if transposed:
            self._column_bases(ptr_v)

    def _column_bases(self, ptr_v):
        """B = trans(x): B's column n starts at x's element (n, 0).  This lane's columns of B
        are not where x's registers put x's rows, so their pointers are recomputed from the
        pointer tile's expression (remat.py) once, before the k loop."""
        lw, em = self.lw, self.lw.em
        rows, cols = self.shape                 # x's shape: B is [cols, rows]
        numel = rows * cols
        self.col_bases = []
        for r in range(4 * max(1, rows // (4 * lw.W))):
            n = lw.flat(r, numel)               # row 0 of B: the column index itself
            self.col_bases.append(remat.evaluate(lw, ptr_v, em.imul(n, em.ci(cols))))

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

    def a_lane_element(self, base_i: int, i: int, k0: int, cols: int, step) -> int:
        k, off, shared_pred = step
        pred, idx = self._a_index(base_i, i, k, cols, (off, shared_pred))
        return self._finish(pred, self.lw.mem.load_elem(self.bd, idx))

    def _a_index(self, base_i: int, i: int, k: int, cols: int, step) -> tuple:
        """(mask predicate or None, element index) of A[i, k] for a k step."""
        em = self.lw.em
        off, shared_pred = step
        idx = em.iadd(base_i, off)
        if shared_pred is not None:
            return shared_pred, em.select(em.i32, shared_pred, idx, em.ci(0))
        return self._masked(em.iadd(em.ci(i * cols), k), idx)

    def a_element(self, base_i: int, i: int, k: int, cols: int, step) -> int:
        pred, idx = self._a_index(base_i, i, k, cols, step)
        return self._finish(pred, self.lw.mem.load_elem(self.bd, idx))

    def a_vec4_ok(self) -> bool:
        """A's rows hold 4 aligned consecutive k under one mask value (memory._vectorizable):
        then A[i, k..k+3] is one vec4 fetch at a uniform address."""
        return self.axis == 1 and self.lw.mem._vectorizable(self.lw, self.load, self.bd)

    def a_vec4(self, base_i: int, i: int, k: int, cols: int, step) -> list[int]:
        """A[i, k..k+3] in every lane (k a multiple of 4): one fetch at a uniform address."""
        em, mem = self.lw.em, self.lw.mem
        pred, idx = self._a_index(base_i, i, k, cols, step)
        q = em.op("OpShiftRightArithmetic", em.i32, idx, em.ci(2))
        return [self._finish(pred, v) for v in mem.load_vec4(self.bd, q)]

    # ---- B: row k, this lane's 4 columns of block cb -------------------------------------------
    def b_block(self, cb: int, k: int, cols: int) -> list[int]:
        lw, em, mem = self.lw, self.lw.em, self.lw.mem
        off = em.imul(k, self.stride)
        numel = self.shape[0] * self.shape[1]
        if self.transposed:                     # B[k, n] = x[n, k]: x's flat index n * K + k
            out = []
            for e in range(4):
                n = lw.flat(4 * cb + e, numel)
                idx = em.iadd(self.col_bases[4 * cb + e], off)
                pred, idx = self._masked(em.iadd(em.imul(n, em.ci(self.shape[1])), k), idx)
                out.append(self._finish(pred, mem.load_elem(self.bd, idx)))
            return out
        if self.vec4:
            idx = em.iadd(self.ptr.regs[4 * cb], off)
            pred, idx = self._masked(em.iadd(em.imul(k, em.ci(cols)), lw.flat(4 * cb, numel)), idx)
            q = em.op("OpShiftRightArithmetic", em.i32, idx, em.ci(2))
            return [self._finish(pred, v) for v in mem.load_vec4(self.bd, q)]
        out = []
        for e in range(4):
            idx = em.iadd(self.ptr.regs[4 * cb + e], off)
            pred, idx = self._masked(em.iadd(em.imul(k, em.ci(cols)), lw.flat(4 * cb + e, numel)), idx)
            out.append(self._finish(pred, mem.load_elem(self.bd, idx)))
        return out
