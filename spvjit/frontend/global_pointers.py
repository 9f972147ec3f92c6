"""Casts between 64-bit integers and global-address pointers (Triton's tutorial 08):

    a_ptr = tl.load(group_a_ptrs + g).to(tl.pointer_type(tl.float16))

An int64/uint64 value (a `Tensor.data_ptr()` the host stored in memory or passed as an
argument) becomes a `gptr<T>` tile: a byte address the device follows through
PhysicalStorageBuffer64 pointers.  `gptr + offsets`, load and store (masks, `other`) work
as on tensor-argument pointers; the way back, `ptr.to(tl.int64)`, gives the address.
Tensor-argument pointers are binding-relative (a descriptor and an element index) and have
no integer form: those casts are refused with what to do instead.
"""
from __future__ import annotations

from ..ir import types as T
from .errors import SemanticError


def to_pointer(sem, x, ptype: T.PointerType):
    """`x.to(tl.pointer_type(T))`: x is 64-bit integers or a global-address pointer."""
    target = T.PointerType(ptype.pointee, global_address=True)
    if x.type.is_pointer:
        if not x.dtype.global_address:
            raise SemanticError(
                f"cannot reinterpret a tensor argument's pointer ({x.dtype}) as {target}: kernel "
                "arguments are bound buffers, not addresses; pass the tensor's data_ptr() instead")
        if x.dtype == target:
            return x
        x = to_int(sem, x, T.i64)
    elif x.dtype not in (T.i64, T.u64):
        raise SemanticError(f"only 64-bit integers convert to pointers ({x.dtype} given): "
                            "addresses come from Tensor.data_ptr(), as int64")
    return type(x)(sem.b.op1("int_to_ptr", [x.handle], x.type.with_elem(target)))


def to_int(sem, x, dtype: T.DType):
    """`ptr.to(tl.int64)` (or uint64) of a global-address pointer: its byte addresses."""
    if not x.dtype.global_address:
        raise SemanticError(
            f"cannot convert a tensor argument's pointer ({x.dtype}) to {dtype}: kernel arguments "
            "are bound buffers, not addresses; pass the tensor's data_ptr() as an int64 argument")
    if dtype not in (T.i64, T.u64):
        raise SemanticError(f"a pointer converts to int64 or uint64 only, not {dtype}")
    out = type(x)(sem.b.op1("ptr_to_int", [x.handle], x.type.with_elem(T.i64)))
    return out if dtype == T.i64 else sem.cast(out, dtype, bitcast=True)
