"""The spine's acceptance test: vector add and a fused SiLU-gate kernel on the device vs numpy,
for sizes with masked tails, in float32 and float16."""
import numpy as np
import pytest

import spvjit
import spvjit.language as sl


@spvjit.kernel
def add(x_ptr, y_ptr, out_ptr, n, BLOCK: sl.constexpr):
    pid = sl.program_id(0)
    offs = pid * BLOCK + sl.arange(0, BLOCK)
    mask = offs < n
    x = sl.load(x_ptr + offs, mask=mask, other=0.0)
    sl.store(out_ptr + offs, x + sl.load(y_ptr + offs, mask=mask), mask=mask)


@spvjit.kernel
def silu_gate(x_ptr, y_ptr, out_ptr, n, BLOCK: sl.constexpr):
    offs = sl.program_id(0) * BLOCK + sl.arange(0, BLOCK)
    mask = offs < n
    x = sl.load(x_ptr + offs, mask=mask).to(sl.float32)
    y = sl.load(y_ptr + offs, mask=mask).to(sl.float32)
    sl.store(out_ptr + offs, x * (1.0 / (1.0 + sl.exp(-x))) * y, mask=mask)


SIZES = [1, 7, 1000, 1024, 65_537, 10_000_000]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("n", SIZES)
def test_add_and_fused_silu_gate(n, dtype):
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n).astype(dtype)
    y = rng.standard_normal(n).astype(dtype)
    tx, ty = spvjit.tensor(x), spvjit.tensor(y)
    out = spvjit.empty(n, dtype)
    grid = lambda meta: (spvjit.cdiv(n, meta["BLOCK"]),)
    add[grid](tx, ty, out, n, BLOCK=1024)
    # one rounding of the exact sum in the storage type: identical to numpy
    np.testing.assert_array_equal(out.numpy(), x + y)
    silu_gate[grid](tx, ty, out, n, BLOCK=512)
    xf, yf = x.astype(np.float64), y.astype(np.float64)
    ref = xf / (1 + np.exp(-xf)) * yf
    # f32: exp within a few ulp plus 3 roundings; f16: the final rounding to f16 (2^-11 relative)
    rtol, atol = (1e-5, 1e-6) if dtype == np.float32 else (2e-3, 1e-4)
    np.testing.assert_allclose(out.numpy().astype(np.float64), ref, rtol=rtol, atol=atol)
