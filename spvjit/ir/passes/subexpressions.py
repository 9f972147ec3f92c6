"""Common-subexpression elimination of pure ops.

Two ops are the same expression when name, operands, attributes and result
types agree.  The table is scoped like SSA visibility: a region sees what its
enclosing blocks computed before it, but what it computes stays inside it.
"""
from __future__ import annotations

from collections import ChainMap

from ..core import Block, KernelIR
from .util import Substitution, is_pure


def cse(kernel: KernelIR) -> KernelIR:
    _cse_block(kernel.body, ChainMap(), Substitution())
    return kernel


def _attr_key(attrs: dict) -> tuple:
    # type and repr keep 1, 1.0 and True apart, and 0.0 apart from -0.0
    return tuple(sorted((k, type(v).__name__, repr(v)) for k, v in attrs.items()))


def _cse_block(block: Block, table: ChainMap, subst: Substitution) -> None:
    kept = []
    for op in block.ops:
        subst.apply(op)
        for region in op.regions:
            _cse_block(region, table.new_child(), subst)
        if is_pure(op) and op.results:
            key = (op.name, tuple(id(v) for v in op.operands), _attr_key(op.attrs),
                   tuple(r.type for r in op.results))
            prev = table.get(key)
            if prev is not None:
                for old, new in zip(op.results, prev.results):
                    subst.replace(old, new)
                continue
            table[key] = op
        kept.append(op)
    block.ops = kept
