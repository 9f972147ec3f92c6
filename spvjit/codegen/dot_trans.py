"""`dot(a, trans(x))`: the dot reads x transposed instead of the lowering moving x's elements.

In the blocked layout a transpose moves almost every element to another lane: on one
subgroup that is a shuffle per (destination register, source register) pair plus selects,
on several subgroups a round trip through shared memory.  Attention kernels transpose
their [BLOCK, HEAD_DIM] tiles only to feed them to a dot (`dot(k, trans(q))`,
`dot(ds, trans(kT))`), and the unrolled dot forms read their operands by element index
anyway: the staged form stores A and B in shared memory and reads A[i, k] and B[k, j] at
computed addresses, the subgroup form broadcasts A[i, k] from the lane that holds it.  So
such a dot stages or broadcasts x itself and reads element (j, i) where it wanted (i, j):
the transpose costs nothing.  On lavapipe a 16x16 f16 `trans` feeding a 16x16x16 dot took
10 s to compile, the dot alone under 1 s.

A `trans` is left unlowered when every use is a dot operand of that kind in the same block
(so the dot's own code dominates everything that reads the value); any other use, or a dot
lowered on cooperative matrices or as a loop over k, keeps the moved registers.
"""
from __future__ import annotations

from . import dot_forms
from .values import LV


def _reads_transposed(lw, dot, index: int) -> bool:
    """Whether `dot`'s lowering can take operand `index` (0: A, 1: B) as the source of a trans."""
    if len(dot.operands[0].type.shape) != 2 or len(dot.operands[1].type.shape) != 2:
        return False
    form = dot_forms.form(lw, dot)
    return form == "staged" or (form == "subgroup" and index == 0)


def _analyze(lw) -> set[int]:
    owner_block: dict[int, int] = {}
    uses: dict[int, list] = {}

    def visit(block):
        for op in block.ops:
            owner_block[id(op)] = id(block)
            for i, v in enumerate(op.operands):
                uses.setdefault(id(v), []).append((op, i))
            for region in op.regions:
                visit(region)

    visit(lw.kernel.body)
    # a yield that carries the value out of its block is a use like any other: not a dot
    out = set()
    for op in lw.kernel.walk():
        if op.name != "trans" or len(op.operands[0].type.shape) != 2:
            continue
        users = uses.get(id(op.result), [])
        if users and all(u.name == "dot" and i in (0, 1) and owner_block[id(u)] == owner_block[id(op)]
                         and _reads_transposed(lw, u, i) for u, i in users):
            out.add(id(op))
    return out


def read_by_dot(lw, op) -> bool:
    """Lower trans `op` to nothing when its dots read its source transposed."""
    found = getattr(lw, "dot_trans", None)
    if found is None:
        found = lw.dot_trans = _analyze(lw)
    if id(op) not in found:
        return False
    lw.note(op, "read transposed by the dot (no data movement)")
    lw.bind(op, LV(None, False))
    return True


def operand(lw, dot, index: int):
    """(the LV whose registers the dot reads for operand `index`, whether it is the source of a
    transpose: then element (r, c) of the operand is element (c, r) of those registers)."""
    v = dot.operands[index]
    owner = v.owner
    if getattr(owner, "name", None) == "trans" and id(owner) in (getattr(lw, "dot_trans", None) or ()):
        return lw.get(owner.operands[0]), True
    return lw.get(v), False
