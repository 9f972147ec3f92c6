"""A numpy-backed tensor with the device tensor's interface, for SPVJIT_INTERPRET=1.

It lets the whole launch API run with no Vulkan device at all.
"""
from __future__ import annotations

import numpy as np

from .. import address_registry


class HostTensor:
    def __init__(self, array: np.ndarray, spvjit_dtype=None):
        self._array = np.ascontiguousarray(array)
        self.spvjit_dtype = spvjit_dtype      # bfloat16 lives in uint16 storage

    @property
    def shape(self):
        return self._array.shape

    @property
    def dtype(self):
        return self._array.dtype

    @property
    def ndim(self):
        return self._array.ndim

    @property
    def size(self):
        return self._array.size

    @property
    def nbytes(self):
        return self._array.nbytes

    @property
    def strides(self):
        return tuple(s // self._array.itemsize for s in self._array.strides)

    def stride(self, i: int) -> int:
        return self.strides[i]

    def data_ptr(self) -> int:
        """The array's address; the interpreter follows it through the address registry
        (the caller keeps the tensor alive while a kernel may use it, as in Triton)."""
        address = int(self._array.ctypes.data)
        address_registry.register(address, self._array.nbytes, self)
        return address

    def numpy(self) -> np.ndarray:
        if self.spvjit_dtype is not None and self.spvjit_dtype.name == "bf16":
            return (self._array.astype(np.uint32) << 16).view(np.float32)
        return self._array.copy()

    def view_host(self) -> np.ndarray:
        return self._array

    def copy_from(self, array) -> None:
        self._array[...] = array

    def __len__(self):
        return len(self._array)

    def __repr__(self):
        return f"HostTensor(shape={self.shape}, dtype={self.dtype})"
