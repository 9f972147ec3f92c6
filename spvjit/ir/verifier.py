"""Verifier: every op type-checks, every operand is defined before use and in scope."""
from __future__ import annotations

from .core import Block, KernelIR
from .ops import check_op


class IRVerificationError(Exception):
    """The IR breaks a rule; the message names the op and its source location."""


def verify(kernel: KernelIR) -> None:
    scope: set[int] = {id(p.value) for p in kernel.params}
    _verify_block(kernel.body, scope, top=True)


def _where(op) -> str:
    return f" (at {op.loc})" if op.loc else ""


def _verify_block(block: Block, outer: set[int], top: bool = False) -> None:
    scope = set(outer) | {id(a) for a in block.args}
    for i, op in enumerate(block.ops):
        for v in op.operands:
            if id(v) not in scope:
                raise IRVerificationError(f"'{op.name}' uses a value that is not defined in scope{_where(op)}")
        err = check_op(op)
        if err:
            raise IRVerificationError(err + _where(op))
        if op.name in ("yield", "return") and i != len(block.ops) - 1:
            raise IRVerificationError(f"'{op.name}' must be the last op of its block{_where(op)}")
        if op.name == "yield" and top:
            raise IRVerificationError(f"'yield' outside a region{_where(op)}")
        for region in op.regions:
            _verify_block(region, scope)
        scope.update(id(r) for r in op.results)
