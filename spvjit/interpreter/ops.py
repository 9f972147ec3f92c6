"""numpy meaning of each tile-IR op: the executable specification the device must match.

Values are numpy arrays (0-d for scalars).  bf16 values are held as float32
rounded to bf16 after every op, since numpy has no bf16.  Integer `floordiv`
and `mod` truncate toward zero (C semantics, as in Triton).
"""
from __future__ import annotations

import warnings

import numpy as np

from ..ir.ops import NO_FLOAT64
from ..ir.types import DType


def round_bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 values to the nearest bf16 (ties to even), kept as float32."""
    bits = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    nan = np.isnan(np.asarray(x, np.float32))
    out = rounded.astype(np.uint32).view(np.float32)
    return np.where(nan, np.float32(np.nan), out)


def f64_to_f32_odd(x: np.ndarray) -> np.ndarray:
    """float64 -> float32 rounded to odd (an inexact result gets an odd last bit), so a second
    rounding to bf16 equals the single rounding of x (as the device lowering does)."""
    x = np.asarray(x, np.float64)
    with np.errstate(over="ignore"):
        r = x.astype(np.float32)
    back = r.astype(np.float64)
    bits = r.view(np.uint32)
    with np.errstate(invalid="ignore"):
        fix = (back != x) & ~np.isnan(x) & (bits & 1 == 0)
        moved = np.where(np.abs(x) > np.abs(back), bits + np.uint32(1), bits - np.uint32(1))
    return np.where(fix, moved, bits).astype(np.uint32).view(np.float32)


def int_to_f32_odd(x) -> np.ndarray:
    """32/64-bit integers -> float32 rounded to odd (exact comparison in Python ints), so a
    second rounding to bf16 is the single correct one (as the device lowering does)."""
    x = np.asarray(x)
    r = x.astype(np.float32)
    flat_x, flat_r = x.reshape(-1).tolist(), r.reshape(-1)
    bits = flat_r.view(np.uint32).copy()
    for i, (v, f) in enumerate(zip(flat_x, flat_r.tolist())):
        back = int(f)                       # exact: f is a finite float32
        if back != v and bits[i] & 1 == 0:
            bits[i] = bits[i] + np.uint32(1) if abs(v) > abs(back) else bits[i] - np.uint32(1)
    return bits.view(np.float32).reshape(x.shape)


def bf16_from_bits(u16: np.ndarray) -> np.ndarray:
    return (u16.astype(np.uint32) << 16).view(np.float32)


def bf16_to_bits(x: np.ndarray) -> np.ndarray:
    return (round_bf16(x).view(np.uint32) >> 16).astype(np.uint16)


def value_dtype(dt: DType) -> np.dtype:
    """numpy dtype of values held in the interpreter (bf16 computes as rounded f32)."""
    return np.dtype(np.float32) if dt.name == "bf16" else dt.numpy


def finish(x, dt: DType) -> np.ndarray:
    x = np.asarray(x).astype(value_dtype(dt), copy=False)
    return round_bf16(x) if dt.name == "bf16" else x


def trunc_div(a, b):
    r = np.fmod(a, b)
    return (a - r) // b


def binary(name: str, a, b, dt: DType):
    _no_float64(name, dt)
    if name == "add":
        return a + b
    if name == "sub":
        return a - b
    if name == "mul":
        return a * b
    if name == "truediv":
        return a / b
    if name == "floordiv":
        return trunc_div(a, b)
    if name == "mod":
        return np.fmod(a, b)
    if name == "pow":
        return np.power(a, b)
    if name == "and":
        return a & b
    if name == "or":
        return a | b
    if name == "xor":
        return a ^ b
    if name == "shl":
        return np.left_shift(a, b)
    if name == "shr":
        return np.right_shift(a, b)
    if name == "maximum":
        return np.maximum(a, b)
    if name == "minimum":
        return np.minimum(a, b)
    if name == "atan2":
        return np.arctan2(a, b)
    if name == "umulhi":
        # high half of the double-width product (signed types: the signed product)
        wide = np.int64 if dt.is_signed else np.uint64
        return (np.asarray(a).astype(wide) * np.asarray(b).astype(wide)) >> wide(dt.bits)
    raise NotImplementedError(name)


def fma(x, y, z):
    """x * y + z rounded once: the product of two f32/f16 values is exact in float64."""
    return np.asarray(x, np.float64) * np.asarray(y, np.float64) + np.asarray(z, np.float64)


def erf(x):
    import math
    return np.vectorize(math.erf, otypes=[np.float64])(np.asarray(x, np.float64))


def round_half_away(x):
    """libdevice round(): halfway cases away from zero (numpy's round is to even).
    x - trunc(x) is exact, so the comparison with 0.5 decides halfway cases correctly."""
    x = np.asarray(x, np.float64)
    t = np.trunc(x)
    return np.where(np.abs(x - t) >= 0.5, t + np.sign(x), t)


def _no_float64(name: str, dt: DType):
    if dt.name == "f64" and name in NO_FLOAT64:       # as the lowering: no 64-bit GLSL.std.450 form
        raise TypeError(f"'{name}' has no float64 meaning")


def unary(name: str, x, dt: DType):
    _no_float64(name, dt)
    if name == "neg":
        return -x
    if name == "not":
        return np.logical_not(x) if dt.is_bool else np.invert(x)
    if name == "abs":
        return np.abs(x)
    if name == "rsqrt":
        return 1.0 / np.sqrt(x)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if name == "erf":
        return erf(x)
    if name == "round":
        return round_half_away(x)
    fn = {"exp": np.exp, "exp2": np.exp2, "log": np.log, "log2": np.log2, "sqrt": np.sqrt,
          "sin": np.sin, "cos": np.cos, "floor": np.floor, "ceil": np.ceil, "tanh": np.tanh,
          "tan": np.tan, "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan, "sinh": np.sinh,
          "cosh": np.cosh, "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh,
          "trunc": np.trunc, "rint": np.rint}[name]
    return fn(x)


def compare(pred: str, a, b):
    return {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
            "eq": np.equal, "ne": np.not_equal}[pred](a, b)


def cast(x, src: DType, dst: DType):
    if dst.is_bool:
        return np.asarray(x != 0)
    if src.is_float and dst.is_int:
        x = np.trunc(x)
        info = np.iinfo(dst.numpy)
        x = np.clip(np.nan_to_num(x), info.min, info.max)   # out of range is undefined on devices
    if src.bits == 64 and src.is_float and dst.name == "bf16":
        x = f64_to_f32_odd(x)
    elif src.is_int and src.bits >= 32 and dst.name == "bf16":
        x = int_to_f32_odd(x)
    return finish(np.asarray(x).astype(value_dtype(dst)), dst)


def bitcast(x, src: DType, dst: DType):
    shape = np.shape(x)
    # ascontiguousarray would turn a scalar into shape (1,): keep the value's own shape
    raw = (bf16_to_bits(x) if src.name == "bf16" else np.array(x, dtype=src.numpy)).reshape(-1)
    view = raw.view(np.uint16 if dst.name == "bf16" else dst.numpy).reshape(shape)
    return bf16_from_bits(view) if dst.name == "bf16" else view


def reduce(kind: str, x, axis: int):
    if kind == "sum":
        return np.sum(x, axis=axis, dtype=x.dtype)
    # max/min/argmax/argmin skip NaN like the device's FMax/FMin and Triton (max of
    # [nan, 6, 8] is 8 at index 2); an all-NaN slice gives NaN and index 0
    if kind in ("max", "min"):
        if np.issubdtype(x.dtype, np.floating):
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return (np.nanmax if kind == "max" else np.nanmin)(x, axis=axis)
        return np.max(x, axis=axis) if kind == "max" else np.min(x, axis=axis)
    if kind in ("argmax", "argmin"):
        if np.issubdtype(x.dtype, np.floating):
            fill = -np.inf if kind == "argmax" else np.inf
            x = np.where(np.isnan(x), fill, x)    # first index on ties, NaN never chosen
        return (np.argmax if kind == "argmax" else np.argmin)(x, axis=axis).astype(np.int32)
    raise NotImplementedError(kind)


def scan(kind: str, x, axis: int, reverse: bool, dt: DType):
    """Inclusive scan in element order; bf16 rounds after every step, as the device does."""
    x = np.asarray(x)
    if reverse:
        x = np.flip(x, axis)
    fn = {"sum": np.add, "prod": np.multiply, "max": np.maximum, "min": np.minimum}[kind]
    out = np.moveaxis(x.copy(), axis, 0)
    for i in range(1, out.shape[0]):
        out[i] = finish(fn(out[i - 1], out[i]), dt)
    out = np.moveaxis(out, 0, axis)
    return np.flip(out, axis) if reverse else out


def dot(a, b, acc, out: DType):
    if out.is_float:
        wt = np.float64 if out.bits == 64 else np.float32     # the lowering's accumulator width
        return (a.astype(wt) @ b.astype(wt) + acc.astype(wt))
    return a.astype(np.int64) @ b.astype(np.int64) + acc
