"""`sl.*` functions usable inside kernels, with Triton's names and meaning.

Each forwards to the semantic context of the kernel being compiled; outside a
kernel they raise, since they only mean something while IR is being built.
"""
from __future__ import annotations

import builtins as _py

from ..errors import SemanticError
from ..ir import types as T
from .core import _sem, constexpr


def _unwrap(x):
    return x.value if isinstance(x, constexpr) else x


def _math1(op: str, x):
    """A math function as Triton defines it: float32 (or float64) values only; float16 and
    bfloat16 must be converted explicitly (Triton raises the same way).  Integers convert to
    float32, a convenience Triton does not offer."""
    x = _sem().to_tensor(x)
    if x.dtype.is_float and x.dtype.bits < 32:
        from ..frontend.errors import SemanticError
        name = {"f16": "fp16", "bf16": "bf16"}[x.dtype.name]
        raise SemanticError(f"{op}: expected dtype fp32 or fp64 but got {name}; convert with "
                            f".to(tl.float32) first (Triton refuses 16-bit floats here too)")
    return _sem().unary(op, x)


def program_id(axis=0): return _sem().program_id(axis)
def num_programs(axis=0): return _sem().num_programs(axis)
def arange(start, end): return _sem().arange(start, end)
def zeros(shape, dtype=T.f32): return _sem().full(shape, 0, dtype)
def full(shape, value, dtype): return _sem().full(shape, value, dtype)
def zeros_like(x): return _sem().full(x.shape, 0, x.dtype)
def load(pointer, mask=None, other=None, boundary_check=(), padding_option="", **_hints):
    return _sem().load(pointer, mask, other, boundary_check, padding_option)


def store(pointer, value, mask=None, boundary_check=(), **_hints):
    return _sem().store(pointer, value, mask, boundary_check)


def make_block_ptr(base, shape, strides, offsets, block_shape, order):
    """A pointer to a block of a strided tensor (Triton's block pointers); load and store it
    with boundary_check=(dims...) and padding_option="zero" or "nan"."""
    return _sem().make_block_ptr(base, shape, strides, offsets, block_shape, order)


def advance(base, offsets): return _sem().advance(base, offsets)


def atomic_add(pointer, val, mask=None, **_kw): return _sem().atomic("add", pointer, val, mask)
def atomic_max(pointer, val, mask=None, **_kw): return _sem().atomic("max", pointer, val, mask)
def atomic_min(pointer, val, mask=None, **_kw): return _sem().atomic("min", pointer, val, mask)
def atomic_xchg(pointer, val, mask=None, **_kw): return _sem().atomic("xchg", pointer, val, mask)
def dot(a, b, acc=None, out_dtype=None, **_kw): return _sem().dot(a, b, acc, out_dtype)
def where(condition, x, y): return _sem().where(condition, x, y)
def maximum(x, y): return _sem().binary("maximum", x, y)
def minimum(x, y): return _sem().binary("minimum", x, y)
def exp(x): return _math1("exp", x)
def exp2(x): return _math1("exp2", x)
def log(x): return _math1("log", x)
def log2(x): return _math1("log2", x)
def sqrt(x): return _math1("sqrt", x)
def rsqrt(x): return _math1("rsqrt", x)
def sin(x): return _math1("sin", x)
def cos(x): return _math1("cos", x)
def abs(x): return _sem().unary("abs", x)
def floor(x): return _math1("floor", x)
def ceil(x): return _math1("ceil", x)
def sigmoid(x): return _math1("sigmoid", x)
def erf(x): return _math1("erf", x)
def fma(x, y, z): return _sem().fma(x, y, z)
def umulhi(x, y): return _sem().binary("umulhi", x, y)
def clamp(x, min, max, propagate_nan=None): return _sem().clamp(x, min, max)
def fdiv(x, y, ieee_rounding=False): return _sem().binary("truediv", x, y)
def div_rn(x, y): return _sem().binary("truediv", x, y)     # OpFDiv: correctly rounded where the device is
def sqrt_rn(x): return _math1("sqrt", x)
def expand_dims(x, axis): return _sem().expand_dims(x, _unwrap(axis))
def broadcast_to(x, *shape):
    shape = shape[0] if len(shape) == 1 and isinstance(_unwrap(shape[0]), (tuple, list)) else shape
    return _sem().broadcast_to(_sem().to_tensor(x), tuple(map(_unwrap, shape)))
def reshape(x, *shape, can_reorder=False):
    return _sem().reshape(x, shape[0] if len(shape) == 1 and isinstance(_unwrap(shape[0]), (tuple, list)) else shape)


view = reshape


def trans(x, *dims):
    """Transpose: reverse the dims, or permute them in the order given (Triton's trans/permute)."""
    dims = tuple(_unwrap(d) for d in (dims[0] if len(dims) == 1 and isinstance(_unwrap(dims[0]), (tuple, list)) else dims))
    if not dims:
        if len(x.shape) == 2:
            return _sem().trans(x)
        dims = tuple(_py.range(len(x.shape) - 1, -1, -1))
    return _sem().permute(x, dims)


def permute(x, *dims):
    dims = dims[0] if len(dims) == 1 and isinstance(_unwrap(dims[0]), (tuple, list)) else dims
    return _sem().permute(x, dims)


def flip(x, dim=None): return _sem().flip(x, dim)
def join(a, b): return _sem().join(a, b)
def split(a): return _sem().split(a)
def cat(input, other, can_reorder=False): return _sem().cat(input, other)


def interleave(a, b):
    """Elements of a and b alternating along the last dim (Triton: join, then reshape)."""
    j = _sem().join(a, b)
    return _sem().reshape(j, j.shape[:-2] + (j.shape[-2] * 2,))


def cast(x, dtype, fp_downcast_rounding=None, bitcast=False):
    return _sem().cast(x, dtype, bitcast=bitcast, fp_downcast_rounding=fp_downcast_rounding)


def sum(input, axis=None, keep_dims=False): return _sem().reduce("sum", input, axis, keep_dims)
def argmax(input, axis, keep_dims=False, **_kw): return _sem().reduce("argmax", input, axis, keep_dims)
def argmin(input, axis, keep_dims=False, **_kw): return _sem().reduce("argmin", input, axis, keep_dims)


def max(input, axis=None, return_indices=False, keep_dims=False):
    if return_indices:
        return (_sem().reduce("max", input, axis, keep_dims), _sem().reduce("argmax", input, axis, keep_dims))
    return _sem().reduce("max", input, axis, keep_dims)


def min(input, axis=None, return_indices=False, keep_dims=False):
    if return_indices:
        return (_sem().reduce("min", input, axis, keep_dims), _sem().reduce("argmin", input, axis, keep_dims))
    return _sem().reduce("min", input, axis, keep_dims)


def cumsum(input, axis=0, reverse=False, dtype=None): return _sem().scan("sum", input, axis, reverse, dtype)
def cumprod(input, axis=0, reverse=False): return _sem().scan("prod", input, axis, reverse)


def associative_scan(input, axis, combine_fn, reverse=False):
    return _sem().associative_scan(input, axis, combine_fn, reverse)


def sort(x, dim=None, descending=False): return _sem().sort(x, dim, descending)


def reduce(input, axis, combine_fn, keep_dims=False):
    return _sem().reduce_with(input, axis, combine_fn, keep_dims)


def cdiv(x, div):
    """Ceiling division; plain Python on constexprs, IR on tensors."""
    x, div = _unwrap(x), _unwrap(div)
    if isinstance(x, int) and isinstance(div, int):
        return -(-x // div)
    return (x + div - 1) // div


def multiple_of(x, values):
    """Promise that the values of x are multiples of `values` (Triton's hint); lets loads vectorize."""
    return _sem().assume(x, div=values)


def max_contiguous(x, values):
    """Promise that x rises by one in aligned runs of `values` (Triton's hint)."""
    return _sem().assume(x, contig=values)


def assume(cond):
    """Triton's promise that `cond` holds (an optimizer hint): checked for type, then unused."""
    c = _unwrap(cond)
    if hasattr(c, "dtype") and not c.dtype.is_bool:
        raise SemanticError(f"assume takes a boolean condition, got {c.dtype}")


def debug_barrier(): return _sem().debug_barrier()
def device_assert(cond, msg="", mask=None): return _sem().device_assert(cond, msg)
def device_print(prefix, *args, hex=False): return _sem().device_print(prefix, *args, hex=hex)


def static_print(*values, sep=" ", end="\n", file=None, flush=False):
    """Prints at compile time (constexprs and tensor types), as Triton's static_print."""
    print(*[_unwrap(v) for v in values], sep=sep, end=end, file=file, flush=flush)


def static_assert(cond, msg=""):
    if not _unwrap(cond):
        raise SemanticError(f"static_assert failed: {msg}" if msg else "static_assert failed")


class static_range:
    """`for i in sl.static_range(n)`: unrolled at compile time; `i` is a constexpr."""

    def __init__(self, *args):
        self.args = args


class range:
    """`for i in sl.range(lo, hi, step)`: a runtime loop (same as Python's `range` in kernels)."""

    def __init__(self, *args, **_hints):
        self.args = args
