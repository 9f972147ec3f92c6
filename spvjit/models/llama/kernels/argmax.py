"""Greedy pick on the device: the index of the largest logit (first one on ties), or -1 when
the row holds a NaN (broken weights or activations), which the host turns into an error
instead of silently picking a token."""

from __future__ import annotations

import spvjit
import spvjit.language as sl


@spvjit.kernel
def argmax_kernel(x_ptr, out_ptr, N, BLOCK: sl.constexpr):
    """out[r] = argmax(x[r * N : (r + 1) * N]), one program per row r (grid: n_rows). Each
    slot keeps its first maximum; the smallest index among the slots' maxima is then the
    first maximum overall. A NaN anywhere in the row makes out[r] = -1 (NaN compares false
    with everything, so without the check an all-NaN row would silently give token 0)."""
    r = sl.program_id(0)
    x_row = x_ptr + r * N
    best = sl.full((BLOCK,), float("-inf"), sl.float32)
    idx = sl.zeros((BLOCK,), sl.int32)
    nan = sl.zeros((BLOCK,), sl.int32)
    for k in range(0, N, BLOCK):
        offs = k + sl.arange(0, BLOCK)
        x = sl.load(x_row + offs, mask=offs < N, other=float("-inf"))
        take = x > best
        best = sl.where(take, x, best)
        idx = sl.where(take, offs, idx)
        nan = sl.where(x != x, 1, nan)
    top = sl.max(best, axis=0)
    first = sl.min(sl.where(best == top, idx, N), axis=0)
    sl.store(out_ptr + r, sl.where(sl.max(nan, axis=0) > 0, -1, first))
