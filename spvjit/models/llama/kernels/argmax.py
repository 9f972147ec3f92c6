"""Greedy pick on the device: the index of the largest logit (first one on ties)."""

from __future__ import annotations

import spvjit
import spvjit.language as sl


@spvjit.kernel
def argmax_kernel(x_ptr, out_ptr, N, BLOCK: sl.constexpr):
    """out[r] = argmax(x[r * N : (r + 1) * N]), one program per row r (grid: n_rows). Each
    slot keeps its first maximum; the smallest index among the slots' maxima is then the
    first maximum overall."""
    r = sl.program_id(0)
    x_row = x_ptr + r * N
    best = sl.full((BLOCK,), float("-inf"), sl.float32)
    idx = sl.zeros((BLOCK,), sl.int32)
    for k in range(0, N, BLOCK):
        offs = k + sl.arange(0, BLOCK)
        x = sl.load(x_row + offs, mask=offs < N, other=float("-inf"))
        take = x > best
        best = sl.where(take, x, best)
        idx = sl.where(take, offs, idx)
    top = sl.max(best, axis=0)
    sl.store(out_ptr + r, sl.min(sl.where(best == top, idx, N), axis=0))
