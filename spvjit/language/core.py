"""What users see inside kernels: dtypes, constexpr, and the tile handle `tensor`.

Operators on `tensor` forward to the active semantic context (set while the
frontend compiles a kernel), so `a + b` inside a kernel builds IR.
"""
from __future__ import annotations

from ..ir import types as T
from .context import current

# dtypes: Triton's names bound to the IR's element types
float32, float16, bfloat16, float64 = T.f32, T.f16, T.bf16, T.f64
int64, uint64, int32, uint32, int16, uint16, int8, uint8, int1 = T.i64, T.u64, T.i32, T.u32, T.i16, T.u16, T.i8, T.u8, T.i1
dtype = T.DType
pointer_type = T.PointerType


class constexpr:
    """Marks a compile-time parameter (`BLOCK: sl.constexpr`) or wraps a global value."""

    def __init__(self, value):
        self.value = value.value if isinstance(value, constexpr) else value

    def __repr__(self) -> str:
        return f"constexpr({self.value!r})"

    def __index__(self):
        return int(self.value)

    def __bool__(self):
        return bool(self.value)

    # compile-time arithmetic and comparison, as in Triton: constexpr(5) == constexpr(5)
    def __eq__(self, o): return _cx_op(lambda a, b: a == b, self, o)
    def __ne__(self, o): return _cx_op(lambda a, b: a != b, self, o)
    def __lt__(self, o): return _cx_op(lambda a, b: a < b, self, o)
    def __le__(self, o): return _cx_op(lambda a, b: a <= b, self, o)
    def __gt__(self, o): return _cx_op(lambda a, b: a > b, self, o)
    def __ge__(self, o): return _cx_op(lambda a, b: a >= b, self, o)
    def __add__(self, o): return _cx_op(lambda a, b: a + b, self, o)
    def __radd__(self, o): return _cx_op(lambda a, b: b + a, self, o)
    def __sub__(self, o): return _cx_op(lambda a, b: a - b, self, o)
    def __rsub__(self, o): return _cx_op(lambda a, b: b - a, self, o)
    def __mul__(self, o): return _cx_op(lambda a, b: a * b, self, o)
    def __rmul__(self, o): return _cx_op(lambda a, b: b * a, self, o)
    def __floordiv__(self, o): return _cx_op(lambda a, b: a // b, self, o)
    def __truediv__(self, o): return _cx_op(lambda a, b: a / b, self, o)
    def __mod__(self, o): return _cx_op(lambda a, b: a % b, self, o)
    def __neg__(self): return constexpr(-self.value)

    def __hash__(self):
        return hash(self.value)

    def __int__(self):
        return int(self.value)

    def __call__(self, *args, **kwargs):
        return self.value(*args, **kwargs)


def _cx_op(fn, a, b):
    if isinstance(b, tensor):
        return NotImplemented      # let the tensor's reflected operator build IR
    b = b.value if isinstance(b, constexpr) else b
    return constexpr(fn(a.value, b))


# the modules behind tensor methods (`x.exp()`, `x.reshape(...)`): they import this module,
# so language/__init__ binds them here once both exist, instead of an import cycle
_impl: dict = {}


def bind_method_modules(builtins_module, math_module) -> None:
    _impl["builtins"], _impl["math"] = builtins_module, math_module


def _b():
    return _impl["builtins"]


def _shape_args(shape):
    """`x.reshape(4, 8)` and `x.reshape((4, 8))` both mean shape (4, 8)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def _member(name):
    def method(self, *args, **kwargs):
        return getattr(_b(), name)(self, *args, **kwargs)
    method.__name__ = name
    return method


def _math_member(name):
    def method(self):
        return getattr(_impl["math"], name)(self)
    method.__name__ = name
    return method


def _sem():
    return current()


class tensor:
    """A tile value inside a kernel: a handle to an IR value of static shape."""

    def __init__(self, value):
        self.handle = value

    @property
    def type(self) -> T.TileType:
        return self.handle.type

    @property
    def shape(self) -> tuple[int, ...]:
        return self.handle.type.shape

    @property
    def dtype(self):
        return self.handle.type.elem

    @property
    def numel(self) -> int:
        return self.handle.type.numel

    def __repr__(self) -> str:
        return f"sl.tensor({self.type})"

    def to(self, dtype, fp_downcast_rounding=None, bitcast: bool = False):
        return _sem().cast(self, dtype, bitcast=bitcast, fp_downcast_rounding=fp_downcast_rounding)

    # Triton's tensor methods: x.exp(), x.reshape(...), x.sum(0), ... (same as tl.fn(x, ...))
    def cast(self, dtype, fp_downcast_rounding=None, bitcast: bool = False):
        return _sem().cast(self, dtype, bitcast=bitcast, fp_downcast_rounding=fp_downcast_rounding)

    def reshape(self, *shape, can_reorder: bool = False):
        return _b().reshape(self, _shape_args(shape))

    view = reshape

    def broadcast_to(self, *shape):
        return _b().broadcast_to(self, _shape_args(shape))

    def expand_dims(self, axis):
        return _b().expand_dims(self, axis)

    def trans(self, *dims):
        return _b().trans(self, *dims)

    def permute(self, *dims):
        return _b().permute(self, *dims)

    def reduce(self, axis, combine_fn, keep_dims=False):
        return _b().reduce(self, axis, combine_fn, keep_dims)

    def associative_scan(self, axis, combine_fn, reverse=False):
        return _b().associative_scan(self, axis, combine_fn, reverse)

    def sort(self, dim=None, descending=False):
        return _b().sort(self, dim, descending)

    def flip(self, dim=None):
        return _b().flip(self, dim)

    def split(self):
        return _b().split(self)

    def ravel(self):
        return _b().reshape(self, (self.numel,))

    @property
    def T(self):
        return _sem().trans(self)

    def __getitem__(self, index):
        return _sem().subscript(self, index)

    def __bool__(self):
        raise TypeError("a tensor's truth value is only known when the kernel runs; "
                        "use `if` on a scalar inside the kernel, or sl.where")

    # operators: the semantic layer handles promotion and broadcasting
    def __add__(self, o): return _sem().binary("add", self, o)
    def __radd__(self, o): return _sem().binary("add", o, self)
    def __sub__(self, o): return _sem().binary("sub", self, o)
    def __rsub__(self, o): return _sem().binary("sub", o, self)
    def __mul__(self, o): return _sem().binary("mul", self, o)
    def __rmul__(self, o): return _sem().binary("mul", o, self)
    def __truediv__(self, o): return _sem().binary("truediv", self, o)
    def __rtruediv__(self, o): return _sem().binary("truediv", o, self)
    def __floordiv__(self, o): return _sem().binary("floordiv", self, o)
    def __rfloordiv__(self, o): return _sem().binary("floordiv", o, self)
    def __mod__(self, o): return _sem().binary("mod", self, o)
    def __rmod__(self, o): return _sem().binary("mod", o, self)
    def __pow__(self, o): return _sem().binary("pow", self, o)
    def __rpow__(self, o): return _sem().binary("pow", o, self)
    def __and__(self, o): return _sem().binary("and", self, o)
    def __rand__(self, o): return _sem().binary("and", o, self)
    def __or__(self, o): return _sem().binary("or", self, o)
    def __ror__(self, o): return _sem().binary("or", o, self)
    def __xor__(self, o): return _sem().binary("xor", self, o)
    def __rxor__(self, o): return _sem().binary("xor", o, self)
    def __lshift__(self, o): return _sem().binary("shl", self, o)
    def __rlshift__(self, o): return _sem().binary("shl", o, self)
    def __rshift__(self, o): return _sem().binary("shr", self, o)
    def __rrshift__(self, o): return _sem().binary("shr", o, self)
    def __lt__(self, o): return _sem().compare("lt", self, o)
    def __le__(self, o): return _sem().compare("le", self, o)
    def __gt__(self, o): return _sem().compare("gt", self, o)
    def __ge__(self, o): return _sem().compare("ge", self, o)
    def __eq__(self, o): return _sem().compare("eq", self, o)
    def __ne__(self, o): return _sem().compare("ne", self, o)
    def __neg__(self): return _sem().unary("neg", self)
    def __pos__(self): return self
    def __invert__(self): return _sem().unary("not", self)
    __hash__ = object.__hash__


for _name in ("sum", "max", "min", "argmax", "argmin", "sigmoid", "cumsum", "cumprod"):
    setattr(tensor, _name, _member(_name))
for _name in ("exp", "exp2", "log", "log2", "cos", "sin", "sqrt", "sqrt_rn", "rsqrt", "abs", "erf",
              "floor", "ceil"):
    setattr(tensor, _name, _math_member(_name))
