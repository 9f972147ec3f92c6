"""Global-address pointers in the interpreter: tiles of byte addresses that
`Tensor.data_ptr()` handed out, followed back to the tensors' arrays through
`spvjit.address_registry` (which holds them weakly, as a device address does not keep
memory alive either)."""
from __future__ import annotations

import numpy as np

from .. import address_registry
from . import ops as O


class GlobalPointer:
    """A tile of byte addresses to elements of `elem` (an IR DType)."""
    __slots__ = ("addr", "elem")

    def __init__(self, addr, elem):
        self.addr, self.elem = np.asarray(addr, np.uint64), elem

    def map(self, fn):
        return GlobalPointer(fn(self.addr), self.elem)

    def add(self, offsets):
        # two's-complement wrap, as the device's 64-bit integer add
        off = np.asarray(offsets).astype(np.int64) * np.int64(self.elem.nbytes)
        return GlobalPointer(self.addr + off.astype(np.uint64), self.elem)


def _storage(tensor, elem) -> np.ndarray:
    """The tensor's memory as a flat array of `elem`'s storage type."""
    raw = tensor.view_host().reshape(-1).view(np.uint8)
    return raw.view(np.dtype(elem.numpy) if elem.name != "bf16" else np.uint16)


def _groups(p: GlobalPointer, active):
    """(storage array, element offsets, flat positions) per tensor the active addresses hit."""
    flat = p.addr.reshape(-1)
    live = np.nonzero(active.reshape(-1))[0]
    for tensor, offs, where in address_registry.resolve(flat[live], p.elem.nbytes):
        yield _storage(tensor, p.elem), offs, live[where]


def load(p: GlobalPointer, mask, other, dt):
    shape = p.addr.shape
    active = np.broadcast_to(True if mask is None else np.asarray(mask), shape)
    out = np.zeros(p.addr.size, np.uint16 if dt.name == "bf16" else O.value_dtype(dt))
    for buf, offs, pos in _groups(p, active):
        out[pos] = buf[offs]
    vals = O.bf16_from_bits(out) if dt.name == "bf16" else out
    vals = vals.reshape(shape)
    if mask is not None:
        fill = other if other is not None else np.zeros((), O.value_dtype(dt))
        vals = np.where(active, vals, fill)
    return O.finish(vals, dt)


def store(p: GlobalPointer, value, mask):
    shape = p.addr.shape
    active = np.broadcast_to(True if mask is None else np.asarray(mask), shape)
    value = np.broadcast_to(value, shape).reshape(-1)
    if p.elem.name == "bf16" and value.dtype == np.float32:
        value = O.bf16_to_bits(value)
    for buf, offs, pos in _groups(p, active):
        buf[offs] = value[pos].astype(buf.dtype)
