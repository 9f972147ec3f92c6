"""Element-wise layers: SwiGLU and the residual add."""

from __future__ import annotations

import spvjit
import spvjit.language as sl


@spvjit.kernel
def swiglu_kernel(gu_ptr, out_ptr, F, BLOCK: sl.constexpr):
    """out[i, :] = silu(gate) * up, where row i of gu is [gate (F), up (F)]
    (grid: n_rows, cdiv(F, BLOCK))."""
    i = sl.program_id(0)
    cols = sl.program_id(1) * BLOCK + sl.arange(0, BLOCK)
    mask = cols < F
    g = sl.load(gu_ptr + i * 2 * F + cols, mask=mask, other=0.0)
    u = sl.load(gu_ptr + i * 2 * F + F + cols, mask=mask, other=0.0)
    sl.store(out_ptr + i * F + cols, g / (1.0 + sl.exp(-g)) * u, mask=mask)


@spvjit.kernel
def add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: sl.constexpr):
    """out = x + y over n elements (grid: cdiv(n, BLOCK)); out may be x."""
    offs = sl.program_id(0) * BLOCK + sl.arange(0, BLOCK)
    mask = offs < n
    x = sl.load(x_ptr + offs, mask=mask, other=0.0)
    y = sl.load(y_ptr + offs, mask=mask, other=0.0)
    sl.store(out_ptr + offs, x + y, mask=mask)
