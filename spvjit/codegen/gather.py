"""Tile ops whose data movement depends on runtime values, through the shared scratch.

The other moves (memory.exchange) know at compile time which lane holds each element, so
they can pick register copies or subgroup shuffles; these two cannot:

- `gather(src, index, axis)`: every lane writes its source registers to the scratch at their
  flat positions, a barrier, then each lane reads the element its index names.  An index
  outside the source's axis is clamped into it (Triton leaves it undefined; the interpreter
  raises), so no lane reads outside the staged tile.
- `histogram(x, num_bins, mask)`: the bins are scratch words, zeroed, then each lane adds 1
  with a workgroup-scope atomic for each of its (unmasked, in-range) elements, then the
  result tile is read back.  Values outside [0, num_bins) are not counted.

Each begins with a barrier, like every scratch exchange, so earlier readers are done.
"""
from __future__ import annotations

import math

from .emitter import SCOPE_WORKGROUP
from .values import LV


def lower_gather(lw, op):
    em, mem = lw.em, lw.mem
    src_t, idx_t = op.operands[0].type, op.operands[1].type
    src, index = lw.get(op.operands[0]), lw.get(op.operands[1])
    dt = op.result.type.elem
    axis = op.attrs["axis"]
    inner = math.prod(src_t.shape[axis + 1:])
    n_src, n_out = src_t.shape[axis], idx_t.shape[axis]
    lw.note(op, "shared memory + barriers (runtime index)")
    em.barrier()
    mem.store_tile(lw, src.regs, src_t.numel, dt, 0)
    em.barrier()
    out = []
    for r, raw in enumerate(index.regs):
        f = lw.flat_or_zero(r, idx_t.numel)
        k = _clamped_i32(em, mem, raw, idx_t.elem, n_src)
        outer = em.op("OpSDiv", em.i32, f, em.ci(n_out * inner))
        s = em.iadd(em.imul(outer, em.ci(n_src * inner)), em.imul(k, em.ci(inner)))
        if inner > 1:
            s = em.iadd(s, em.op("OpSMod", em.i32, f, em.ci(inner)))
        out.append(mem.from_word(mem.scratch_load(s), dt))
    lw.bind(op, LV(out, False))


def _clamped_i32(em, mem, v: int, dt, n: int) -> int:
    """An index register of integer type dt -> i32 in [0, n)."""
    word = mem.to_word(v, dt)                       # u32; signed types sign-extended first
    if dt.is_signed:
        i = em.op("OpBitcast", em.i32, word)
        i = em.ext(em.i32, "SMax", i, em.ci(0))
        return em.ext(em.i32, "SMin", i, em.ci(n - 1))
    return em.op("OpBitcast", em.i32, em.ext(em.u32, "UMin", word, em.cu(n - 1)))


def lower_histogram(lw, op):
    em, mem = lw.em, lw.mem
    x_t = op.operands[0].type
    x = lw.get(op.operands[0])
    mask = lw.get(op.operands[1]) if len(op.operands) > 1 else None
    nb = op.attrs["num_bins"]
    W = lw.W
    lw.note(op, "workgroup atomics on shared-memory bins")
    em.barrier()
    for q in range(-(-nb // W)):                    # lane l zeroes bins l, l + W, ...
        b = em.iadd(lw.lane, em.ci(q * W)) if q else lw.lane
        if (q + 1) * W <= nb:
            mem.scratch_store(b, em.cu(0))
        else:
            with em.if_then(em.ilt(b, em.ci(nb))):
                mem.scratch_store(b, em.cu(0))
    em.barrier()
    scope, relaxed = em.cu(SCOPE_WORKGROUP), em.cu(0)
    for r, v in enumerate(x.regs):
        word = mem.to_word(v, x_t.elem)           # negative values wrap to huge: out of range
        pred = em.op("OpULessThan", em.bool, word, em.cu(nb))
        valid = lw.valid(x_t.numel, r)
        if valid is not None:
            pred = em.land(pred, valid)
        if mask is not None:
            pred = em.land(pred, mask.regs[r])
        with em.if_then(pred):
            p = mem.scratch_word_ptr(word)
            em.op("OpAtomicIAdd", em.u32, p, scope, relaxed, em.cu(1))
    em.barrier()
    out = []
    for r in range(lw.nregs(op.result.type)):
        out.append(em.op("OpBitcast", em.i32, mem.scratch_load(lw.flat_or_zero(r, nb))))
    lw.bind(op, LV(out, False))
