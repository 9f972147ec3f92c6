"""Dead-code elimination: drop ops whose results nobody uses and that do nothing else.

`load` stays even when unused (an out-of-bounds load is an error the
interpreter reports, and removing it would hide that), as do `store`,
`atomic_rmw`, `yield` and `return`.  A `for` or `if` goes only when its
results are unused and nothing inside it stays for those reasons.
"""
from __future__ import annotations

from collections import Counter

from ..core import Block, KernelIR, Operation

_KEEP = frozenset({"load", "store", "atomic_rmw", "atomic_cas", "yield", "return", "barrier", "assert", "print"})


def dce(kernel: KernelIR) -> KernelIR:
    uses = Counter(id(v) for op in kernel.walk() for v in op.operands)
    _dce_block(kernel.body, uses)
    return kernel


def _removable(op: Operation) -> bool:
    if op.name in _KEEP:
        return False
    return all(inner.name == "yield" or _removable(inner) for region in op.regions for inner in region.ops)


def _forget_uses(op: Operation, uses: Counter) -> None:
    for v in op.operands:
        uses[id(v)] -= 1
    for region in op.regions:
        for inner in region.ops:
            _forget_uses(inner, uses)


def _dce_block(block: Block, uses: Counter) -> None:
    # backwards, so a value's users are gone before we ask whether it is used
    kept = []
    for op in reversed(block.ops):
        for region in op.regions:
            _dce_block(region, uses)
        if _removable(op) and not any(uses[id(r)] for r in op.results):
            _forget_uses(op, uses)
            continue
        kept.append(op)
    block.ops = kept[::-1]
