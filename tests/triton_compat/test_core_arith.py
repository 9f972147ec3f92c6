"""Triton-compatibility: element-wise arithmetic, comparisons, bit operations and math
functions, parametrized over dtype pairs the way Triton's `test_core.py` does it.

Each kernel below is Triton source (`triton.jit`, `tl.*`); the references are numpy with
Triton's promotion rules (compat.triton_binary_dtype).  Tolerances: results are compared
after one rounding to the output type, so float results must be within 2 ulp of that type
(1 ulp for the op, 1 for numpy's own rounding of a reference computed in float32 or wider);
integers and bit operations must be exact.
"""
from __future__ import annotations

import numpy as np
import pytest

import spvjit
from spvjit.frontend.errors import CompilationError

from compat import (TL, bitwidth, dtypes, dtypes_with_bfloat16, empty_device, float_dtypes, gap,
                    int_dtypes, integral_dtypes, launch, make_kernel, numpy_random, to_device,
                    triton_binary_dtype, uint_dtypes)

SIZE = 128
# references cast random data to narrower types on purpose (wrap-around is the expected value)
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

BINARY = '''
@triton.jit
def kernel(Z, X, Y, SIZE: tl.constexpr):
    off = tl.arange(0, SIZE)
    x = tl.load(X + off)
    y = tl.load(Y + off)
    z = GENERATE_TEST_HERE
    tl.store(Z + off, z)
'''

BINARY_SCALAR_RHS = '''
@triton.jit
def kernel(Z, X, y: tl.constexpr, SIZE: tl.constexpr):
    off = tl.arange(0, SIZE)
    x = tl.load(X + off)
    z = GENERATE_TEST_HERE
    tl.store(Z + off, z)
'''

BINARY_BROADCAST_LHS = '''
@triton.jit
def kernel(Z, X, Y, SIZE: tl.constexpr):
    off = tl.arange(0, SIZE)
    x = tl.load(X)
    y = tl.load(Y + off)
    z = GENERATE_TEST_HERE
    tl.store(Z + off, z)
'''

UNARY = '''
@triton.jit
def kernel(Z, X, SIZE: tl.constexpr):
    off = tl.arange(0, SIZE)
    x = tl.load(X + off)
    z = GENERATE_TEST_HERE
    tl.store(Z + off, z)
'''

ULP = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7, "float32": 2.0 ** -23, "float64": 2.0 ** -52}


def round_bf16(x):
    """Nearest bfloat16 (ties to even), kept in float32: the reference's last rounding."""
    b = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(np.float32)


def as_dtype(x, dtype: str):
    return round_bf16(x) if dtype == "bfloat16" else np.asarray(x).astype(dtype)


def host_dtype(dtype: str) -> str:
    return "float32" if dtype == "bfloat16" else dtype


def assert_close(got, ref, dtype: str, ulps: float = 2, err_msg=""):
    if dtype in ULP:
        ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
        # relative ulps of the output type; an absolute 2^-24 floor for results that cancel to ~0
        tol = ulps * ULP[dtype] * np.abs(ref) + 2.0 ** -24
        with np.errstate(invalid="ignore"):
            ok = (got == ref) | (np.abs(got - ref) <= tol) | (np.isnan(got) & np.isnan(ref))
        if not ok.all():
            i = int(np.argmin(ok))
            raise AssertionError(f"{err_msg}: {np.count_nonzero(~ok)} of {ok.size} differ, first at {i}: "
                                 f"got {got[i]!r}, want {ref[i]!r}")
    else:
        np.testing.assert_array_equal(got, ref, err_msg=err_msg)


def run_binary(mode, template, expr, x, y, dx, dy, dz, y_scalar=False):
    k = launch(make_kernel(template, GENERATE_TEST_HERE=expr), mode)
    z = empty_device(SIZE, dz)
    xt = to_device(x, dx)
    yt = y if y_scalar else to_device(y, dy)
    k[(1,)](z, xt, yt, SIZE=SIZE)
    return z.numpy()


# ---------------------------------------------------------------------------------------
# + - * / % over every pair of dtypes
# ---------------------------------------------------------------------------------------
def _signedness_clash(a, b):
    return (a in int_dtypes and b in uint_dtypes) or (a in uint_dtypes and b in int_dtypes)


def _bin_reference(x, y, dx, dy, op):
    """numpy result of `x op y` with Triton's rules, and the stored dtype."""
    dz = triton_binary_dtype(dx, dy)
    if op == "/":
        if "float" not in dx + dy:
            dz = "float32"
        cx, cy = x.astype(np.float64), y.astype(np.float64)
        return cx / cy, dz
    cx, cy = x.astype(host_dtype(dz)), y.astype(host_dtype(dz))
    if op == "%":
        if "float" in dz:
            # Triton: fmod, computed exactly (16-bit floats in float32, then rounded)
            return np.fmod(x.astype(np.float64), y.astype(np.float64)), dz
        return np.fmod(cx, cy), dz
    with np.errstate(over="ignore"):
        return {"+": np.add, "-": np.subtract, "*": np.multiply}[op](cx, cy), dz


@pytest.mark.parametrize("dtype_x, dtype_y, op", [
    (dx, dy, op) for op in ["+", "-", "*", "/", "%"] for dx in dtypes_with_bfloat16 for dy in dtypes_with_bfloat16])
def test_bin_op(mode, dtype_x, dtype_y, op):
    rs = np.random.RandomState(17)
    # integers next to a float stay within that float's exact integer range
    lim = (-1000, 1000) if "float" in dtype_x + dtype_y else (None, None)
    x = numpy_random(SIZE, dtype_x, rs, *lim)
    y = numpy_random(SIZE, dtype_y, rs, *lim)
    if op in ("/", "%") and _signedness_clash(dtype_x, dtype_y):
        # Triton refuses mixed signedness for / // and %: the result type would be a guess
        with gap(None), pytest.raises(CompilationError, match="different signedness"):
            run_binary(mode, BINARY, f"x {op} y", x, y, dtype_x, dtype_y, "float32")
        return
    if op == "%" and dtype_x in integral_dtypes and "float" in dtype_y:
        x = numpy_random(SIZE, dtype_x, rs, low=-100, high=100)   # exact in float16 too
    if op in ("*", "/", "%") and dtype_x in integral_dtypes and dtype_y in integral_dtypes:
        y[(y == 0) | (y.astype(np.int64) == -1)] = 3               # no /0, no INT_MIN / -1
    ref, dz = _bin_reference(x, y, dtype_x, dtype_y, op)
    with gap(None):
        got = run_binary(mode, BINARY, f"x {op} y", x, y, dtype_x, dtype_y, dz)
        assert_close(got, as_dtype(ref, dz), dz, err_msg=f"x {op} y, {dtype_x} {dtype_y}")


@pytest.mark.parametrize("dtype_x", dtypes)
@pytest.mark.parametrize("op", ["+", "-", "*", "%"])
def test_bin_op_scalar_rhs(mode, dtype_x, op):
    """`x op 3` with a Python int: the tensor's type wins (Triton's weak scalar typing)."""
    rs = np.random.RandomState(5)
    x = numpy_random(SIZE, dtype_x, rs, low=-50, high=50)
    ref = {"+": np.add, "-": np.subtract, "*": np.multiply, "%": np.fmod}[op](x, np.array(3, dtype_x))
    got = run_binary(mode, BINARY_SCALAR_RHS, f"x {op} y", x, 3, dtype_x, None, dtype_x, y_scalar=True)
    assert_close(got, ref.astype(dtype_x), dtype_x)


@pytest.mark.parametrize("dtype_x, dtype_y", [(a, b) for a in int_dtypes for b in int_dtypes]
                         + [(a, b) for a in uint_dtypes for b in uint_dtypes])
def test_floordiv(mode, dtype_x, dtype_y):
    rs = np.random.RandomState(17)
    x, y = numpy_random(SIZE, dtype_x, rs), numpy_random(SIZE, dtype_y, rs)
    y[(y == 0) | (y.astype(np.int64) == -1)] = 3
    dz = triton_binary_dtype(dtype_x, dtype_y)
    # C division truncates toward zero; Python ints hold every 64-bit operand exactly
    q = [abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1) for a, b in zip(x.tolist(), y.tolist())]
    ref = np.array(q, dtype=object).astype(dz)
    got = run_binary(mode, BINARY, "x // y", x, y, dtype_x, dtype_y, dz)
    np.testing.assert_array_equal(got, ref)


def test_floordiv_mixed_signedness_rejected(mode):
    x = numpy_random(SIZE, "int32")
    with pytest.raises(CompilationError, match="different signedness"):
        run_binary(mode, BINARY, "x // y", x, x.astype(np.uint32), "int32", "uint32", "int32")


def test_unsigned_abs_and_signed_abs(mode):
    k = launch(make_kernel('''
@triton.jit
def kernel(O1, O2, X, Y, SIZE: tl.constexpr):
    off = tl.arange(0, SIZE)
    x = tl.load(X + off)
    y = tl.load(Y + off)
    tl.store(O1 + off, tl.abs(x))
    tl.store(O2 + off, tl.abs(-y))
'''), mode)
    rs = np.random.RandomState(17)
    x, y = numpy_random(SIZE, "uint32", rs), numpy_random(SIZE, "int32", rs, low=-2**30, high=2**30)
    o1, o2 = empty_device(SIZE, "uint32"), empty_device(SIZE, "int32")
    k[(1,)](o1, o2, to_device(x), to_device(y), SIZE=SIZE)
    np.testing.assert_array_equal(o1.numpy(), x)
    np.testing.assert_array_equal(o2.numpy(), np.abs(y))


# ---------------------------------------------------------------------------------------
# bit operations and shifts
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype_x, dtype_y, op", [
    (dx, dy, op) for op in ["&", "|", "^"] for dx in dtypes + ["bool"] for dy in dtypes + ["bool"]])
def test_bitwise_op(mode, dtype_x, dtype_y, op):
    rs = np.random.RandomState(17)
    x, y = numpy_random(SIZE, dtype_x, rs), numpy_random(SIZE, dtype_y, rs)
    if "float" in dtype_x + dtype_y:
        with pytest.raises(CompilationError):
            run_binary(mode, BINARY, f"x {op} y", x, y, dtype_x, dtype_y, "int32")
        return
    dz = triton_binary_dtype(dtype_x, dtype_y)
    ref = {"&": np.bitwise_and, "|": np.bitwise_or, "^": np.bitwise_xor}[op](x.astype(dz), y.astype(dz))
    got = run_binary(mode, BINARY, f"x {op} y", x, y, dtype_x, dtype_y, dz)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("dtype_x, dtype_y, op", [
    (dx, dy, op) for op in ["<<", ">>"] for dx in integral_dtypes for dy in uint_dtypes])
def test_shift_op(mode, dtype_x, dtype_y, op):
    """Triton: the shift is arithmetic or logical by the LEFT operand's signedness (before
    promotion); the value is then the promoted type's bits."""
    rs = np.random.RandomState(17)
    bw = max(bitwidth(dtype_x), bitwidth(dtype_y))
    x = numpy_random(SIZE, dtype_x, rs)
    y = numpy_random(SIZE, dtype_y, rs, low=0, high=bw)
    dz = triton_binary_dtype(dtype_x, dtype_y)
    wide = ("int" if dtype_x in int_dtypes else "uint") + str(bw)
    xw, yw = x.astype(wide), y.astype(wide)
    ref = (np.left_shift(xw, yw) if op == "<<" else np.right_shift(xw, yw)).astype(dz)
    got = run_binary(mode, BINARY, f"x {op} y", x, y, dtype_x, dtype_y, dz)
    np.testing.assert_array_equal(got, ref)


def test_signed_shift_right_by_unsigned_regression(mode):
    """int8(-1) >> uint8(1) is 0xFF (arithmetic shift of the signed left operand), stored to
    uint8 as 255; a logical shift after promotion to uint8 gave 127."""
    x = np.full(SIZE, -1, np.int8)
    y = np.ones(SIZE, np.uint8)
    got = run_binary(mode, BINARY, "x >> y", x, y, "int8", "uint8", "uint8")
    np.testing.assert_array_equal(got, 255)


# ---------------------------------------------------------------------------------------
# comparisons
# ---------------------------------------------------------------------------------------
CMP = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal, ">": np.greater,
       ">=": np.greater_equal}


@pytest.mark.parametrize("dtype_x, dtype_y, op, mode_x, mode_y",
                         [(dx, dy, op, "real", "real") for op in CMP for dx in dtypes for dy in dtypes]
                         + [("float32", "float32", op, mx, my) for op in CMP
                            for mx, my in [("nan", "real"), ("real", "nan"), ("nan", "nan")]])
def test_compare_op(mode, dtype_x, dtype_y, op, mode_x, mode_y):
    rs = np.random.RandomState(17)
    x, y = numpy_random(SIZE, dtype_x, rs), numpy_random(SIZE, dtype_y, rs)
    x[::3] = y[::3].astype(dtype_x)                   # some equal pairs
    if mode_x == "nan":
        x[:] = np.nan
    if mode_y == "nan":
        y[:] = np.nan
    dz = triton_binary_dtype(dtype_x, dtype_y)
    ref = CMP[op](x.astype(dz), y.astype(dz))
    got = run_binary(mode, BINARY, f"x {op} y", x, y, dtype_x, dtype_y, "bool")
    np.testing.assert_array_equal(got, ref)


# ---------------------------------------------------------------------------------------
# unary operators and math functions
# ---------------------------------------------------------------------------------------
def run_unary(mode, expr, x, dx, dz):
    k = launch(make_kernel(UNARY, GENERATE_TEST_HERE=expr), mode)
    z = empty_device(SIZE, dz)
    k[(1,)](z, to_device(x, dx), SIZE=SIZE)
    return z.numpy()


@pytest.mark.parametrize("dtype_x, expr", [(d, "-x") for d in dtypes_with_bfloat16] + [(d, "~x") for d in int_dtypes])
def test_unary_op(mode, dtype_x, expr):
    x = numpy_random(SIZE, dtype_x)
    ref = -x if expr == "-x" else ~x
    np.testing.assert_array_equal(run_unary(mode, expr, x, dtype_x, dtype_x), ref)


@pytest.mark.parametrize("dtype_x", dtypes_with_bfloat16)
def test_abs(mode, dtype_x):
    x = numpy_random(SIZE, dtype_x)
    np.testing.assert_array_equal(run_unary(mode, "tl.abs(x)", x, dtype_x, dtype_x), np.abs(x))


# (name, numpy reference, input domain); float32 results within 4 ulp of the float64 value:
# Vulkan's precision for GLSL.std.450 exp/log/sin/cos is 3 ulp or absolute error bounds, and
# lavapipe's are tighter; sin/cos get an absolute 2^-20 bound near their zeros
MATH = {
    "exp": (np.exp, (-5, 5)), "exp2": (np.exp2, (-5, 5)), "log": (np.log, (0.01, 10)),
    "log2": (np.log2, (0.01, 10)), "sqrt": (np.sqrt, (0, 10)), "rsqrt": (lambda v: 1 / np.sqrt(v), (0.01, 10)),
    "sin": (np.sin, (-3, 3)), "cos": (np.cos, (-3, 3)), "floor": (np.floor, (-5, 5)), "ceil": (np.ceil, (-5, 5)),
    "abs": (np.abs, (-5, 5)), "erf": (None, (-3, 3)), "sigmoid": (lambda v: 1 / (1 + np.exp(-v)), (-5, 5)),
}


def _erf(v):
    import math
    return np.vectorize(math.erf)(v)


def _math_input(rng, lo, hi):
    return rng.uniform(lo, hi, SIZE).astype(np.float32)


@pytest.mark.parametrize("name", list(MATH))
@pytest.mark.parametrize("form", ["tl.{f}(x)", "tl.math.{f}(x)", "x.{f}()"])
def test_math_op(mode, name, form):
    fn, (lo, hi) = MATH[name]
    fn = fn or _erf
    x = _math_input(np.random.RandomState(3), lo, hi)
    if form == "tl.math.{f}(x)" and name == "sigmoid":
        pytest.skip("sigmoid is tl.sigmoid only (not in triton.language.math)")
    if form == "x.{f}()" and name == "sigmoid":
        pytest.skip("sigmoid is not a tensor method in Triton")
    ref = fn(x.astype(np.float64))
    got = run_unary(mode, form.format(f=name), x, "float32", "float32").astype(np.float64)
    np.testing.assert_allclose(got, ref, rtol=4 * 2.0 ** -23, atol=2.0 ** -20)


# Triton's test_math_op runs float64 too.  GLSL.std.450 has 64-bit sqrt, rsqrt (InverseSqrt),
# floor, ceil and abs only: the others are refused with a clear error instead of being computed
# in float32 (a silent loss of precision)
@pytest.mark.parametrize("name", list(MATH))
def test_math_op_float64(mode, name):
    fn, (lo, hi) = MATH[name]
    x = np.random.RandomState(3).uniform(lo, hi, SIZE)
    if name in ("sqrt", "rsqrt", "floor", "ceil", "abs"):
        got = run_unary(mode, f"tl.{name}(x)", x, "float64", "float64")
        # floor/ceil/abs exact; Vulkan's sqrt and inversesqrt are not correctly rounded: 2 ulp
        np.testing.assert_allclose(got, fn(x), rtol=2 * 2.0 ** -52, atol=0)
    else:
        with pytest.raises(CompilationError, match="float64 values is not supported"):
            run_unary(mode, f"tl.{name}(x)", x, "float64", "float64")


@pytest.mark.parametrize("expr, ref", [
    ("tl.exp(3.0) + x * 0", np.exp(3.0)), ("tl.sqrt(4.0) + x * 0", 2.0), ("tl.log2(8.0) + x * 0", 3.0)])
def test_math_of_constant(mode, expr, ref):
    x = numpy_random(SIZE, "float32")
    np.testing.assert_allclose(run_unary(mode, expr, x, "float32", "float32"), ref, rtol=4 * 2.0 ** -23)


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "sin", "cos", "exp2", "log2", "math.erf",
                                  "extra.libdevice.tanh"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_math_rejects_16bit_floats(mode, name, dtype):
    """Triton's math functions take fp32/fp64 only: fp16 must be converted by the user."""
    x = numpy_random(SIZE, dtype)
    with pytest.raises(CompilationError, match="fp32"):
        run_unary(mode, f"tl.{name}(x)", x, dtype, dtype)


def test_math_fma(mode):
    k = launch(make_kernel('''
@triton.jit
def kernel(Z, X, Y, W, SIZE: tl.constexpr):
    off = tl.arange(0, SIZE)
    x = tl.load(X + off)
    y = tl.load(Y + off)
    w = tl.load(W + off)
    z = tl.math.fma(x, y, w)
    tl.store(Z + off, z)
'''), mode)
    rs = np.random.RandomState(1)
    x, y, w = (numpy_random(SIZE, "float32", rs) for _ in range(3))
    z = empty_device(SIZE, "float32")
    k[(1,)](z, to_device(x), to_device(y), to_device(w), SIZE=SIZE)
    ref = x.astype(np.float64) * y + w
    # fused: one rounding of the exact value (1 ulp allowed, plus cancellation near 0)
    np.testing.assert_allclose(z.numpy(), ref, rtol=2 * 2.0 ** -23, atol=1e-6)


@pytest.mark.parametrize("expr", ["tl.math.fdiv(x, y)", "tl.math.div_rn(x, y)", "tl.fdiv(x, y)"])
def test_math_divide_op(mode, expr):
    rs = np.random.RandomState(2)
    x, y = numpy_random(SIZE, "float32", rs), numpy_random(SIZE, "float32", rs)
    got = run_binary(mode, BINARY, expr, x, y, "float32", "float32", "float32")
    np.testing.assert_allclose(got, x.astype(np.float64) / y, rtol=3 * 2.0 ** -23)


@pytest.mark.parametrize("expr, ref", [("tl.math.sqrt_rn(x)", lambda x, y: np.sqrt(x)),
                                       ("tl.math.div_rn(x, y)", lambda x, y: x / y)])
def test_precise_math(mode, expr, ref):
    """Correctly rounded: equal to the float64 result rounded to float32."""
    rs = np.random.RandomState(4)
    x = np.abs(numpy_random(SIZE, "float32", rs))
    y = numpy_random(SIZE, "float32", rs) + np.float32(1e-6)
    got = run_binary(mode, BINARY, expr, x, y, "float32", "float32", "float32")
    want = ref(x.astype(np.float64), y.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", ["int32", "uint32"])
def test_umulhi(mode, dtype):
    rs = np.random.RandomState(7)
    x, y = numpy_random(SIZE, dtype, rs), numpy_random(SIZE, dtype, rs)
    got = run_binary(mode, BINARY, "tl.umulhi(x, y)", x, y, dtype, dtype, dtype)
    ref = ((x.astype(object) * y.astype(object)) >> 32)
    ref = np.array([int(v) & 0xFFFFFFFF for v in ref], np.uint64).astype(np.uint32).view(dtype)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("dtype", ["float32", "float16", "int32"])
def test_clamp(mode, dtype):
    rs = np.random.RandomState(8)
    x = numpy_random(SIZE, dtype, rs)
    lo, hi = numpy_random(SIZE, dtype, rs), numpy_random(SIZE, dtype, rs)
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    k = launch(make_kernel('''
@triton.jit
def kernel(Z, X, L, H, SIZE: tl.constexpr):
    off = tl.arange(0, SIZE)
    x = tl.load(X + off)
    z = tl.clamp(x, tl.load(L + off), tl.load(H + off))
    tl.store(Z + off, z)
'''), mode)
    z = empty_device(SIZE, dtype)
    args = (z, to_device(x, dtype), to_device(lo, dtype), to_device(hi, dtype))
    if dtype == "int32":      # Triton: "Only floating point clamp is supported"
        with pytest.raises(CompilationError, match="floating-point"):
            k[(1,)](*args, SIZE=SIZE)
        return
    k[(1,)](*args, SIZE=SIZE)
    np.testing.assert_array_equal(z.numpy(), np.minimum(np.maximum(x, lo), hi))


@pytest.mark.parametrize("x, y", [(1.0, np.inf), (-1.0, np.inf), (5.5, 2.0), (-5.5, 2.0), (1e30, 3.0),
                                  (7.0, -0.0), (np.inf, 2.0), (3.0, 1e-30)])
def test_fmod_float32_exact(mode, x, y):
    """Float % is C's fmod (exact): 1 % inf is 1, 1e30 % 3 is exact, x % 0 and inf % y are NaN."""
    xs, ys = np.full(SIZE, x, np.float32), np.full(SIZE, y, np.float32)
    got = run_binary(mode, BINARY, "x % y", xs, ys, "float32", "float32", "float32")
    np.testing.assert_array_equal(got, np.fmod(xs, ys))


def test_fmod_float16_regression(mode):
    """f16 % is computed in f32 exactly, then rounded: 100 % 0.3 (as f16 values) is 0.0837."""
    xs, ys = np.full(SIZE, 100, np.float16), np.full(SIZE, 0.3, np.float16)
    got = run_binary(mode, BINARY, "x % y", xs, ys, "float16", "float16", "float16")
    ref = np.fmod(xs.astype(np.float64), ys.astype(np.float64)).astype(np.float16)
    np.testing.assert_array_equal(got, ref)


BINARY_BROADCAST_RHS = '''
@triton.jit
def kernel(Z, X, Y, SIZE: tl.constexpr):
    off = tl.arange(0, SIZE)
    x = tl.load(X + off)
    y = tl.load(Y)
    z = GENERATE_TEST_HERE
    tl.store(Z + off, z)
'''


@pytest.mark.parametrize("dtype_x, dtype_y, op", [
    (dx, dy, op) for op in ["+", "-", "*", "<", "==", ">="] for dx in dtypes_with_bfloat16 for dy in dtypes_with_bfloat16])
@pytest.mark.parametrize("side", ["lhs", "rhs"])
def test_bin_op_broadcast(mode, dtype_x, dtype_y, op, side):
    """One operand is a scalar loaded from memory (shape ()), the other a tile: the scalar's
    dtype takes part in promotion like a tensor's (Triton's kernel_broadcast_lhs/rhs)."""
    rs = np.random.RandomState(21)
    lim = (-1000, 1000) if "float" in dtype_x + dtype_y else (None, None)
    x, y = numpy_random(SIZE, dtype_x, rs, *lim), numpy_random(SIZE, dtype_y, rs, *lim)
    if side == "lhs":
        x[:] = x[0]
    else:
        y[:] = y[0]
    dz = triton_binary_dtype(dtype_x, dtype_y)
    if op in CMP:
        ref, out = CMP[op](x.astype(host_dtype(dz)), y.astype(host_dtype(dz))), "bool"
        if dz == "bfloat16":
            ref = CMP[op](round_bf16(x), round_bf16(y))
    else:
        ref, _ = _bin_reference(x, y, dtype_x, dtype_y, op)
        ref, out = as_dtype(ref, dz), dz
    template = BINARY_BROADCAST_LHS if side == "lhs" else BINARY_BROADCAST_RHS
    got = run_binary(mode, template, f"x {op} y", x, y, dtype_x, dtype_y, out)
    assert_close(got, ref, out, err_msg=f"x {op} y, {dtype_x} {dtype_y}")


@pytest.mark.parametrize("dtype_x", dtypes_with_bfloat16)
@pytest.mark.parametrize("scalar", [3, -2, 2.5, True])
@pytest.mark.parametrize("op", ["+", "*", "<", "=="])
def test_bin_op_python_scalar(mode, dtype_x, scalar, op):
    """`x op 3`, `x op 2.5`: an int keeps the tile's type (a float tile stays float), a float
    next to an integer tile gives float32, as in Triton."""
    if dtype_x in uint_dtypes and isinstance(scalar, int) and scalar < 0:
        pytest.skip("a negative literal next to an unsigned tile does not fit its type")
    rs = np.random.RandomState(22)
    x = numpy_random(SIZE, dtype_x, rs, -50, 50)
    if isinstance(scalar, float):
        dz = dtype_x if "float" in dtype_x else "float32"
    else:
        dz = dtype_x
    xs = x.astype(host_dtype(dz))
    sv = np.asarray(scalar).astype(host_dtype(dz))
    if op in CMP:
        ref, out = CMP[op](xs, sv), "bool"
    else:
        with np.errstate(over="ignore"):
            ref = {"+": np.add, "*": np.multiply}[op](xs, sv)
        ref, out = as_dtype(ref, dz), dz
    got = run_binary(mode, BINARY_SCALAR_RHS, f"x {op} y", x, scalar, dtype_x, None, out, y_scalar=True)
    assert_close(got, ref, out, err_msg=f"x {op} {scalar!r}, {dtype_x}")
