"""Constant folding with the interpreter's numpy semantics.

An op whose operands all come from `constant` ops (scalars, or uniform
tensors: a `constant` fills its whole type with one value) becomes a
`constant` itself, computed by the same functions the interpreter runs
(`spvjit.interpreter.ops`), so folding never changes an interpreted result:
int32 wraps around, integer `floordiv`/`mod` truncate like C.  `select` with
a constant condition becomes the chosen operand.

Left alone, because the device could compute something else:
- integer division or remainder by zero, and INT_MIN / -1 (undefined in SPIR-V);
- shifts by a negative amount or by the bit width or more (undefined);
- float to int casts of values outside the target's range (undefined);
- any float inf or NaN, among the inputs or as the result: NaN payloads and
  signs, unordered compares and fast-math handling differ between drivers
  (data movement such as splat and broadcast still folds them: it copies bits);
- `maximum`/`minimum` of two zeros (either sign may come back);
- transcendental and approximate ops (`exp`, `log`, `sqrt`, `rsqrt`, `sin`,
  `pow`, float `mod`, ...): Vulkan allows them several ULP of error, so a
  numpy value would differ from the device's unfolded one.
`truediv` does fold: the correctly rounded quotient is what the interpreter
computes and lies within the device's allowed error.
"""
from __future__ import annotations

import warnings

import numpy as np

from ...interpreter import ops as O
from ..core import Block, KernelIR, Operation
from ..ops import CMP_PREDICATES
from .util import NOT_CONSTANT, SHAPE_OPS, Substitution, constant_value, make_constant

_FOLD_BINARY = {"add", "sub", "mul", "truediv", "floordiv", "mod", "and", "or", "xor",
                "shl", "shr", "maximum", "minimum", "umulhi"}
_FOLD_UNARY = {"neg", "not", "abs", "floor", "ceil", "trunc", "rint", "round"}   # exact on every device
_BOOL_OK = {"and", "or", "xor", "not"}     # numpy's `+` and `-` on bools mean nothing a device does


def fold_constants(kernel: KernelIR) -> KernelIR:
    _fold_block(kernel.body, Substitution())
    return kernel


def _fold_block(block: Block, subst: Substitution) -> None:
    kept = []
    for op in block.ops:
        subst.apply(op)
        for region in op.regions:
            _fold_block(region, subst)
        if op.name == "select":
            cond = constant_value(op.operands[0])
            if cond is not NOT_CONSTANT:
                subst.replace(op.result, op.operands[1] if cond else op.operands[2])
                continue
        value = _evaluate(op)
        if value is not NOT_CONSTANT:
            make_constant(op, value)
        kept.append(op)
    block.ops = kept


def _evaluate(op: Operation):
    """The folded value as a Python scalar, or NOT_CONSTANT when op must stay."""
    if len(op.results) != 1 or not op.operands:
        return NOT_CONSTANT
    values = [constant_value(v) for v in op.operands]
    if any(v is NOT_CONSTANT for v in values):
        return NOT_CONSTANT
    if op.name in SHAPE_OPS:
        return values[0]        # a uniform tile stays uniform in any shape
    if op.name not in _FOLD_BINARY | _FOLD_UNARY | {"cmp", "cast", "bitcast"}:
        return NOT_CONSTANT
    src = [v.type.elem for v in op.operands]
    dst = op.result.type.elem
    try:
        args = [O.finish(np.asarray(v), t) for v, t in zip(values, src)]
    except (TypeError, ValueError):
        return NOT_CONSTANT      # a hand-written constant whose value does not fit its type
    if any(t.is_float and not np.isfinite(a) for a, t in zip(args, src)):
        return NOT_CONSTANT
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            out = _compute(op, args, src, dst)
        except TypeError:
            return NOT_CONSTANT     # e.g. `not` on a float: type-checks, but has no numpy meaning
    if out is NOT_CONSTANT:
        return NOT_CONSTANT
    out = np.asarray(out).reshape(())
    if dst.is_float and not np.isfinite(out):
        return NOT_CONSTANT
    return out.item()           # a Python bool/int/float, as the printer and interpreter expect


def _compute(op: Operation, args, src, dst):
    name = op.name
    if name == "cmp":
        if op.attrs["pred"] not in CMP_PREDICATES:
            return NOT_CONSTANT
        return np.asarray(O.compare(op.attrs["pred"], args[0], args[1]))
    if name == "cast":
        if src[0].is_float and dst.is_int:
            info = np.iinfo(dst.numpy)
            if not info.min <= np.trunc(args[0]) <= info.max:
                return NOT_CONSTANT
        return O.cast(args[0], src[0], dst)
    if name == "bitcast":
        return O.bitcast(args[0].reshape(1), src[0], dst)
    t = src[0]
    if t.is_bool and name not in _BOOL_OK:
        return NOT_CONSTANT
    if name in _FOLD_UNARY:
        if name == "abs" and t.is_signed and args[0] == np.iinfo(t.numpy).min:
            return NOT_CONSTANT
        return O.finish(O.unary(name, args[0], t), dst)
    a, b = args
    if t.is_float:
        if name == "mod" or name in ("maximum", "minimum") and a == 0 and b == 0:
            return NOT_CONSTANT
    elif name in ("floordiv", "mod"):
        if b == 0 or t.is_signed and b == -1 and a == np.iinfo(t.numpy).min:
            return NOT_CONSTANT
    elif name in ("shl", "shr") and not 0 <= b < t.bits:
        return NOT_CONSTANT
    return O.finish(O.binary(name, a, b, t), dst)
