"""Canonicalization: the shape and broadcast cleanup after the frontend.

The frontend inserts splats, broadcasts and casts per expression without
looking around; these rewrites remove what is redundant.  Each keeps the
exact value (bit for bit) of every tile:

- `broadcast`, `reshape`, `cast`, `bitcast` to the operand's own type -> the operand;
- `trans` of `trans` -> the original tile;
- `splat`, `broadcast`, `expand_dims`, `reshape`, `trans` of a `constant`
  -> a `constant` of the result type (constants are uniform tiles);
- `broadcast`, `expand_dims` or `reshape` of a `splat` -> one `splat` of the
  scalar to the final shape;
- `broadcast` of `broadcast`, `reshape` of `reshape` -> one op from the source;
- integer `add x, 0`, `add 0, x`, `sub x, 0`, `mul x, 1`, `mul 1, x`,
  `floordiv x, 1` -> x (floats are left: `-0.0 + 0.0` is `+0.0`);
- `select c, x, x` -> x;
- a value a `for` carries but yields back unchanged (a block pointer's strides and shape,
  carried field by field) -> its initial value, inside the loop and after it, so the
  analyses below see what it is (a unit stride stays the constant 1: vector loads).

An `expand_dims` followed by a `broadcast` (how `a[:, None] + b[None, :]`
lowers) is left as it is unless its source is a splat or constant: the two
change the rank and the extent, and merging them would need an op this IR
does not have.  Ops made dead here (a splat whose users became constants)
are left for `dce`.
"""
from __future__ import annotations

from ..core import Block, KernelIR, Operation, Value
from .util import NOT_CONSTANT, SHAPE_OPS, Substitution, constant_value, make_constant


def canonicalize(kernel: KernelIR) -> KernelIR:
    _canon_block(kernel.body, Substitution())
    return kernel


def _canon_block(block: Block, subst: Substitution) -> None:
    kept = []
    for op in block.ops:
        subst.apply(op)
        if op.name == "for":
            _forward_invariant_carries(op, subst)
        for region in op.regions:
            _canon_block(region, subst)
        replacement = _rewrite(op)
        if replacement is not None:
            subst.replace(op.result, replacement)
            continue
        kept.append(op)
    block.ops = kept


def _forward_invariant_carries(op: Operation, subst: Substitution) -> None:
    """Carried values that the body yields back as they came: every iteration sees the init."""
    body = op.regions[0]
    term = body.terminator
    if term is None or term.name != "yield":
        return
    for i, (arg, out) in enumerate(zip(body.args[1:], term.operands)):
        if out is arg:
            init = op.operands[3 + i]
            subst.replace(arg, init)
            subst.replace(op.results[i], init)


def _producer(v: Value, name: str) -> Operation | None:
    owner = v.owner
    return owner if isinstance(owner, Operation) and owner.name == name else None


def _is_int_constant(v: Value, value: int) -> bool:
    c = constant_value(v)
    elem = v.type.elem
    # `type(c) is int` keeps True (== 1) and 1.0 out
    return c is not NOT_CONSTANT and elem.is_int and type(c) is int and c == value


def _rewrite(op: Operation) -> Value | None:
    """A value to replace op's result with, or None (op may have been rewritten in place)."""
    name = op.name
    if name in ("broadcast", "reshape", "cast", "bitcast") and op.operands[0].type == op.result.type:
        return op.operands[0]
    if name == "trans" and (inner := _producer(op.operands[0], "trans")) is not None:
        return inner.operands[0]
    if name in SHAPE_OPS:
        src = op.operands[0]
        value = constant_value(src)
        if value is not NOT_CONSTANT:
            make_constant(op, value)
        elif name in ("broadcast", "expand_dims", "reshape") and (s := _producer(src, "splat")) is not None:
            op.name, op.operands, op.attrs = "splat", [s.operands[0]], {}
        elif name in ("broadcast", "reshape") and (inner := _producer(src, name)) is not None:
            op.operands = [inner.operands[0]]
        return None
    if name in ("add", "sub", "mul", "floordiv"):
        a, b = op.operands
        unit = 0 if name in ("add", "sub") else 1
        if _is_int_constant(b, unit):
            return a
        if name in ("add", "mul") and _is_int_constant(a, unit):
            return b
        return None
    if name == "select" and op.operands[1] is op.operands[2]:
        return op.operands[1]
    return None
