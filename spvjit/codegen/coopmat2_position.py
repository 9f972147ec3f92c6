"""Operands that depend only on an element's position, computed inside a per-element function.

OpCooperativeMatrixPerElementOpNV passes its function the row and column of each element.  An
operand that is a small expression of aranges, constants and scalars (an attention mask
`offs_m[:, None] >= start + offs_n[None, :]`, `tl.where(mask, 0, -1e6)`, a column index) can
therefore be evaluated inside the function at (tile row + row, tile column + column), instead of
being a blocked tile that sends the whole matrix to the blocked layout.  Such an operand has
kind "position" in an epilogue plan (coopmat_epilogue.operand_kinds); `tl.where(cond, x, y)` may
have a position condition (a bool tile, which no cooperative matrix could hold).

The expression is evaluated by remat.evaluate, the same code that recomputes index tiles in
the blocked layout; its scalar leaves (kernel arguments, program ids, loop counters: ids of the
entry point) become parameters of the function, so nothing in it refers to the caller's ids.
"""
from __future__ import annotations

from ..ir.core import Operation
from . import remat
from .values import LV

MAX_OPS = 16
_SHAPE = ("broadcast", "expand_dims", "reshape", "splat")
_ELEMENTWISE = tuple(n for n in remat._ELEMENTWISE if n != "addptr")


def expression(v) -> bool:
    """Plan time: `v` (a tile) is an expression of aranges, constants and scalars."""
    seen: set[int] = set()

    def ok(x) -> bool:
        if x.type.is_scalar or id(x) in seen:
            return True
        op = x.owner
        if not isinstance(op, Operation) or x.type.is_pointer:
            return False                 # a loop-carried tile, or an address
        seen.add(id(x))
        if len(seen) > MAX_OPS:
            return False
        if op.name in ("arange", "constant"):
            return True
        if op.name not in _SHAPE and op.name not in _ELEMENTWISE:
            return False
        if op.name in ("floordiv", "mod") and x.type.elem.is_float:
            return False
        return all(ok(y) for y in op.operands)

    return ok(v)


def leaves(lw, values) -> list:
    """The uniform values (scalars) the expressions read, in a fixed order."""
    out, seen = [], set()

    def walk(x):
        if id(x) in seen:
            return
        seen.add(id(x))
        lv = lw.env.get(id(x))
        if lv is not None and lv.uniform:
            out.append(x)
            return
        op = x.owner
        if op is not None and op.name not in ("arange", "constant"):
            for y in op.operands:
                walk(y)

    for v in values:
        walk(v)
    return out


def evaluate(lw, values, scalar_leaves, params, flat) -> list[int]:
    """The ids of `values` at flat index `flat` (an i32 id), inside a function whose
    parameters `params` stand for `scalar_leaves`."""
    saved = {id(x): lw.env[id(x)] for x in scalar_leaves}
    try:
        for x, p in zip(scalar_leaves, params):
            lw.env[id(x)] = LV([p], True)
        return [remat.evaluate(lw, v, flat) for v in values]
    finally:
        lw.env.update(saved)
