"""`acc + dot(a, b)` -> `dot(a, b, acc)`: the accumulator moves into the dot.

Triton code writes both `acc = tl.dot(a, b, acc)` and `acc += tl.dot(a, b)`.  In the second
form the dot starts from zero and an elementwise add follows, so a cooperative-matrix
lowering would have to leave the matrix layout on every K step.  Folding the add into the
dot's accumulator (as Triton's own combine pass does) keeps the loop in matrix registers.
Taken only when the dot starts from a zero constant, its result has no other use, and the
types agree; for floats the sum is then rounded once less, which is the point of an
accumulator.  The rewritten op takes the add's place, so `acc` always dominates it.
"""
from __future__ import annotations

from ..core import Block, KernelIR, Operation
from .util import NOT_CONSTANT, constant_value


def accumulate_dots(kernel: KernelIR) -> KernelIR:
    uses: dict[int, int] = {}
    for op in kernel.walk():
        for v in op.operands:
            uses[id(v)] = uses.get(id(v), 0) + 1
    _rewrite_block(kernel.body, uses)
    return kernel


def _zero_dot(v, uses) -> Operation | None:
    owner = v.owner
    if not isinstance(owner, Operation) or owner.name != "dot" or uses.get(id(v), 0) != 1:
        return None
    init = constant_value(owner.operands[2])
    return owner if init is not NOT_CONSTANT and init == 0 else None


def _rewrite_block(block: Block, uses) -> None:
    kept = []
    for op in block.ops:
        for region in op.regions:
            _rewrite_block(region, uses)
        if op.name == "add" and op.result.type.shape:
            for i in (0, 1):
                dot, acc = _zero_dot(op.operands[i], uses), op.operands[1 - i]
                if dot is not None and acc.type == dot.result.type == op.result.type:
                    op.name, op.attrs = "dot", dict(dot.attrs)
                    op.operands = [dot.operands[0], dot.operands[1], acc]
                    uses[id(dot.result)] = 0      # the old dot is dead now; dce drops it
                    break
        kept.append(op)
    block.ops = kept
