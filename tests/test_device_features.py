"""A kernel that needs a feature the device lacks fails with a DeviceError naming it."""
import dataclasses

import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit.codegen.compiler import compile_kernel
from spvjit.compiler import check_device_support
from spvjit.runtime import get_device


@spvjit.kernel
def half_scale(x_ptr, n, BLOCK: sl.constexpr):
    offs = sl.arange(0, BLOCK)
    m = offs < n
    sl.store(x_ptr + offs, sl.load(x_ptr + offs, mask=m) * 2.0, mask=m)


def test_missing_fp16_is_a_clear_device_error():
    caps = get_device().caps
    ir = half_scale.ir_module(spvjit.empty(16, np.float16), 16, BLOCK=16)
    ck = compile_kernel(ir, caps)
    check_device_support(ck, caps)                     # lavapipe has fp16: fine
    no_fp16 = dataclasses.replace(caps, float16=False, storage_buffer_16bit=False)
    with pytest.raises(spvjit.DeviceError, match=r"half_scale needs .*16-bit .* does not support"):
        check_device_support(ck, no_fp16)


def test_f32_kernel_needs_nothing_optional():
    caps = get_device().caps
    ir = half_scale.ir_module(spvjit.empty(16, np.float32), 16, BLOCK=16)
    bare = dataclasses.replace(caps, float16=False, int8=False, int16=False, int64=False, float64=False,
                               storage_buffer_16bit=False, storage_buffer_8bit=False)
    check_device_support(compile_kernel(ir, caps), bare)
