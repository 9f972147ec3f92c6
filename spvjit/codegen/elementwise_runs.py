"""Runs of elementwise ops on a big tile, emitted register by register.

The lowering emits one op at a time over all of a tile's registers (lower.py).  For a chain
of elementwise ops on a [64, 64] tile (512 registers per lane on lavapipe) that order keeps
every intermediate tile alive until the next op has read it: the CPU driver's register
allocator spills hundreds of values, and LLVM's allocator and scheduler grow faster than
linearly with them (a profile of lavapipe compiling such a chain: SlotIndexes renumbering
during spilling and the machine scheduler's pressure tracking took most of the time).

Here a run of consecutive elementwise ops on one shape is emitted register-major: register
r of the first op, then register r of the second, ... before register r + 1, so a register's
chain is finished before the next starts and few values are live at once.  The instructions
are the same as op by op, only their order changes.  Ops that only rename or replicate
values (constants, splats, broadcasts, expand_dims) that the chain needs are emitted before
it, as their operands do not come from the chain.  Below MIN_REGS registers per lane the
op-by-op order is kept (same SPIR-V as before).
"""
from __future__ import annotations

from ..ir.ops import OP_INFO
from .values import LV

MIN_REGS = 128
     # registers per lane from which a run is emitted register-major: a 64x64 chain of 8 ops
     # on lavapipe (512 registers) compiled in 10 s instead of 18, a 32x32 one (128) in 0.9
     # instead of 1.3; the f16 matvec of benchmarks/kernels.py (8x64 tiles, 64 registers)
     # compiles as fast either way and measured 5-10% slower register-major, so it keeps its order
HOISTED = frozenset(("constant", "splat", "broadcast", "expand_dims", "assume"))
     # ops a run may move ahead of its chain: they read values, never write memory


def fusable(lw, op) -> bool:
    """A plain elementwise op (lower.op_elementwise's own) on a tile of >= MIN_REGS registers."""
    if len(op.results) != 1 or getattr(lw, "op_" + op.name, None) is not None:
        return False
    info = OP_INFO.get(op.name)
    if info is None or info.category != "elementwise" or id(op) in lw.coop_plan.epilogue:
        return False
    t = op.result.type
    return not t.is_scalar and lw.nregs(t) >= MIN_REGS and not any(v.type.is_scalar for v in op.operands)


def take(lw, ops, i: int, skip) -> tuple[list, list, int] | None:
    """The run starting at ops[i]: (ops emitted first, the chain, index after the run), or None
    where fewer than two elementwise ops would be emitted together."""
    first = ops[i]
    if not fusable(lw, first):
        return None
    shape = first.result.type.shape
    chain, pre, made = [first], [], {id(first.result)}
    j = i + 1
    while j < len(ops):
        op = ops[j]
        if id(op) in skip:
            pre.append(op)
        elif fusable(lw, op) and op.result.type.shape == shape:
            chain.append(op)
            made.add(id(op.result))
        elif op.name in HOISTED and not any(id(v) in made for v in op.operands):
            pre.append(op)
        else:
            break
        j += 1
    if len(chain) < 2:
        return None
    return pre, chain, j


def emit(lw, chain) -> bool:
    """The chain's registers, register-major; each op's value is bound as op_elementwise binds
    it.  False (nothing emitted) where an operand from outside the chain is not a blocked tile
    of the chain's register count (uniform, or in cooperative-matrix layout)."""
    n = lw.nregs(chain[0].result.type)
    made = {id(op.result) for op in chain}
    for op in chain:
        for v in op.operands:
            if id(v) not in made:
                lv = lw.get(v)
                if lv.uniform or lv.coop is not None or lv.regs is None or len(lv.regs) != n:
                    return False
    outs = {}
    for op in chain:
        outs[id(op)] = [None] * n
        lw.bind(op, LV(outs[id(op)], False, None))
    for r in range(n):
        for op in chain:
            lw.loc, lw.current_op = op.loc, op
            a = [lw.get(v).regs[r] for v in op.operands]
            outs[id(op)][r] = lw.scalar_op(op, op.operands[0].type.elem, op.result.type.elem, *a)
    return True
