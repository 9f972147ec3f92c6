"""numpy meaning of the atomics and of the runtime-indexed tile ops (histogram, gather).

Atomics act on the buffer one element at a time, lanes in row-major order; the device
applies the lanes of a tile in some order of its own, so the final memory is the same for
the commutative kinds (add, and, or, xor, max, min) and the old values each lane gets back
are the same whenever the lanes hit distinct addresses.  Float max/min follow Triton's
lowering bit for bit (semantic.py atomic_max): a value with its sign bit clear takes the
signed-integer maximum of the bit patterns, one with it set the unsigned minimum, which
orders -0.0 below +0.0 and needs no compare-and-swap loop.
"""
from __future__ import annotations

import numpy as np

from ..ir.types import DType
from . import ops as O

_UINT = {16: np.uint16, 32: np.uint32, 64: np.uint64}
_SINT = {16: np.int16, 32: np.int32, 64: np.int64}
_FLOAT = {32: np.float32, 64: np.float64}


def _to_storage(v, dt: DType):
    """A value as the buffer holds it (bf16: its 16 bits)."""
    if dt.name == "bf16":
        return O.bf16_to_bits(np.asarray(v, np.float32))
    return np.asarray(v).astype(dt.numpy)


def _from_storage(s, dt: DType):
    if dt.name == "bf16":
        return O.bf16_from_bits(np.asarray(s, np.uint16))
    return np.asarray(s)


def _bits(s, dt: DType) -> int:
    """The stored element's bit pattern as an unsigned int (compare-and-swap compares these)."""
    return int(np.asarray(s).view(_UINT[dt.bits]))


def _float_minmax(kind: str, old, v, dt: DType):
    """Triton's float atomic max/min on the bit patterns (see the module docstring)."""
    n = 64 if dt.bits == 64 else 32          # f16/bf16 max/min are refused by the IR verifier
    ft, ut, st = _FLOAT[n], _UINT[n], _SINT[n]
    ov, vv = np.asarray(old, ft), np.asarray(v, ft)
    vu, ou = int(vv.view(ut)), int(ov.view(ut))
    vs, os_ = int(vv.view(st)), int(ov.view(st))
    if vu >> (n - 1) == 0:
        bits = max(os_, vs) if kind == "max" else min(os_, vs)
        return np.array(bits, st).view(ft)
    bits = min(ou, vu) if kind == "max" else max(ou, vu)
    return np.array(bits, ut).view(ft)


def combine(kind: str, old, v, dt: DType):
    """The new element of an atomic `kind` from the stored (value-typed) old one and v."""
    if kind == "xchg":
        return v
    if dt.is_float:
        if kind == "add":     # computed in f32 (f64), rounded once to the element type (as numpy does)
            if dt.bits == 64:
                return np.float64(old) + np.float64(v)
            return O.finish(np.float32(old) + np.float32(v), dt)
        return _float_minmax(kind, old, v, dt)
    a, b = int(old), int(v)
    r = {"add": a + b, "max": max(a, b), "min": min(a, b), "and": a & b, "or": a | b, "xor": a ^ b}[kind]
    return np.array(r & ((1 << dt.bits) - 1), np.uint64).astype(_UINT[dt.bits]).view(dt.numpy)


def _lanes(mask, shape):
    mask = np.broadcast_to(np.asarray(mask, bool), shape)
    return [i for i in np.ndindex(shape) if mask[i]]


def atomic_rmw(buf: np.ndarray, off, kind: str, val, mask, dt: DType):
    """Apply lane by lane; returns the old values (0 in masked-off lanes)."""
    shape = np.shape(off)
    val = np.broadcast_to(val, shape)
    old = np.zeros(shape, O.value_dtype(dt))
    for i in _lanes(mask, shape):
        j = int(off[i])
        cur = _from_storage(buf[j], dt)
        old[i] = cur
        buf[j] = _to_storage(combine(kind, cur, val[i], dt), dt)
    return O.finish(old, dt)


def atomic_cas(buf: np.ndarray, off, cmp, val, dt: DType):
    """Lane by lane: old = *p; if bits(old) == bits(cmp): *p = val.  Returns the old values."""
    shape = np.shape(off)
    cmp, val = np.broadcast_to(cmp, shape), np.broadcast_to(val, shape)
    old = np.zeros(shape, O.value_dtype(dt))
    for i in np.ndindex(shape):
        j = int(off[i])
        old[i] = _from_storage(buf[j], dt)
        if _bits(buf[j], dt) == _bits(_to_storage(cmp[i], dt), dt):
            buf[j] = _to_storage(val[i], dt)
    return O.finish(old, dt)


def histogram(x, num_bins: int, mask=None):
    """Counts of each value in [0, num_bins); other values (and masked-off ones) are not counted."""
    x = np.asarray(x).astype(np.int64).ravel()
    keep = (x >= 0) & (x < num_bins)
    if mask is not None:
        keep &= np.asarray(mask, bool).ravel()
    return np.bincount(x[keep], minlength=num_bins).astype(np.int32)


def gather(src, index, axis: int):
    """out[.., i, ..] = src[.., index[.., i, ..], ..]; an index outside the source is an error
    here (the device clamps it; Triton leaves it undefined)."""
    index = np.asarray(index).astype(np.int64)
    n = np.shape(src)[axis]
    bad = (index < 0) | (index >= n)
    if np.any(bad):
        raise IndexError(f"gather index {int(index[bad].flat[0])} out of range for axis {axis} of "
                         f"size {n}")
    return np.take_along_axis(np.asarray(src), index, axis)
