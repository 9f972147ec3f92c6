"""Semantic rules for memory, reductions, dot and tile constructors (see semantic.py)."""
from __future__ import annotations

from ..ir import types as T
from ..language.core import tensor
from .errors import SemanticError
from .semantic import Semantic, is_number, unwrap


def _const_int(x, what: str) -> int:
    x = unwrap(x)
    if isinstance(x, bool) or not isinstance(x, int):
        raise SemanticError(f"{what} must be a constexpr integer, got {x!r}")
    return x


def _shape(shape) -> tuple[int, ...]:
    shape = unwrap(shape)
    if isinstance(shape, int):
        shape = (shape,)
    return tuple(_const_int(s, "a tensor dimension") for s in shape)


class KernelSemantic(Semantic):
    def program_id(self, axis) -> tensor:
        axis = _const_int(axis, "program_id's axis")
        if axis not in (0, 1, 2):
            raise SemanticError(f"program_id axis must be 0, 1 or 2, got {axis}")
        return tensor(self.b.op1("program_id", [], T.TileType((), T.i32), axis=axis))

    def num_programs(self, axis) -> tensor:
        axis = _const_int(axis, "num_programs's axis")
        if axis not in (0, 1, 2):
            raise SemanticError(f"num_programs axis must be 0, 1 or 2, got {axis}")
        return tensor(self.b.op1("num_programs", [], T.TileType((), T.i32), axis=axis))

    def arange(self, start, end) -> tensor:
        start = _const_int(start, "arange's start")
        end = _const_int(end, "arange's end")
        n = end - start
        if n <= 0 or n & (n - 1):
            raise SemanticError(f"arange's range must be a power of two, got {end} - {start} = {n}")
        return tensor(self.b.op1("arange", [], T.TileType((n,), T.i32), start=start, end=end))

    def full(self, shape, value, dtype) -> tensor:
        dtype = unwrap(dtype)
        if not isinstance(dtype, T.DType):
            raise SemanticError(f"expected a dtype, got {dtype!r}")
        value = unwrap(value)
        if isinstance(value, tensor):
            return self.broadcast_to(self.cast(value, dtype), _shape(shape))
        return self.constant(value, dtype, _shape(shape))

    def assume(self, x, div=None, contig=None) -> tensor:
        x = self.to_tensor(x)
        if not x.dtype.is_int:
            raise SemanticError(f"multiple_of/max_contiguous apply to integer tensors, got {x.dtype}")
        attrs = {}
        for key, v in (("div", div), ("contig", contig)):
            v = unwrap(v)
            if v is None:
                continue
            if isinstance(v, (tuple, list)):        # Triton accepts one value per dimension
                v = unwrap(v[-1])
            v = _const_int(v, key)
            if v < 1:
                raise SemanticError(f"{key} hint must be positive, got {v}")
            attrs[key] = v
        return tensor(self.b.op1("assume", [x.handle], x.type, **attrs))

    # ---- memory -------------------------------------------------------------
    def _pointer(self, ptr, what: str) -> tensor:
        ptr = unwrap(ptr)
        if not isinstance(ptr, tensor) or not ptr.type.is_pointer:
            raise SemanticError(f"{what} needs a pointer (a tensor argument plus offsets), got {ptr!r}")
        return ptr

    def _mask(self, mask, shape) -> tensor | None:
        if mask is None:
            return None
        mask = self.to_tensor(mask)
        if not mask.dtype.is_bool:
            mask = self.compare("ne", mask, 0)
        return mask

    def load(self, ptr, mask=None, other=None) -> tensor:
        ptr = self._pointer(ptr, "load")
        mask = self._mask(unwrap(mask), ptr.shape)
        elem = ptr.dtype.pointee
        shape = ptr.shape
        if mask is not None:
            shape = self.broadcast_shapes(shape, mask.shape)
        other = unwrap(other)
        if other is not None:
            other = self.to_tensor(other, elem if is_number(other) else None)
            if other.dtype != elem:
                other = self.cast(other, elem)
            shape = self.broadcast_shapes(shape, other.shape)
        operands = [self.broadcast_to(ptr, shape).handle]
        if mask is not None:
            operands.append(self.broadcast_to(mask, shape).handle)
            if other is not None:
                operands.append(self.broadcast_to(other, shape).handle)
        elif other is not None:
            raise SemanticError("load's `other` needs a `mask`")
        return tensor(self.b.op1("load", operands, T.TileType(shape, elem)))

    def _stored_value(self, value, elem: T.DType, what: str) -> tensor:
        value = unwrap(value)
        if is_number(value):
            return self.constant(value, elem)
        value = self.to_tensor(value)
        if value.type.is_pointer:
            raise SemanticError(f"{what} of a pointer value; store the data it points to instead")
        if value.dtype != elem:
            value = self.cast(value, elem)   # as Triton: the value converts to the pointee type
        return value

    def store(self, ptr, value, mask=None) -> None:
        ptr = self._pointer(ptr, "store")
        value = self._stored_value(value, ptr.dtype.pointee, "store")
        mask = self._mask(unwrap(mask), ptr.shape)
        shape = self.broadcast_shapes(ptr.shape, value.shape)
        if mask is not None:
            shape = self.broadcast_shapes(shape, mask.shape)
        if shape != ptr.shape and ptr.shape != ():
            if self.broadcast_shapes(ptr.shape, shape) != ptr.shape:
                raise SemanticError(f"store of shape {list(shape)} through pointers of shape {list(ptr.shape)}")
        operands = [self.broadcast_to(ptr, shape).handle, self.broadcast_to(value, shape).handle]
        if mask is not None:
            operands.append(self.broadcast_to(mask, shape).handle)
        self.b.create("store", operands, [])

    def atomic(self, kind: str, ptr, value, mask=None) -> tensor:
        ptr = self._pointer(ptr, f"atomic_{kind}")
        elem = ptr.dtype.pointee
        if elem.name not in ("f32", "i32", "u32"):
            raise SemanticError(f"atomic_{kind} supports float32, int32 and uint32 tensors, not {elem}")
        value = self._stored_value(value, elem, f"atomic_{kind}")
        mask = self._mask(unwrap(mask), ptr.shape)
        shape = self.broadcast_shapes(ptr.shape, value.shape)
        if mask is not None:
            shape = self.broadcast_shapes(shape, mask.shape)
        operands = [self.broadcast_to(ptr, shape).handle, self.broadcast_to(value, shape).handle]
        if mask is not None:
            operands.append(self.broadcast_to(mask, shape).handle)
        return tensor(self.b.op1("atomic_rmw", operands, T.TileType(shape, elem), kind=kind))

    # ---- reductions ---------------------------------------------------------
    def reduce(self, kind: str, x, axis=None, keep_dims: bool = False) -> tensor:
        x = self.to_tensor(x)
        axis = unwrap(axis)
        if x.shape == ():
            raise SemanticError(f"{kind} of a scalar; it needs a tensor")
        rank = len(x.shape)   # before flattening: keep_dims of a full reduction keeps every dim
        if axis is None:
            if len(x.shape) > 1:
                x = self.reshape(x, (x.numel,))
            axis = 0
            full = True
        else:
            full = False
            axis = _const_int(axis, f"{kind}'s axis")
            if axis < 0:
                axis += len(x.shape)
            if not 0 <= axis < len(x.shape):
                raise SemanticError(f"axis {axis} out of range for shape {list(x.shape)}")
        elem = x.dtype
        if kind == "sum" and (elem.is_bool or (elem.is_int and elem.bits < 32)):
            x, elem = self.cast(x, T.i32), T.i32
        out_shape = x.shape[:axis] + x.shape[axis + 1:]
        out_elem = T.i32 if kind in ("argmax", "argmin") else elem
        r = tensor(self.b.op1("reduce", [x.handle], T.TileType(out_shape, out_elem), kind=kind, axis=axis))
        if keep_dims:
            if full:
                for _ in range(rank):
                    r = self.expand_dims(r, 0)
            else:
                r = self.expand_dims(r, axis)
        return r

    def debug_barrier(self) -> None:
        self.b.create("barrier", [], [])

    def device_assert(self, cond, msg="") -> None:
        cond = self.to_tensor(cond)
        if not cond.dtype.is_bool:
            cond = self.compare("ne", cond, 0)
        self.b.create("assert", [cond.handle], [], {"msg": str(unwrap(msg))})

    def device_print(self, prefix, *args) -> None:
        vals = [self.to_tensor(a) for a in args]
        self.b.create("print", [v.handle for v in vals], [], {"prefix": str(unwrap(prefix))})

    def scan(self, kind: str, x, axis=0, reverse=False, dtype=None) -> tensor:
        """cumsum / cumprod (and max/min scans): Triton's promotion of small ints to int32."""
        x = self.to_tensor(x)
        if x.shape == ():
            raise SemanticError(f"cum{kind} of a scalar; it needs a tensor")
        if x.type.is_pointer:
            raise SemanticError("a scan of pointers")
        axis = _const_int(axis, "the scan's axis")
        if axis < 0:
            axis += len(x.shape)
        if not 0 <= axis < len(x.shape):
            raise SemanticError(f"axis {axis} out of range for shape {list(x.shape)}")
        dtype = unwrap(dtype)
        if dtype is not None:
            x = self.cast(x, dtype)
        elif kind in ("sum", "prod") and (x.dtype.is_bool or (x.dtype.is_int and x.dtype.bits < 32)):
            x = self.cast(x, T.i32)
        attrs = {"kind": kind, "axis": axis}
        if unwrap(reverse):
            attrs["reverse"] = True
        return tensor(self.b.op1("scan", [x.handle], x.type, **attrs))

    def dot(self, a, b, acc=None, out_dtype=None) -> tensor:
        a, b = self.to_tensor(a), self.to_tensor(b)
        if len(a.shape) != 2 or len(b.shape) != 2:
            raise SemanticError(f"dot needs 2-D tensors, got shapes {list(a.shape)} and {list(b.shape)}")
        if a.shape[1] != b.shape[0]:
            raise SemanticError(f"dot shapes {list(a.shape)} and {list(b.shape)} do not chain (K differs)")
        if a.dtype != b.dtype:
            from .semantic import promote
            dt = promote(a.dtype, b.dtype)
            a, b = self.cast(a, dt), self.cast(b, dt)
        out = unwrap(out_dtype)
        if out is None:
            out = acc.dtype if isinstance(unwrap(acc), tensor) else (T.f32 if a.dtype.is_float else T.i32)
        shape = (a.shape[0], b.shape[1])
        if acc is None:
            acc = self.constant(0, out, shape)
        else:
            acc = self.to_tensor(unwrap(acc), out)
            if acc.dtype != out:
                acc = self.cast(acc, out)
            acc = self.broadcast_to(acc, shape)
        return tensor(self.b.op1("dot", [a.handle, b.handle, acc.handle], T.TileType(shape, out)))


def _lang_name(dt: T.DType) -> str:
    return {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "f64": "float64", "i64": "int64",
            "i32": "int32", "u32": "uint32", "i16": "int16", "u16": "uint16", "i8": "int8",
            "u8": "uint8", "i1": "int1"}[dt.name]
