"""bfloat16 tensors: `spvjit.tensor(data, dtype=sl.bfloat16)` stores bf16 bits, kernels compute on them."""
import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit.interpreter.ops import round_bf16


@spvjit.kernel
def axpy_bf16(x_ptr, y_ptr, out_ptr, n, BLOCK: sl.constexpr):
    offs = sl.program_id(0) * BLOCK + sl.arange(0, BLOCK)
    m = offs < n
    x = sl.load(x_ptr + offs, mask=m)                      # bf16
    y = sl.load(y_ptr + offs, mask=m)                      # f32
    sl.store(out_ptr + offs, (x.to(sl.float32) * 2.0 + y).to(sl.bfloat16), mask=m)


@pytest.mark.parametrize("mode", ["device", "interpreter"])
def test_bf16_round_trip_and_kernel(mode, monkeypatch):
    if mode == "interpreter":
        monkeypatch.setenv("SPVJIT_INTERPRET", "1")
    rng = np.random.default_rng(3)
    n = 1000
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    tx = spvjit.tensor(x, dtype=sl.bfloat16)
    np.testing.assert_array_equal(tx.numpy(), round_bf16(x))          # stored rounded, read as f32
    assert tx.dtype == np.uint16 and tx.spvjit_dtype == sl.bfloat16
    out = spvjit.empty_like(tx)
    axpy_bf16[(spvjit.cdiv(n, 256),)](tx, spvjit.tensor(y), out, n, BLOCK=256)
    # x*2 is exact, the f32 add rounds once, then the bf16 store rounds once: identical to numpy
    want = round_bf16(round_bf16(x) * 2 + y)
    np.testing.assert_array_equal(out.numpy(), want)
