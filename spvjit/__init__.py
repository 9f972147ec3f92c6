"""spvjit: a Triton-like kernel compiler for Vulkan.

    import spvjit, spvjit.language as sl

    @spvjit.kernel
    def add(x_ptr, y_ptr, out_ptr, n, BLOCK: sl.constexpr): ...
"""
from __future__ import annotations

from .cli.interrupt import is_spvjit_command as _is_spvjit_command, quiet_interrupts as _quiet_interrupts
if _is_spvjit_command():
    _quiet_interrupts()  # Ctrl-C while the `spvjit` command imports: one line, exit 130

import numpy as _np

from .errors import CompilationError, DeviceError, LaunchError, SettingError
from .interpreter import HostTensor
from .interpreter.ops import bf16_to_bits
from .ir.types import DType
from .jit import JITFunction, interpret, interpret_enabled, kernel
from .autotune import Autotuner, Config, autotune
from .launch import batch, record
from .runtime import Tensor, get_device, list_devices
from . import cache, knobs, language, runtime, testing

jit = kernel
__version__ = "0.1.0"


def cdiv(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def _interpreting() -> bool:
    return interpret_enabled()


def _storage(dtype):
    """(numpy storage dtype, kernel dtype or None) for a numpy or sl dtype."""
    if isinstance(dtype, DType):
        return (_np.dtype(_np.uint16), dtype) if dtype.name == "bf16" else (dtype.numpy, None)
    return (None if dtype is None else _np.dtype(dtype)), None


def tensor(data, dtype=None):
    """A device tensor holding `data` (a host tensor under SPVJIT_INTERPRET=1).

    `dtype` may be a numpy dtype or an sl dtype; `sl.bfloat16` rounds the data to
    bfloat16 (nearest even) and stores it in 16 bits."""
    storage, kdtype = _storage(dtype)
    if kdtype is not None:
        data = bf16_to_bits(_np.asarray(data, _np.float32))
    if _interpreting():
        return HostTensor(_np.array(data, dtype=storage), kdtype)
    t = runtime.tensor(data, storage)
    t.spvjit_dtype = kdtype
    return t


def empty(shape, dtype=_np.float32):
    storage, kdtype = _storage(dtype)
    if _interpreting():
        return HostTensor(_np.empty(shape, storage), kdtype)
    t = runtime.empty(shape, storage)
    t.spvjit_dtype = kdtype
    return t


def zeros(shape, dtype=_np.float32):
    storage, kdtype = _storage(dtype)
    if _interpreting():
        return HostTensor(_np.zeros(shape, storage), kdtype)
    t = runtime.zeros(shape, storage)
    t.spvjit_dtype = kdtype
    return t


def empty_like(t):
    return empty(t.shape, getattr(t, "spvjit_dtype", None) or t.dtype)


def zeros_like(t):
    return zeros(t.shape, getattr(t, "spvjit_dtype", None) or t.dtype)

