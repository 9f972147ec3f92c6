"""spvjit: a Triton-like kernel compiler for Vulkan.

    import spvjit, spvjit.language as sl

    @spvjit.kernel
    def add(x_ptr, y_ptr, out_ptr, n, BLOCK: sl.constexpr): ...
"""
from __future__ import annotations

import numpy as _np

from .frontend.errors import CompilationError
from .jit import JITFunction, LaunchError, interpret, kernel
from .autotune import Autotuner, Config, autotune
from .launch import batch, record
from . import language

jit = kernel
__version__ = "0.1.0"


def cdiv(a: int, b: int) -> int:
    return -(-int(a) // int(b))


def _interpreting() -> bool:
    from .jit import interpret_enabled
    return interpret_enabled()


def tensor(data, dtype=None):
    """A device tensor holding `data` (a host tensor under SPVJIT_INTERPRET=1)."""
    if _interpreting():
        from .interpreter import HostTensor
        return HostTensor(_np.array(data, dtype=dtype))
    from .runtime import tensor as _t
    return _t(data, dtype)


def empty(shape, dtype=_np.float32):
    if _interpreting():
        from .interpreter import HostTensor
        return HostTensor(_np.empty(shape, dtype))
    from .runtime import empty as _e
    return _e(shape, dtype)


def zeros(shape, dtype=_np.float32):
    if _interpreting():
        from .interpreter import HostTensor
        return HostTensor(_np.zeros(shape, dtype))
    from .runtime import zeros as _z
    return _z(shape, dtype)


def empty_like(t):
    return empty(t.shape, t.dtype)


def zeros_like(t):
    return zeros(t.shape, t.dtype)


def __getattr__(name):
    # lazy: importing spvjit must not need a Vulkan loader
    if name in ("DeviceError", "Tensor", "get_device", "list_devices"):
        from . import runtime
        return getattr(runtime, name)
    if name == "testing":
        import importlib
        return importlib.import_module(".testing", __name__)
    raise AttributeError(f"module 'spvjit' has no attribute {name!r}")
