"""Recompute small index tiles where a move needs them, instead of moving them between lanes.

A broadcast, reshape or transpose in the blocked layout moves elements between lanes; when a
program spans several subgroups (every GPU) that goes through shared memory with two barriers.
Most of what Triton kernels broadcast is index arithmetic: `offs[:, None] * stride`,
`a_ptr + rows[:, None] * K + cols[None, :]`, `rows[:, None] < M`.  Such a value is a small
expression of aranges, uniform scalars and constants, so each destination lane can compute the
elements it needs from their indices: a few integer ops per register, no communication (as in
Triton, where each thread computes its own offsets from its layout).

`expression(value, lw)` says whether a value is such an expression (bounded in size);
`evaluate(lw, value, g)` emits the value of element `g` (an i32 id: a flat index into the
value's own shape) in the current lane.
"""
from __future__ import annotations

from ..ir.core import Operation
from . import global_pointers
from .layout import broadcast_map, trans_map

MAX_OPS = 16            # beyond this, moving the data is cheaper than recomputing it per register
_SAME_FLAT = ("expand_dims", "reshape")     # flat index unchanged
_ELEMENTWISE = ("add", "sub", "mul", "cmp", "select", "and", "or", "xor", "shl", "shr", "maximum",
                "minimum", "floordiv", "mod", "neg", "not", "cast", "addptr")


def expression(lw, value, max_ops: int = MAX_OPS) -> bool:
    """True when `value` can be recomputed per element from indices and uniform values (in at
    most `max_ops` ops)."""
    seen: set[int] = set()

    def ok(v) -> bool:
        if id(v) in seen:
            return True
        lv = lw.env.get(id(v))
        if lv is not None and lv.uniform:
            return True
        op = v.owner
        if not isinstance(op, Operation):
            return False                 # a loop-carried or block argument: only its registers exist
        seen.add(id(v))
        if len(seen) > max_ops:
            return False
        if op.name in ("arange", "constant"):
            return True
        if not (op.name in _SAME_FLAT or op.name in ("broadcast", "trans", "splat") or op.name in _ELEMENTWISE):
            return False                 # loads, reductions, loops...: only their registers exist
        if v.type.is_pointer and op.name not in ("addptr", "splat", "broadcast", "trans") + _SAME_FLAT:
            return False
        if op.name in ("floordiv", "mod") and v.type.elem.is_float:
            return False
        return all(ok(x) for x in op.operands)

    return ok(value)


def evaluate(lw, value, g: int) -> int:
    """The id of element `g` (flat index into value's shape) of `value`, computed in this lane."""
    cache: dict[tuple[int, int], int] = {}

    def ev(v, g):
        key = (id(v), g)
        if key in cache:
            return cache[key]
        lv = lw.env.get(id(v))
        if lv is not None and lv.uniform:
            out = lv.regs[0]
        else:
            out = _op(v.owner, g)
        cache[key] = out
        return out

    def _op(op, g):
        em = lw.em
        name = op.name
        if name == "constant":
            return em.const(op.result.type.elem, op.attrs["value"])
        if name == "arange":
            start = op.attrs["start"]
            return g if start == 0 else em.iadd(g, em.ci(start))
        if name == "splat":
            return ev(op.operands[0], g)
        if name in _SAME_FLAT:
            return ev(op.operands[0], g)
        if name == "broadcast":
            src = op.operands[0].type.shape
            return ev(op.operands[0], lw.emit_index(broadcast_map(src, op.result.type.shape), g))
        if name == "trans":
            return ev(op.operands[0], lw.emit_index(trans_map(op.operands[0].type.shape), g))
        args = [ev(x, g) for x in op.operands]
        if name == "addptr" and op.result.type.elem.global_address:     # 64-bit byte addresses
            return global_pointers.offset(lw, args[0], args[1], op.operands[1].type.elem,
                                          op.result.type.elem.pointee)
        if name == "addptr":             # pointers are i32 element offsets into their binding
            return em.iadd(args[0], args[1])
        return lw.scalar_op(op, op.operands[0].type.elem, op.result.type.elem, *args)

    return ev(value, g)
