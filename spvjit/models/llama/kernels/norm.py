"""RMSNorm: out = x / sqrt(mean(x^2) + eps) * w, ROWS rows per program (spvjit.layouts)."""

from __future__ import annotations

import spvjit
import spvjit.language as sl


@spvjit.kernel
def rms_norm_kernel(x_ptr, w_ptr, out_ptr, N, row0, eps, BLOCK: sl.constexpr, ROWS: sl.constexpr):
    """Row ``row0 + i`` of x (rows of N floats) normalized into row i of out, for the ROWS
    rows i = program_id * ROWS + r (grid: n_rows / ROWS; ROWS divides n_rows, so no row
    mask). The rows go one after another, each exactly as a lone row (spvjit.layouts)."""
    for r in sl.static_range(ROWS):
        i = sl.program_id(0) * ROWS + r
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
