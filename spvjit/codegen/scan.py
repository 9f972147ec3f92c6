"""Inclusive scans (cumsum, cumprod) along one axis: Hillis-Steele doubling.

Step d (1, 2, 4, ... < n) combines each element with the one d places before it along the
axis (after it for reverse scans), where there is one.  The shifted tile is a data movement
like any other (memory.exchange: register copies, subgroup shuffles or shared memory), with
a source map that is not affine (ShiftMap), so log2(n) exchanges scan any axis of any tile.
Combining in the order (earlier, later) keeps the result exact for integers and the usual
tree-order rounding for floats.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .layout import IndexMap, strides


@dataclass(frozen=True)
class ShiftMap(IndexMap):
    """s(f) = f - d*stride where the axis position allows it (f + d*stride for reverse), else f."""
    stride: int = 1
    n: int = 1
    d: int = 1
    reverse: bool = False

    def eval(self, f: np.ndarray) -> np.ndarray:
        pos = (f // self.stride) % self.n
        if self.reverse:
            return np.where(pos < self.n - self.d, f + self.d * self.stride, f)
        return np.where(pos >= self.d, f - self.d * self.stride, f)

    def emit(self, lw, f: int) -> int:
        em = lw.em
        pos = em.op("OpSMod", em.i32, em.op("OpSDiv", em.i32, f, em.ci(self.stride)), em.ci(self.n))
        if self.reverse:
            ok = em.ilt(pos, em.ci(self.n - self.d))
            return em.select(em.i32, ok, em.iadd(f, em.ci(self.d * self.stride)), f)
        ok = em.op("OpSGreaterThanEqual", em.bool, pos, em.ci(self.d))
        return em.select(em.i32, ok, em.op("OpISub", em.i32, f, em.ci(self.d * self.stride)), f)


def _combine(em, kind, dt, rt, earlier, later):
    if kind == "sum":
        v = em.op("OpFAdd", rt, earlier, later) if dt.is_float else em.op("OpIAdd", rt, earlier, later)
    elif kind == "prod":
        v = em.op("OpFMul", rt, earlier, later) if dt.is_float else em.op("OpIMul", rt, earlier, later)
    else:
        pre = "F" if dt.is_float else ("S" if dt.is_signed else "U")
        v = em.ext(rt, pre + ("Max" if kind == "max" else "Min"), earlier, later)
    return em.round_bf16(v) if dt.name == "bf16" else v


def lower_scan(lw, op):
    em = lw.em
    t = op.operands[0].type
    kind, axis, reverse = op.attrs["kind"], op.attrs["axis"], op.attrs.get("reverse", False)
    src = lw.get(op.operands[0])
    if src.uniform:
        raise lw.error("scan of a scalar")
    if t.elem.is_bool:
        raise lw.error("scan of booleans; convert them to int32 first")
    n, stride, numel = t.shape[axis], strides(t.shape)[axis], t.numel
    rt = em.type_of(t.elem)
    regs = list(src.regs)
    lw.note(op, f"Hillis-Steele scan: {max(0, (n - 1).bit_length())} shifted exchanges")
    d = 1
    while d < n:
        shifted = lw.mem.exchange(lw, regs, numel, numel, ShiftMap((), 0, stride, n, d, reverse), t.elem)
        out = []
        for r, (mine, other) in enumerate(zip(regs, shifted)):
            pos = em.op("OpSMod", em.i32, em.op("OpSDiv", em.i32, lw.flat(r, numel), em.ci(stride)), em.ci(n))
            has = em.ilt(pos, em.ci(n - d)) if reverse else em.op("OpSGreaterThanEqual", em.bool, pos, em.ci(d))
            comb = _combine(em, kind, t.elem, rt, other, mine) if not reverse else \
                _combine(em, kind, t.elem, rt, mine, other)
            out.append(em.select(rt, has, comb, mine))
        regs = out
        d *= 2
    lw.bind(op, type(src)(regs, False, None))
