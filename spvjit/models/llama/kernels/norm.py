"""RMSNorm: out = x / sqrt(mean(x^2) + eps) * w, one program per row."""

from __future__ import annotations

import spvjit
import spvjit.language as sl


@spvjit.kernel
def rms_norm_kernel(x_ptr, w_ptr, out_ptr, N, row0, eps, BLOCK: sl.constexpr):
    """Row ``row0 + i`` of x (rows of N floats) normalized into row i of out (grid: n_rows)."""
    i = sl.program_id(0)
    x_row = x_ptr + (row0 + i) * N
    acc = sl.zeros((BLOCK,), sl.float32)
    for k in range(0, N, BLOCK):
        cols = k + sl.arange(0, BLOCK)
        x = sl.load(x_row + cols, mask=cols < N, other=0.0)
        acc += x * x
    inv = 1.0 / sl.sqrt(sl.sum(acc, axis=0) / N + eps)
    for k in range(0, N, BLOCK):
        cols = k + sl.arange(0, BLOCK)
        mask = cols < N
        x = sl.load(x_row + cols, mask=mask, other=0.0)
        w = sl.load(w_ptr + cols, mask=mask, other=0.0)
        sl.store(out_ptr + i * N + cols, x * inv * w, mask=mask)
