"""float32 -> float16 conversions round to nearest even on both of their lowerings.

Vulkan lets OpFConvert truncate (lavapipe does).  Where the device reports
shaderRoundingModeRTEFloat16 the module declares `RoundingModeRTE 16` and converts with one
OpFConvert; elsewhere `float_math.f32_to_f16` rounds explicitly.  Both are compiled here for
this device (the explicit one by a Target that says the mode is missing), run on it and
compared bit for bit with numpy over halfway points, subnormals and the overflow edge."""
import dataclasses

import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit.codegen.compiler import compile_kernel
from spvjit.codegen.spirv.tools import disassemble
from spvjit.codegen.target import Target
from spvjit.compiler import DeviceKernel, _build_ir
from spvjit.launch import launch_on_device
from spvjit.runtime import get_device


@spvjit.kernel
def to_f16(x_ptr, i_ptr, out_ptr, out_i_ptr, n, BLOCK: sl.constexpr):
    offs = sl.program_id(0) * BLOCK + sl.arange(0, BLOCK)
    mask = offs < n
    sl.store(out_ptr + offs, sl.load(x_ptr + offs, mask=mask).to(sl.float16), mask=mask)
    sl.store(out_i_ptr + offs, sl.load(i_ptr + offs, mask=mask).to(sl.float16), mask=mask)


def _edge_values() -> np.ndarray:
    h = np.arange(0, 0x7c00, dtype=np.uint16).view(np.float16).astype(np.float32)   # every finite f16
    nxt = np.nextafter(h, np.float32(np.inf))
    mid = (h[:-1].astype(np.float64) + h[1:]) / 2                  # the halfway points, exact in f32
    vals = np.concatenate([h, nxt, mid.astype(np.float32), np.nextafter(mid.astype(np.float32), 0),
                           np.nextafter(mid.astype(np.float32), np.float32(np.inf)),
                           np.float32([65504, 65519.99, 65520, 1e6, np.inf, 2.0 ** -25, 2.0 ** -26, 1e-30, 0])])
    return np.concatenate([vals, -vals]).astype(np.float32)


@pytest.mark.parametrize("rte", [True, False], ids=["RoundingModeRTE", "explicit"])
def test_f32_and_int_to_f16_round_to_nearest_even(rte):
    dev = get_device()
    if rte and not getattr(dev.caps, "rounding_rte_float16", False):
        pytest.skip("the device does not report shaderRoundingModeRTEFloat16")
    x = _edge_values()
    ints = np.concatenate([np.arange(-70000, 70000, 7), [2049, 2051, 4097, 4099, 65519, 65520, -65521]]).astype(np.int32)
    ints = np.resize(ints, x.size)
    out, out_i = spvjit.empty(x.size, np.float16), spvjit.empty(x.size, np.float16)
    args = [spvjit.tensor(x), spvjit.tensor(ints), out, out_i, x.size]
    spec, _ = to_f16.specialize(args, {"BLOCK": 1024})
    target = dataclasses.replace(Target.of(dev.kernel_caps), rounding_rte_float16=rte)
    ck = compile_kernel(_build_ir(to_f16, spec, optimize=True), target, spec.num_warps, spec.divisibility or {})
    assert ("RoundingModeRTE 16" in disassemble(ck.spirv)) == rte
    pipe = dev.create_pipeline(ck.spirv, [bd.kind for bd in ck.bindings], ck.push_size)
    launch_on_device(DeviceKernel(ck, pipe), spec, (spvjit.cdiv(x.size, 1024), 1, 1), dev, "to_f16")
    with np.errstate(over="ignore"):        # past 65520 numpy gives inf, as it should
        ref, ref_i = x.astype(np.float16), ints.astype(np.float16)
    np.testing.assert_array_equal(out.numpy().view(np.uint16), ref.view(np.uint16))
    np.testing.assert_array_equal(out_i.numpy().view(np.uint16), ref_i.view(np.uint16))
