"""A narrowing float conversion rounds on every driver: x.to(float32).to(float64) is x rounded
to float32, not x.  Mesa 26.1's lavapipe (the coopmat CI stage's device) folded the round trip
into x unless the conversion is marked exact (NoContraction, Emitter.exact), which also broke
the f64 -> f16 conversion's round-to-odd step (float_math.f64_to_f32_odd)."""
import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit.runtime import get_device

pytestmark = pytest.mark.coopmat      # also run on Mesa 26.1 (the CI coopmat stage)


@spvjit.kernel
def round_trips(x_ptr, f32_ptr, f16_ptr, lost_ptr, BLOCK: sl.constexpr):
    offs = sl.program_id(0) * BLOCK + sl.arange(0, BLOCK)
    x = sl.load(x_ptr + offs)
    sl.store(f32_ptr + offs, x.to(sl.float32).to(sl.float64))
    sl.store(f16_ptr + offs, x.to(sl.float16).to(sl.float64))
    sl.store(lost_ptr + offs, (x.to(sl.float32).to(sl.float64) != x).to(sl.int32))


def test_narrowing_conversions_round(needs_device):
    if not get_device().caps.float64:
        pytest.skip("the device has no shaderFloat64")
    rng = np.random.default_rng(2)
    x = rng.standard_normal(1024) * 100.0
    x[:8] = [0.1, 1 / 3, 2.0 ** -30 + 2.0 ** -60, 1.0, 0.5, 65504.0, -1e-9, 3.0]
    f32, f16 = spvjit.empty(1024, np.float64), spvjit.empty(1024, np.float64)
    lost = spvjit.empty(1024, np.int32)
    round_trips[(1024 // 256,)](spvjit.tensor(x), f32, f16, lost, BLOCK=256)
    want32 = x.astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(f32.numpy(), want32)                   # exact: one rounding each
    np.testing.assert_array_equal(f16.numpy(), x.astype(np.float16).astype(np.float64))
    np.testing.assert_array_equal(lost.numpy(), (want32 != x).astype(np.int32))
    assert lost.numpy().sum() > 1000                                      # most of them do round
