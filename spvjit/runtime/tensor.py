"""Tensor: a C-contiguous n-d array in a device buffer.

Host-visible buffers (lavapipe, resizable-BAR GPUs) are read and written
through their persistent mapping; otherwise a staging buffer and a copy
command move the bytes. Every batch waits for completion, so host access
after a launch always sees its results.
"""

from __future__ import annotations

import math

import numpy as np

from .. import address_registry
from .device import get_device
from .device_address import require
from .errors import DeviceError
from .memory import Buffer


def _shape(shape) -> tuple:
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"negative dimension in shape {shape}")
    return shape


class _HostView:
    """Gives numpy an array interface over mapped memory while holding the
    tensor, so the mapping outlives every array made from it."""

    def __init__(self, tensor):
        self.tensor = tensor
        self.__array_interface__ = {
            "shape": tensor.shape, "typestr": tensor.dtype.str,
            "data": (tensor._buf.address, False), "version": 3}


class Tensor:
    # spvjit_dtype: the kernel-side element type where numpy has none (bfloat16 in uint16 storage)
    __slots__ = ("_buf", "shape", "dtype", "strides", "device", "spvjit_dtype", "__weakref__")

    def __init__(self, shape, dtype=np.float32, device=None):
        self.shape = _shape(shape)
        self.dtype = np.dtype(dtype)
        self.device = device if device is not None else get_device()
        # Strides in elements, C order.
        strides, step = [], 1
        for s in reversed(self.shape):
            strides.append(step)
            step *= s
        self.strides = tuple(reversed(strides))
        self._buf = Buffer(self.device, self.nbytes)
        self.spvjit_dtype = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def host_visible(self) -> bool:
        return self._buf.host is not None

    def stride(self, dim: int) -> int:
        return self.strides[dim]

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __repr__(self):
        return f"Tensor(shape={self.shape}, dtype={self.dtype}, device={self.device.caps.name!r})"

    def view_host(self) -> np.ndarray:
        """Zero-copy array over the mapped memory (host-visible memory only)."""
        if self._buf.host is None:
            raise DeviceError("view_host: this tensor's memory is not host-visible; use numpy()")
        return np.asarray(_HostView(self))

    def data_ptr(self) -> int:
        """The device address of this tensor's memory, as torch's data_ptr() on CUDA: kernels
        may load it from an int64 tensor and follow it (`.to(tl.pointer_type(dtype))`).
        The caller keeps the tensor alive while a kernel may use the address (Triton's rule);
        spvjit never frees it behind the caller's back.  A DeviceError where the device has no
        buffer device addresses."""
        address = self._buf.device_address
        if not address:
            require(self.device.caps, "Tensor.data_ptr()")
        # the interpreter maps addresses back to tensors through this registry (weakly held)
        address_registry.register(address, self.nbytes, self)
        return address

    def numpy(self) -> np.ndarray:
        """A host copy with this tensor's shape and dtype (bfloat16 tensors give float32)."""
        raw = self._numpy_raw()
        if self.spvjit_dtype is not None and self.spvjit_dtype.name == "bf16":
            return (raw.astype(np.uint32) << 16).view(np.float32)
        return raw

    def _numpy_raw(self) -> np.ndarray:
        buf = self._buf
        if buf.host is not None and not buf.slow_host_reads:
            return buf.host[:self.nbytes].view(self.dtype).reshape(self.shape).copy()
        staging = Buffer(self.device, self.nbytes, staging=True)
        with self.device.batch() as b:
            b.copy(buf, staging, self.nbytes)
        return staging.host[:self.nbytes].view(self.dtype).reshape(self.shape).copy()

    def __array__(self, dtype=None, copy=None):
        out = self.numpy()
        return out if dtype is None else out.astype(dtype)

    def copy_from(self, array) -> "Tensor":
        """Write `array` (broadcast to this shape, cast to this dtype) into the tensor."""
        src = np.ascontiguousarray(np.broadcast_to(np.asarray(array, dtype=self.dtype), self.shape))
        raw = src.reshape(-1).view(np.uint8)
        buf = self._buf
        if buf.host is not None:
            buf.host[:self.nbytes] = raw
            return self
        staging = Buffer(self.device, self.nbytes, staging=True)
        staging.host[:self.nbytes] = raw
        with self.device.batch() as b:
            b.copy(staging, buf, self.nbytes)
        return self


def tensor(data, dtype=None, device=None) -> Tensor:
    """Upload `data` (ndarray, list, scalar or Tensor) to a new device tensor.

    Python lists/scalars without a dtype become float32/int32 rather than
    numpy's 64-bit defaults, since kernels work in 32-bit types.
    """
    if isinstance(data, Tensor):
        data = data.numpy()
    if dtype is None and not isinstance(data, np.ndarray):
        arr = np.asarray(data)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        elif arr.dtype == np.int64:
            arr = arr.astype(np.int32)
    else:
        arr = np.asarray(data, dtype=dtype)
    out = Tensor(arr.shape, arr.dtype, device)
    return out.copy_from(arr)


def empty(shape, dtype=np.float32, device=None) -> Tensor:
    return Tensor(shape, dtype, device)


def empty_like(t, dtype=None) -> Tensor:
    return Tensor(t.shape, t.dtype if dtype is None else dtype, getattr(t, "device", None)
                  if isinstance(t, Tensor) else None)


def zeros(shape, dtype=np.float32, device=None) -> Tensor:
    out = Tensor(shape, dtype, device)
    buf = out._buf
    if buf.host is not None:
        buf.host[:] = 0
    else:
        with out.device.batch() as b:
            b.fill(buf, 0)
    return out


def zeros_like(t, dtype=None) -> Tensor:
    return zeros(t.shape, t.dtype if dtype is None else dtype,
                 t.device if isinstance(t, Tensor) else None)
