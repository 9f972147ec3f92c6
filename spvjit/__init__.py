"""spvjit: a Triton-like kernel compiler for Vulkan.

    import spvjit, spvjit.language as sl

    @spvjit.kernel
    def add(x_ptr, y_ptr, out_ptr, n, BLOCK: sl.constexpr): ...
"""
from __future__ import annotations

import numpy as _np

from .errors import CompilationError, DeviceError, LaunchError, SettingError
from .jit import JITFunction, interpret, kernel
from .autotune import Autotuner, Config, autotune
from .launch import batch, record
from . import cache, knobs, language

jit = kernel
__version__ = "0.1.0"


def cdiv(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def _interpreting() -> bool:
    from .jit import interpret_enabled
    return interpret_enabled()


def _storage(dtype):
    """(numpy storage dtype, kernel dtype or None) for a numpy or sl dtype."""
    from .ir.types import DType
    if isinstance(dtype, DType):
        return (_np.dtype(_np.uint16), dtype) if dtype.name == "bf16" else (dtype.numpy, None)
    return (None if dtype is None else _np.dtype(dtype)), None


def tensor(data, dtype=None):
    """A device tensor holding `data` (a host tensor under SPVJIT_INTERPRET=1).

    `dtype` may be a numpy dtype or an sl dtype; `sl.bfloat16` rounds the data to
    bfloat16 (nearest even) and stores it in 16 bits."""
    storage, kdtype = _storage(dtype)
    if kdtype is not None:
        from .interpreter.ops import bf16_to_bits
        data = bf16_to_bits(_np.asarray(data, _np.float32))
    if _interpreting():
        from .interpreter import HostTensor
        return HostTensor(_np.array(data, dtype=storage), kdtype)
    from .runtime import tensor as _t
    t = _t(data, storage)
    t.spvjit_dtype = kdtype
    return t


def empty(shape, dtype=_np.float32):
    storage, kdtype = _storage(dtype)
    if _interpreting():
        from .interpreter import HostTensor
        return HostTensor(_np.empty(shape, storage), kdtype)
    from .runtime import empty as _e
    t = _e(shape, storage)
    t.spvjit_dtype = kdtype
    return t


def zeros(shape, dtype=_np.float32):
    storage, kdtype = _storage(dtype)
    if _interpreting():
        from .interpreter import HostTensor
        return HostTensor(_np.zeros(shape, storage), kdtype)
    from .runtime import zeros as _z
    t = _z(shape, storage)
    t.spvjit_dtype = kdtype
    return t


def empty_like(t):
    return empty(t.shape, getattr(t, "spvjit_dtype", None) or t.dtype)


def zeros_like(t):
    return zeros(t.shape, getattr(t, "spvjit_dtype", None) or t.dtype)


def __getattr__(name):
    # lazy: importing spvjit must not need a Vulkan loader
    if name in ("DeviceError", "Tensor", "get_device", "list_devices"):
        from . import runtime
        return getattr(runtime, name)
    if name == "testing":
        import importlib
        return importlib.import_module(".testing", __name__)
    raise AttributeError(f"module 'spvjit' has no attribute {name!r}")
