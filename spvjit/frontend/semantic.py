"""Triton's typing rules, applied while building tile IR.

Promotion: float beats int, the wider type wins, f16 with bf16 gives f32,
signed with unsigned of one width gives unsigned; a Python number adopts the
tile's type (an int literal next to a float tile becomes that float).
Broadcasting follows numpy: shapes align at the right, size-1 dims stretch.
Integer `//` and `%` truncate toward zero like C (and Triton), so
`-7 // 2 == -3` and `-7 % 2 == -1` inside kernels, unlike Python.
"""
from __future__ import annotations

import math

from ..ir import types as T
from ..ir.core import Builder
from ..ir.ops import NO_FLOAT64, OP_INFO
from ..language.context import active, current  # noqa: F401  (the frontend's entry points)
from ..language.core import constexpr, tensor
from . import global_pointers
from .errors import SemanticError

def is_number(x) -> bool:
    return isinstance(x, (bool, int, float)) and not isinstance(x, tensor)


def unwrap(x):
    return x.value if isinstance(x, constexpr) else x


def _int_fits(v: int, dt: T.DType) -> bool:
    if dt.kind == "uint":
        return 0 <= v < (1 << dt.bits)
    return -(1 << (dt.bits - 1)) <= v < (1 << (dt.bits - 1))


def _check_f64(op: str, dt: T.DType):
    if dt.name == "f64" and op in NO_FLOAT64:
        raise SemanticError(f"{op} of float64 values is not supported (Vulkan's GLSL.std.450 {op} is "
                            f"32-bit only); convert with .to(tl.float32) first")


def _f32_range(x: float) -> bool:
    """Triton types a Python float as f32 when f32 holds its magnitude (0, inf and NaN
    included), as f64 otherwise (1e-300, 1e300)."""
    a = abs(x)
    return a == 0.0 or a == float("inf") or x != x or 2.0 ** -126 <= a <= (2 - 2.0 ** -23) * 2.0 ** 127


def promote(a: T.DType, b: T.DType) -> T.DType:
    if a == b:
        return a
    if a.is_float or b.is_float:
        if a.is_float and b.is_float:
            if {a.name, b.name} == {"f16", "bf16"}:
                return T.f32
            return a if a.bits >= b.bits else b
        return a if a.is_float else b
    if a.is_bool:
        return b
    if b.is_bool:
        return a
    if a.bits != b.bits:
        return a if a.bits > b.bits else b
    return a if a.kind == "uint" else b


class Semantic:
    def __init__(self, builder: Builder):
        self.b = builder

    # ---- values -------------------------------------------------------------
    def constant(self, value, dtype: T.DType, shape=()) -> tensor:
        if dtype.is_bool:
            value = bool(value)
        elif dtype.is_float:
            value = float(value)
        else:
            if isinstance(value, float) and not value.is_integer():
                raise SemanticError(f"{value} is not an integer, cannot be a {dtype} constant")
            value = int(value)
            if not _int_fits(value, dtype):
                raise SemanticError(f"{value} does not fit in {dtype}")
        return tensor(self.b.op1("constant", [], T.TileType(tuple(shape), dtype), value=value))

    def literal_dtype(self, x) -> T.DType:
        if isinstance(x, bool):
            return T.i1
        if isinstance(x, int):
            # Triton's to_tensor_type: the first of i32, u32, i64, u64 that holds the value
            for dt in (T.i32, T.u32, T.i64, T.u64):
                if _int_fits(x, dt):
                    return dt
            raise SemanticError(f"integer {x} does not fit in 64 bits")
        if isinstance(x, float):
            return T.f32 if _f32_range(x) else T.f64
        raise SemanticError(f"cannot use {type(x).__name__} value {x!r} in a kernel expression")

    def to_tensor(self, x, dtype: T.DType | None = None) -> tensor:
        x = unwrap(x)
        if isinstance(x, tensor):
            return x
        return self.constant(x, dtype or self.literal_dtype(x))

    # ---- shapes -------------------------------------------------------------
    def broadcast_shapes(self, a, b) -> tuple[int, ...]:
        ra, rb = len(a), len(b)
        a = (1,) * (rb - ra) + tuple(a)
        b = (1,) * (ra - rb) + tuple(b)
        out = []
        for x, y in zip(a, b):
            if x != y and 1 not in (x, y):
                raise SemanticError(f"shapes {list(a)} and {list(b)} cannot be broadcast together")
            out.append(max(x, y))
        return tuple(out)

    def broadcast_to(self, x: tensor, shape) -> tensor:
        shape = tuple(shape)
        if x.shape == shape:
            return x
        if x.shape == ():
            return tensor(self.b.op1("splat", [x.handle], T.TileType(shape, x.dtype)))
        if len(x.shape) > len(shape):
            raise SemanticError(f"cannot broadcast shape {list(x.shape)} to {list(shape)}")
        while len(x.shape) < len(shape):
            x = self.expand_dims(x, 0)
        for s, d in zip(x.shape, shape):
            if s not in (1, d):
                raise SemanticError(f"cannot broadcast shape {list(x.shape)} to {list(shape)}")
        return tensor(self.b.op1("broadcast", [x.handle], T.TileType(shape, x.dtype)))

    def expand_dims(self, x: tensor, axis: int) -> tensor:
        x = self.to_tensor(x)
        if x.shape == ():
            x = self.broadcast_to(x, (1,))
            return x if axis in (0, -1) else self.expand_dims(x, axis)
        rank = len(x.shape)
        if axis < 0:
            axis += rank + 1
        if not 0 <= axis <= rank:
            raise SemanticError(f"axis {axis} out of range for a rank-{rank} tensor")
        shape = x.shape[:axis] + (1,) + x.shape[axis:]
        return tensor(self.b.op1("expand_dims", [x.handle], T.TileType(shape, x.dtype), axis=axis))

    def subscript(self, x: tensor, index) -> tensor:
        if not isinstance(index, tuple):
            index = (index,)
        dim = 0
        for item in index:
            if item is None:
                x = self.expand_dims(x, dim)
                dim += 1
            elif isinstance(item, slice) and item == slice(None):
                dim += 1
            else:
                raise SemanticError("tensor indexing supports only `:` and `None` (e.g. x[:, None])")
        if dim > max(len(x.shape), 0) and len(index) and x.shape != ():
            raise SemanticError(f"too many indices for a tensor of shape {list(x.shape)}")
        return x

    def reshape(self, x: tensor, shape) -> tensor:
        shape = tuple(int(unwrap(s)) for s in shape)
        if math.prod(shape) != x.numel:
            raise SemanticError(f"cannot reshape {list(x.shape)} ({x.numel} elements) to {list(shape)}")
        return tensor(self.b.op1("reshape", [x.handle], T.TileType(shape, x.dtype)))

    def permute(self, x: tensor, order) -> tensor:
        order = tuple(int(unwrap(d)) for d in order)
        rank = len(x.shape)
        order = tuple(d + rank if d < 0 else d for d in order)
        if sorted(order) != list(range(rank)):
            raise SemanticError(f"permute order {list(order)} is not a permutation of the {rank} dims "
                                f"of a tensor of shape {list(x.shape)}")
        if order == tuple(range(rank)):
            return x
        if rank == 2:
            return self.trans(x)
        shape = tuple(x.shape[d] for d in order)
        return tensor(self.b.op1("permute", [x.handle], T.TileType(shape, x.dtype), order=",".join(map(str, order))))

    def flip(self, x, dim=None) -> tensor:
        x = self.to_tensor(x)
        rank = len(x.shape)
        dim = rank - 1 if unwrap(dim) is None else int(unwrap(dim))
        if dim < 0:
            dim += rank
        if not 0 <= dim < rank:
            raise SemanticError(f"flip: dim {dim} out of range for shape {list(x.shape)}")
        if x.shape[dim] == 1:
            return x
        return tensor(self.b.op1("flip", [x.handle], x.type, axis=dim))

    def extract(self, x: tensor, axis: int, index: int) -> tensor:
        shape = x.shape[:axis] + x.shape[axis + 1:]
        return tensor(self.b.op1("extract", [x.handle], T.TileType(shape, x.dtype), axis=axis, index=index))

    def join(self, a, b) -> tensor:
        """Stack a and b along a new last dim of size 2 (Triton's join), by two broadcasts and a select."""
        a, b = self._binary_operands(a, b)
        shape = a.shape + (2,)
        a2 = self.broadcast_to(self.expand_dims(a, len(a.shape)), shape)
        b2 = self.broadcast_to(self.expand_dims(b, len(b.shape)), shape)
        first = self.compare("eq", self.broadcast_to(self._iota(2, len(shape)), shape), 0)
        return self.where(first, a2, b2)

    def split(self, x) -> tuple:
        x = self.to_tensor(x)
        if not x.shape or x.shape[-1] != 2:
            raise SemanticError(f"split needs a last dimension of size 2, got shape {list(x.shape)}")
        ax = len(x.shape) - 1
        return self.extract(x, ax, 0), self.extract(x, ax, 1)

    def _iota(self, n: int, rank: int) -> tensor:
        """arange(0, n) shaped [1, ..., 1, n] for a rank-`rank` broadcast."""
        r = tensor(self.b.op1("arange", [], T.TileType((n,), T.i32), start=0, end=n))
        while len(r.shape) < rank:
            r = self.expand_dims(r, 0)
        return r

    def cat(self, a, b) -> tensor:
        """Concatenate along dim 0 (exact order; Triton may reorder, so this is one valid result)."""
        a, b = self._binary_operands(a, b)
        if not a.shape:
            raise SemanticError("cat needs tensors, got scalars")
        j = self.join(a, b)                                  # [n, rest..., 2]
        rows = a.numel
        t = self.trans(self.reshape(j, (rows, 2)))           # [2, n * rest]
        return self.reshape(t, (2 * a.shape[0],) + a.shape[1:])

    def trans(self, x: tensor) -> tensor:
        if len(x.shape) != 2:
            raise SemanticError(f"trans needs a 2-D tensor, got shape {list(x.shape)}")
        return tensor(self.b.op1("trans", [x.handle], T.TileType(x.shape[::-1], x.dtype)))

    # ---- casts --------------------------------------------------------------
    def cast(self, x, dtype, bitcast: bool = False, fp_downcast_rounding=None) -> tensor:
        dtype = unwrap(dtype)
        bitcast, rounding = unwrap(bitcast), unwrap(fp_downcast_rounding)
        if rounding not in (None, "rtne"):
            raise SemanticError(f"fp_downcast_rounding={rounding!r} is not supported; only 'rtne' "
                                "(round to nearest even, the default) is")
        if isinstance(dtype, T.PointerType):
            return global_pointers.to_pointer(self, self.to_tensor(x), dtype)
        if not isinstance(dtype, T.DType):
            raise SemanticError(f"expected a dtype such as sl.float32, got {dtype!r}")
        x = self.to_tensor(x)
        if x.type.is_pointer:
            return global_pointers.to_int(self, x, dtype)
        if x.dtype == dtype:
            return x
        if bitcast:
            if x.dtype.bits != dtype.bits:
                raise SemanticError(f"bitcast from {x.dtype} to {dtype} changes the bit width")
            return tensor(self.b.op1("bitcast", [x.handle], x.type.with_elem(dtype)))
        return tensor(self.b.op1("cast", [x.handle], x.type.with_elem(dtype)))

    # ---- arithmetic ---------------------------------------------------------
    def _binary_operands(self, a, b) -> tuple[tensor, tensor]:
        a, b = unwrap(a), unwrap(b)
        if isinstance(a, tensor) and isinstance(b, tensor):
            dt = promote(a.dtype, b.dtype)
        elif isinstance(a, tensor):
            dt = self._with_literal(a.dtype, b)
        elif isinstance(b, tensor):
            dt = self._with_literal(b.dtype, a)
        else:
            dt = promote(self.literal_dtype(a), self.literal_dtype(b))
        a = self.cast(self.to_tensor(a, dt), dt)
        b = self.cast(self.to_tensor(b, dt), dt)
        shape = self.broadcast_shapes(a.shape, b.shape)
        return self.broadcast_to(a, shape), self.broadcast_to(b, shape)

    def _with_literal(self, dt: T.DType, lit) -> T.DType:
        if not is_number(lit):
            raise SemanticError(f"cannot combine a tensor with {type(lit).__name__} value {lit!r}")
        if isinstance(lit, float) and not dt.is_float:
            return T.f32 if _f32_range(lit) else T.f64
        if dt.is_bool and not isinstance(lit, bool):
            return T.i32
        return dt

    def binary(self, op: str, a, b) -> tensor:
        a, b = unwrap(a), unwrap(b)
        pa = isinstance(a, tensor) and a.type.is_pointer
        pb = isinstance(b, tensor) and b.type.is_pointer
        if pa or pb:
            return self._pointer_arith(op, a, b, pa, pb)
        if op in ("truediv", "floordiv", "mod"):
            self._check_div_signedness(op, a, b)
        # Triton: `>>` is arithmetic or logical by the left operand's own signedness, even
        # when promotion makes the computation type unsigned (int8(-1) >> uint8(1) is 0xFF)
        left_signed = isinstance(a, tensor) and a.dtype.is_signed
        a, b = self._binary_operands(a, b)
        dt = a.dtype
        if op == "shr" and left_signed and dt.kind == "uint":
            signed = T.DTYPES[f"i{dt.bits}"]
            r = self.binary("shr", self.cast(a, signed, bitcast=True), self.cast(b, signed, bitcast=True))
            return self.cast(r, dt, bitcast=True)
        if op == "truediv" and not dt.is_float:
            a, b, dt = self.cast(a, T.f32), self.cast(b, T.f32), T.f32
        if op == "mod" and dt.is_float and dt.bits == 16:
            # as Triton: 16-bit float remainders are computed exactly in f32, then rounded
            r = self.binary("mod", self.cast(a, T.f32), self.cast(b, T.f32))
            return self.cast(r, dt)
        if op == "floordiv" and dt.is_float:
            return self.unary("floor", self.binary("truediv", a, b))
        if op == "umulhi" and not (dt.is_int and dt.bits == 32):
            raise SemanticError(f"umulhi takes int32 or uint32 values, got {dt}")
        if op in ("pow", "atan2") and not dt.is_float:
            a, b, dt = self.cast(a, T.f32), self.cast(b, T.f32), T.f32
        _check_f64(op, dt)
        if op in ("and", "or", "xor", "shl", "shr") and dt.is_float:
            raise SemanticError(f"bitwise operator on {dt} values; they need integers or booleans")
        if op in ("shl", "shr") and dt.is_bool:
            raise SemanticError("shift of boolean values")
        if op in ("add", "sub", "mul", "floordiv", "mod") and dt.is_bool:
            a, b, dt = self.cast(a, T.i32), self.cast(b, T.i32), T.i32
        return tensor(self.b.op1(op, [a.handle, b.handle], a.type))

    def _check_div_signedness(self, op: str, a, b):
        """Triton refuses `/`, `//` and `%` between signed and unsigned integer tensors."""
        if not (isinstance(a, tensor) and isinstance(b, tensor)):
            return
        ka, kb = a.dtype.kind, b.dtype.kind
        if {ka, kb} == {"int", "uint"}:
            sym = {"truediv": "/", "floordiv": "//", "mod": "%"}[op]
            raise SemanticError(f"Cannot use {sym} with {a.dtype} and {b.dtype} because they have "
                                f"different signedness; convert one of them with .to() first")

    def _pointer_arith(self, op, a, b, pa, pb) -> tensor:
        if op not in ("add", "sub") or (pa and pb) or (pb and op == "sub"):
            raise SemanticError(f"pointers support only `pointer + int` and `pointer - int`, not {op}")
        ptr, off = (a, b) if pa else (b, a)
        off = self.to_tensor(off)
        if not off.dtype.is_int:
            raise SemanticError(f"pointer offsets must be integers, got {off.dtype}")
        if off.dtype != T.i32:
            off = self.cast(off, T.i32)
        if op == "sub":
            off = self.unary("neg", off)
        shape = self.broadcast_shapes(ptr.shape, off.shape)
        ptr, off = self.broadcast_to(ptr, shape), self.broadcast_to(off, shape)
        return tensor(self.b.op1("addptr", [ptr.handle, off.handle], ptr.type))

    def compare(self, pred: str, a, b) -> tensor:
        a, b = self._binary_operands(a, b)
        if a.type.is_pointer:
            raise SemanticError("comparing pointers is not supported")
        return tensor(self.b.op1("cmp", [a.handle, b.handle], a.type.with_elem(T.i1), pred=pred))

    def unary(self, op: str, x) -> tensor:
        x = self.to_tensor(x)
        if x.type.is_pointer:
            raise SemanticError(f"'{op}' on a pointer")
        if OP_INFO[op].float_only and not x.dtype.is_float:
            x = self.cast(x, T.f32)
        if op != "not" and x.dtype.is_bool:
            x = self.cast(x, T.i32)   # arithmetic on booleans happens on 0/1 integers
        if op in ("floor", "ceil") and not x.dtype.is_float:
            return x
        _check_f64(op, x.dtype)
        return tensor(self.b.op1(op, [x.handle], x.type))

    def fma(self, x, y, z) -> tensor:
        """x * y + z with one rounding; operands promote like Triton's binary ops."""
        x, y = self._binary_operands(x, y)
        z, x = self._binary_operands(z, x)
        z, y = self._binary_operands(z, y)
        x, y = self._binary_operands(x, y)
        if not x.dtype.is_float:
            raise SemanticError(f"fma takes float values, got {x.dtype}")
        return tensor(self.b.op1("fma", [x.handle, y.handle, z.handle], x.type))

    def clamp(self, x, lo, hi) -> tensor:
        """Triton's clamp: min(max(x, lo), hi), floats only."""
        x = self.to_tensor(x)
        if not x.dtype.is_float:
            raise SemanticError(f"clamp supports only floating-point values, got {x.dtype}")
        return self.binary("minimum", self.binary("maximum", x, lo), hi)

    def where(self, cond, a, b) -> tensor:
        cond = self.to_tensor(cond)
        if not cond.dtype.is_bool:
            cond = self.compare("ne", cond, 0)
        if any(isinstance(unwrap(v), tensor) and unwrap(v).type.is_pointer for v in (a, b)):
            # (there is no pointer select in the IR; _binary_operands would report a bad dtype)
            raise SemanticError("sl.where between pointers is not supported; "
                                "choose the offsets instead: ptr + sl.where(cond, a, b)")
        a, b = self._binary_operands(a, b)
        shape = self.broadcast_shapes(cond.shape, a.shape)
        cond, a, b = (self.broadcast_to(t, shape) for t in (cond, a, b))
        return tensor(self.b.op1("select", [cond.handle, a.handle, b.handle], a.type))

    def to_cond(self, x) -> tensor:
        """A scalar i1 for `if`/`where` from a scalar of any type."""
        x = self.to_tensor(x)
        if x.shape != ():
            raise SemanticError(f"a condition must be a scalar, got a tensor of shape {list(x.shape)}")
        return x if x.dtype.is_bool else self.compare("ne", x, 0)
