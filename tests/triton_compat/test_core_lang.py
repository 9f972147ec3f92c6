"""Triton-compatibility: loops, reductions, stores, casts, constexprs and host API, as Triton's
`test_core.py` exercises them (kernels in Triton's spelling; numpy references).

Features spvjit does not have yet are listed with `gap(reason)`: the test must fail today and
will report XPASS(strict) once the feature lands, so the list stays true.
"""
from __future__ import annotations

import numpy as np
import pytest

import spvjit as triton
import spvjit.language as tl
from spvjit.frontend.errors import CompilationError

from compat import (dtypes, dtypes_with_bfloat16, empty_device, float_dtypes, gap, int_dtypes,
                    integral_dtypes, launch, make_kernel, numpy_random, to_device, uint_dtypes)

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
SIZE = 128


# ---------------------------------------------------------------------------------------
# loops: range and static_range with step= as a keyword (these were silently unstepped)
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("loop, ref", [
    ("tl.static_range(0, 100, step=7)", sum(range(0, 100, 7))),
    ("tl.range(0, 10, step=2)", sum(range(0, 10, 2))),
    ("range(3, 50, 5)", sum(range(3, 50, 5))),
    ("tl.range(40, 0, step=-3)", sum(range(40, 0, -3))),
    ("tl.range(0, 10, 2, num_stages=3)", sum(range(0, 10, 2))),
    ("tl.static_range(5)", sum(range(5))),
])
def test_range_step(mode, loop, ref):
    k = launch(make_kernel('''
@triton.jit
def kernel(Z):
    acc = 0
    for i in LOOP:
        acc += i
    tl.store(Z, acc)
''', LOOP=loop), mode)
    z = empty_device(1, "int32")
    k[(1,)](z)
    assert z.numpy()[0] == ref


def test_range_bad_keyword(mode):
    k = launch(make_kernel('''
@triton.jit
def kernel(Z):
    acc = 0
    for i in tl.range(0, 10, stride=2):
        acc += i
    tl.store(Z, acc)
'''), mode)
    with pytest.raises(CompilationError, match="stride"):
        k[(1,)](empty_device(1, "int32"))


# ---------------------------------------------------------------------------------------
# reductions
# ---------------------------------------------------------------------------------------
REDUCE = '''
@triton.jit
def kernel(X, Z, BLOCK: tl.constexpr):
    x = tl.load(X + tl.arange(0, BLOCK))
    tl.store(Z, GENERATE_TEST_HERE)
'''


@pytest.mark.parametrize("op", ["sum", "max", "min", "argmax", "argmin"])
@pytest.mark.parametrize("dtype", dtypes)
@pytest.mark.parametrize("shape", [32, 128])
def test_reduce1d(mode, op, dtype, shape):
    rs = np.random.RandomState(17)
    x = numpy_random(shape, dtype, rs, low=-20 if dtype in int_dtypes else 0, high=20)
    if op == "sum":
        # Triton sums small ints in int32 and floats in their own type (f16 accumulates in f32
        # here and on NVIDIA; the tolerance allows the f16 result's rounding)
        acc = "int32" if dtype in integral_dtypes and int(dtype[-2:].lstrip("t")) < 32 else dtype
        ref, zt = np.sum(x.astype(np.float64)), (acc if dtype in integral_dtypes else dtype)
    else:
        fn = {"max": np.max, "min": np.min, "argmax": np.argmax, "argmin": np.argmin}[op]
        ref, zt = fn(x), ("int32" if op.startswith("arg") else dtype)
    k = launch(make_kernel(REDUCE, GENERATE_TEST_HERE=f"tl.{op}(x, axis=0)"), mode)
    z = empty_device(1, zt)
    k[(1,)](to_device(x, dtype), z, BLOCK=shape)
    if dtype == "float16" and op == "sum":
        np.testing.assert_allclose(z.numpy()[0], ref, rtol=2e-3, atol=2e-3)
    elif "float" in dtype and op == "sum":
        np.testing.assert_allclose(z.numpy()[0], ref, rtol=1e-5, atol=1e-5)
    else:
        assert z.numpy()[0] == np.asarray(ref).astype(zt)


@pytest.mark.parametrize("op, ref", [("max", 8.0), ("min", 6.0), ("argmax", 2), ("argmin", 1)])
def test_reduce_skips_nan(mode, op, ref):
    """[nan, 6, 8]: max 8 at index 2, min 6 at index 1, on the device and in the interpreter
    (the interpreter used to propagate NaN: max nan, argmax 0)."""
    x = np.full(4, -np.inf if op in ("max", "argmax") else np.inf, np.float32)
    x[:3] = [np.nan, 6, 8]
    k = launch(make_kernel(REDUCE, GENERATE_TEST_HERE=f"tl.{op}(x, axis=0)"), mode)
    z = empty_device(1, "int32" if op.startswith("arg") else "float32")
    k[(1,)](to_device(x), z, BLOCK=4)
    assert z.numpy()[0] == ref


@pytest.mark.parametrize("op", ["sum", "max", "min", "argmax", "argmin"])
@pytest.mark.parametrize("axis", [0, 1])
def test_reduce2d(mode, op, axis):
    M, N = 8, 16
    x = numpy_random((M, N), "float32", np.random.RandomState(3))
    k = launch(make_kernel('''
@triton.jit
def kernel(X, Z, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, AXIS: tl.constexpr):
    range_m = tl.arange(0, BLOCK_M)
    range_n = tl.arange(0, BLOCK_N)
    x = tl.load(X + range_m[:, None] * BLOCK_N + range_n[None, :])
    z = GENERATE_TEST_HERE
    if AXIS == 1:
        tl.store(Z + range_m, z)
    else:
        tl.store(Z + range_n, z)
''', GENERATE_TEST_HERE=f"tl.{op}(x, axis=AXIS)"), mode)
    fn = {"sum": np.sum, "max": np.max, "min": np.min, "argmax": np.argmax, "argmin": np.argmin}[op]
    ref = fn(x, axis=axis)
    z = empty_device(ref.shape[0], "int32" if op.startswith("arg") else "float32")
    k[(1,)](to_device(x), z, BLOCK_M=M, BLOCK_N=N, AXIS=axis)
    np.testing.assert_allclose(z.numpy(), ref, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------
# stores convert to the pointee type (Triton's store semantics)
# ---------------------------------------------------------------------------------------
STORE = '''
@triton.jit
def kernel(Z, X, SIZE: tl.constexpr):
    off = tl.arange(0, SIZE)
    x = tl.load(X + off)
    tl.store(Z + off, GENERATE_TEST_HERE)
'''


def _cast_ref(x, src, dst):
    """numpy conversion with C's rules: float -> int truncates (inputs stay in range)."""
    if dst == "bool":
        return x != 0
    if "float" in src and "float" not in dst:
        return np.trunc(x).astype(dst)
    if src == "bfloat16":
        return x.astype("float32" if dst == "bfloat16" else dst)
    return x.astype("float32" if dst == "bfloat16" else dst)


@pytest.mark.parametrize("src, dst", [(a, b) for a in dtypes + ["bool"] for b in dtypes])
def test_store_converts(mode, src, dst):
    rs = np.random.RandomState(9)
    x = numpy_random(SIZE, src, rs, low=0 if dst in uint_dtypes or src in uint_dtypes else -100, high=100)
    if "float" in src:
        x = (x * 40).astype(src)
        if dst in uint_dtypes:
            x = np.abs(x)
    ref = _cast_ref(x, src, dst)
    k = launch(make_kernel(STORE, GENERATE_TEST_HERE="x"), mode)
    z = empty_device(SIZE, dst)
    k[(1,)](z, to_device(x, src), SIZE=SIZE)
    if dst == "float16" and src in ("int32", "uint32", "int16", "uint16", "float32"):
        np.testing.assert_allclose(z.numpy(), ref.astype(np.float16), rtol=1e-3)
    else:
        np.testing.assert_array_equal(z.numpy(), ref)


def test_store_bool_to_float(mode):
    k = launch(make_kernel(STORE, GENERATE_TEST_HERE="x > 0"), mode)
    x = numpy_random(SIZE, "float32")
    z = empty_device(SIZE, "float32")
    k[(1,)](z, to_device(x), SIZE=SIZE)
    np.testing.assert_array_equal(z.numpy(), (x > 0).astype(np.float32))


# ---------------------------------------------------------------------------------------
# casts
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("src, dst", [(a, b) for a in dtypes_with_bfloat16 for b in dtypes_with_bfloat16 + ["bool"]])
def test_cast(mode, src, dst):
    rs = np.random.RandomState(10)
    low = 0 if (dst in uint_dtypes or src in uint_dtypes) else -100
    x = numpy_random(SIZE, src, rs, low=low, high=100)
    if "float" in src:
        x = np.asarray(np.abs(x) * 40 if dst in uint_dtypes else x * 40, np.float32)
        x = (x.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32) if src == "bfloat16" else x.astype(src)
    tl_name = {"bool": "tl.int1"}.get(dst, f"tl.{dst}")
    k = launch(make_kernel(STORE, GENERATE_TEST_HERE=f"x.to({tl_name})"), mode)
    zt = "bool" if dst == "bool" else dst
    z = empty_device(SIZE, zt)
    k[(1,)](z, to_device(x, src), SIZE=SIZE)
    ref = _cast_ref(x, src, dst)
    if dst == "bfloat16":
        b = np.asarray(ref, np.float32).view(np.uint32).astype(np.uint64)
        ref = ((b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(np.float32)
    np.testing.assert_array_equal(z.numpy(), ref)


@pytest.mark.parametrize("src, dst", [("float32", "int32"), ("int32", "float32"), ("float16", "int16"),
                                      ("uint32", "int32"), ("int8", "uint8"), ("float16", "bfloat16")])
def test_bitcast(mode, src, dst):
    x = numpy_random(SIZE, src, np.random.RandomState(11))
    k = launch(make_kernel(STORE, GENERATE_TEST_HERE=f"x.to(tl.{dst}, bitcast=True)"), mode)
    z = empty_device(SIZE, dst)
    with gap(None):
        k[(1,)](z, to_device(x, src), SIZE=SIZE)
        if dst == "bfloat16":
            want = (x.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            want = x.view(dst)
        np.testing.assert_array_equal(z.numpy(), want)


@pytest.mark.parametrize("rounding", ["rtne", "rtz"])
def test_fp_downcast_rounding(mode, rounding):
    x = np.array([1 + 2 ** -11 + 2 ** -20] * SIZE, np.float32)      # just above a halfway point
    k = launch(make_kernel(STORE, GENERATE_TEST_HERE=f"x.to(tl.float16, fp_downcast_rounding='{rounding}')"), mode)
    z = empty_device(SIZE, "float16")
    want = np.float16(1 + 2 ** -10) if rounding == "rtne" else np.float16(1.0)
    with gap("fp_downcast_rounding='rtz' is not supported" if rounding == "rtz" else None):
        k[(1,)](z, to_device(x), SIZE=SIZE)
        np.testing.assert_array_equal(z.numpy(), want)


# ---------------------------------------------------------------------------------------
# tensor methods, dtype queries, constexpr
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("expr, ref", [
    ("x.exp()", lambda x: np.exp(x)), ("x.abs()", np.abs), ("x.to(tl.int32)", lambda x: np.trunc(x).astype(np.int32)),
    ("x.cast(tl.float16)", lambda x: x.astype(np.float16)),
    ("x.reshape(8, 16).reshape(128)", lambda x: x), ("x.reshape((16, 8)).trans().reshape(128)",
                                                     lambda x: x.reshape(16, 8).T.reshape(128)),
    ("x.sum(0) + x * 0", lambda x: np.sum(x) + x * 0), ("x.max(0) + x * 0", lambda x: np.max(x) + x * 0),
    ("tl.zeros([SIZE], dtype=Z.dtype.element_ty) + x", lambda x: x),
    ("x.sqrt() if X.dtype.element_ty == tl.float32 else x", lambda x: np.sqrt(x)),
])
def test_tensor_methods(mode, expr, ref):
    x = np.abs(numpy_random(SIZE, "float32", np.random.RandomState(12))) + np.float32(0.5)
    want = np.asarray(ref(x.astype(np.float64)))
    zt = {"int32": "int32", "float16": "float16"}.get(str(np.asarray(ref(x)).dtype), "float32")
    k = launch(make_kernel(STORE, GENERATE_TEST_HERE=expr), mode)
    z = empty_device(SIZE, zt)
    k[(1,)](z, to_device(x), SIZE=SIZE)
    np.testing.assert_allclose(z.numpy(), want, rtol=1e-3 if zt == "float16" else 4e-7, atol=1e-6)


def test_constexpr_compare_and_arith():
    assert tl.constexpr(5) == tl.constexpr(5)
    assert tl.constexpr(5) != tl.constexpr(6)
    assert (tl.constexpr(3) + 4) == 7 and (2 * tl.constexpr(3)) == 6
    assert hash(tl.constexpr(5)) == hash(tl.constexpr(5))


def test_constexpr_in_kernel(mode):
    k = launch(make_kernel('''
@triton.jit
def kernel(Z, A: tl.constexpr, B: tl.constexpr):
    tl.static_assert(A == B)
    if A == B:
        tl.store(Z, 1)
    else:
        tl.store(Z, 2)
'''), mode)
    z = empty_device(1, "int32")
    k[(1,)](z, A=5, B=5)
    assert z.numpy()[0] == 1


def test_jit_options_accepted(mode):
    @triton.jit(noinline=True, debug=False, do_not_specialize=["x"])   # names must exist, as in Triton
    def helper(x):
        return x * 2

    @triton.jit(do_not_specialize=["n"])
    def kernel(Z, n):
        tl.store(Z, helper(n))

    z = empty_device(1, "int32")
    launch(kernel, mode)[(1,)](z, 21)
    assert z.numpy()[0] == 42
    with pytest.raises(TypeError, match="no_such_option"):
        triton.jit(no_such_option=1)


def test_num_ctas_one_accepted(mode):
    k = launch(make_kernel('''
@triton.jit
def kernel(Z):
    tl.store(Z, 7)
'''), mode)
    z = empty_device(1, "int32")
    k[(1,)](z, num_ctas=1, num_stages=3)
    assert z.numpy()[0] == 7
    with pytest.raises(TypeError, match="num_ctas"):
        k[(1,)](z, num_ctas=2)


def test_data_ptr(mode):
    a, b = to_device(np.zeros(4, np.float32)), to_device(np.zeros(4, np.float32))
    assert isinstance(a.data_ptr(), int) and a.data_ptr() == a.data_ptr() and a.data_ptr() != b.data_ptr()


def test_while_loop(mode):
    x = numpy_random(SIZE, "int32", np.random.RandomState(13), low=0, high=50)
    src = STORE.replace("    tl.store(Z + off, GENERATE_TEST_HERE)",
                        "    i = 0\n    while i < 3:\n        i += 1\n    tl.store(Z + off, x + i)")
    k = launch(make_kernel(src), mode)
    z = empty_device(SIZE, "int32")
    k[(1,)](z, to_device(x, "int32"), SIZE=SIZE)
    np.testing.assert_array_equal(z.numpy(), x + 3)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_f16_atomics(mode, dtype):
    """Formerly a known gap: a 16-bit atomic add, then a plain store of its old value minus x to
    the same elements (the atomic's word view and the 16-bit view of one buffer, in order)."""
    x = numpy_random(SIZE, dtype, np.random.RandomState(13))
    k = launch(make_kernel(STORE, GENERATE_TEST_HERE="tl.atomic_add(Z + off, x) - x"), mode)
    z = to_device(np.full(SIZE, 2.0, np.float32), dtype)
    k[(1,)](z, to_device(x, dtype), SIZE=SIZE)
    # the atomic leaves 2 + x, then the store (after it, in program order) writes old - x = 2 - x,
    # rounded once to the element type (bf16 by hand: numpy has none)
    if dtype == "float16":
        want = np.float16(2) - x
    else:
        bits = (np.float32(2) - x).view(np.uint32).astype(np.uint64)
        want = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(np.float32)
    np.testing.assert_array_equal(z.numpy(), want)


@pytest.mark.parametrize("src", ["float32", "int32"])
def test_conversion_to_float16_rounds_to_nearest_even(mode, src):
    """Every f16 halfway point, its f32 neighbours, subnormals and the overflow edge convert as
    numpy does (nearest even).  lavapipe's OpFConvert truncates: 1 + 2^-11 + 2^-20 gave 1.0."""
    if src == "float32":
        lo = np.arange(0, 0x7C00, dtype=np.uint16).view(np.float16).astype(np.float64)
        hi = np.arange(1, 0x7C01, dtype=np.uint16).view(np.float16).astype(np.float64)
        mid = ((lo + hi) / 2).astype(np.float32)
        x = np.concatenate([mid, np.nextafter(mid, np.float32(0)), np.nextafter(mid, np.float32(np.inf)),
                            np.array([65519.99, 65520, 1e30, np.inf, np.nan, 2.9e-8, 3e-8], np.float32)])
    else:
        x = np.concatenate([np.arange(2040, 2100), np.arange(65500, 65540), np.arange(-5000, -4000, 3)]).astype(np.int32)
    x = np.concatenate([x, -x])
    n = -(-x.size // 1024) * 1024
    x = np.resize(x, n)
    k = launch(make_kernel('''
@triton.jit
def kernel(Z, X, BLOCK: tl.constexpr):
    off = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(Z + off, tl.load(X + off).to(tl.float16))
'''), mode)
    z = empty_device(n, "float16")
    k[(n // 1024,)](z, to_device(x, src), BLOCK=1024)
    np.testing.assert_array_equal(z.numpy(), x.astype(np.float16))


@pytest.mark.parametrize("op", ["cumsum", "cumprod"])
@pytest.mark.parametrize("dtype", ["int32", "float32", "int8", "float16", "int64", "float64"])
@pytest.mark.parametrize("shape, axis", [((128,), 0), ((8, 16), 0), ((8, 16), 1), ((4, 32), 1), ((32, 4), 0)])
@pytest.mark.parametrize("reverse", [False, True])
def test_scan(mode, op, dtype, shape, axis, reverse):
    rs = np.random.RandomState(14)
    x = numpy_random(shape, dtype, rs, low=-3, high=4)
    if "float" in dtype:
        x = rs.uniform(-2, 2, shape).astype(dtype) if op == "cumsum" else rs.uniform(0.8, 1.2, shape).astype(dtype)
    M, N = (1, shape[0]) if len(shape) == 1 else shape
    k = launch(make_kernel('''
@triton.jit
def kernel(X, Z, M: tl.constexpr, N: tl.constexpr, AXIS: tl.constexpr, REV: tl.constexpr, RANK: tl.constexpr):
    if RANK == 1:
        off = tl.arange(0, N)
    else:
        off = tl.arange(0, M)[:, None] * N + tl.arange(0, N)[None, :]
    x = tl.load(X + off)
    tl.store(Z + off, GENERATE_TEST_HERE)
''', GENERATE_TEST_HERE=f"tl.{op}(x, AXIS, reverse=REV)"), mode)
    acc = "int32" if dtype == "int8" else dtype
    # integers wrap like the device's 32-bit arithmetic: int64 wraps mod 2^64, whose low 32 bits agree
    wide = np.float64 if "float" in dtype else np.int64
    xs = np.flip(x, axis) if reverse else x
    ref = getattr(np, op)(xs.astype(wide), axis=axis)
    ref = np.flip(ref, axis) if reverse else ref
    z = empty_device(shape, acc)
    k[(1,)](to_device(x, dtype), z, M=M, N=N, AXIS=axis, REV=reverse, RANK=len(shape))
    if "float" in dtype:
        # every combine rounds to the element type: up to n roundings (the interpreter adds in
        # order), each at most half an ulp of the largest partial result
        n = shape[axis]
        u = {"float16": 2.0 ** -11, "float32": 2.0 ** -24, "float64": 2.0 ** -53}[dtype]
        np.testing.assert_allclose(z.numpy(), ref, rtol=n * u, atol=n * u * np.max(np.abs(ref)))
    else:
        np.testing.assert_array_equal(z.numpy(), ref.astype(acc))


# ---------------------------------------------------------------------------------------
# data movement: flip, permute, join / split / interleave / cat
# ---------------------------------------------------------------------------------------
MOVE = '''
@triton.jit
def kernel(X, Y, Z, A: tl.constexpr, B: tl.constexpr, C: tl.constexpr):
    off = tl.arange(0, A)[:, None, None] * (B * C) + tl.arange(0, B)[None, :, None] * C + tl.arange(0, C)[None, None, :]
    x = tl.load(X + off)
    y = tl.load(Y + off)
    z = GENERATE_TEST_HERE
    tl.store(Z + tl.arange(0, A * B * C * OUT_FACTOR), tl.reshape(z, (A * B * C * OUT_FACTOR,)))
'''


@pytest.mark.parametrize("expr, ref, factor", [
    ("tl.flip(x, 0)", lambda x, y: np.flip(x, 0), 1),
    ("tl.flip(x, 1)", lambda x, y: np.flip(x, 1), 1),
    ("tl.flip(x)", lambda x, y: np.flip(x, 2), 1),
    ("tl.permute(x, 2, 0, 1)", lambda x, y: np.transpose(x, (2, 0, 1)), 1),
    ("x.permute((1, 2, 0))", lambda x, y: np.transpose(x, (1, 2, 0)), 1),
    ("tl.trans(x)", lambda x, y: np.transpose(x), 1),
    ("x.trans(0, 2, 1)", lambda x, y: np.transpose(x, (0, 2, 1)), 1),
    ("tl.join(x, y)", lambda x, y: np.stack([x, y], -1), 2),
    ("tl.interleave(x, y)", lambda x, y: np.stack([x, y], -1).reshape(x.shape[:-1] + (-1,)), 2),
    ("tl.cat(x, y, can_reorder=True)", lambda x, y: np.concatenate([x, y], 0), 2),
    ("tl.split(tl.join(x, y))[1] + tl.split(tl.join(y, x))[1] * 0", lambda x, y: y, 1),
    ("tl.join(y, x).split()[0]", lambda x, y: y, 1),
])
@pytest.mark.parametrize("dtype", ["int32", "float16"])
def test_data_movement(mode, expr, ref, factor, dtype):
    A, B, C = 2, 4, 8
    rs = np.random.RandomState(15)
    x, y = numpy_random((A, B, C), dtype, rs), numpy_random((A, B, C), dtype, rs)
    k = launch(make_kernel(MOVE.replace("OUT_FACTOR", str(factor)), GENERATE_TEST_HERE=expr), mode)
    z = empty_device(A * B * C * factor, dtype)
    k[(1,)](to_device(x, dtype), to_device(y, dtype), z, A=A, B=B, C=C)
    np.testing.assert_array_equal(z.numpy(), np.ascontiguousarray(ref(x, y)).reshape(-1))


# ---------------------------------------------------------------------------------------
# compile-time Python: short-circuits, getattr/hasattr, static_print; debug ops
# ---------------------------------------------------------------------------------------
def test_constexpr_short_circuit_and_getattr(mode):
    k = launch(make_kernel('''
@triton.jit
def kernel(Z, X, OPT: tl.constexpr):
    x = tl.load(X + tl.arange(0, 4))
    if OPT is not None and OPT.shape[0] > 1:
        x = x * 100
    if OPT is None or hasattr(OPT, "no_such_attr"):
        x = x + getattr(tl, "float32").primitive_bitwidth
    tl.store(Z + tl.arange(0, 4), x)
'''), mode)
    z = empty_device(4, "int32")
    k[(1,)](z, to_device(np.arange(4, dtype=np.int32)), OPT=None)
    np.testing.assert_array_equal(z.numpy(), np.arange(4) + 32)


def test_static_print(mode, capsys):
    k = launch(make_kernel('''
@triton.jit
def kernel(Z, N: tl.constexpr):
    tl.static_print("N is", N)
    tl.store(Z, N)
'''), mode)
    k[(1,)](empty_device(1, "int32"), N=77)
    assert "N is 77" in capsys.readouterr().out


def test_debug_barrier_and_device_assert(mode):
    k = launch(make_kernel('''
@triton.jit
def kernel(Z, X, BLOCK: tl.constexpr):
    x = tl.load(X + tl.arange(0, BLOCK))
    tl.device_assert(x >= 0, "x must be non-negative")
    tl.debug_barrier()
    tl.store(Z + tl.arange(0, BLOCK), x + 1)
'''), mode)
    z = empty_device(64, "int32")
    k[(1,)](z, to_device(np.arange(64, dtype=np.int32)), BLOCK=64)
    np.testing.assert_array_equal(z.numpy(), np.arange(64) + 1)
    if mode == "interpreter":   # as Triton: asserts are checked by the interpreter, not on devices
        with pytest.raises(AssertionError, match="x must be non-negative"):
            k[(1,)](z, to_device(-np.arange(64, dtype=np.int32) - 1), BLOCK=64)


def test_device_print(mode, capsys):
    k = launch(make_kernel('''
@triton.jit
def kernel(X):
    tl.device_print("x = ", tl.load(X + tl.arange(0, 4)))
'''), mode)
    k[(1,)](to_device(np.arange(4, dtype=np.int32)))
    # Triton's format: one line per element, the prefix made to end in ': '
    assert capsys.readouterr().out.splitlines() == [f"pid (0, 0, 0) idx ({i}) x =: {i}" for i in range(4)]


# ---------------------------------------------------------------------------------------
# tl.reduce / tl.associative_scan with combine functions (inlined, as Triton does)
# ---------------------------------------------------------------------------------------
COMBINE = '''
@triton.jit
def add_fn(a, b):
    return a + b


@triton.jit
def max_fn(a, b):
    return tl.maximum(a, b)


@triton.jit
def argmax_fn(v1, i1, v2, i2):
    # ties keep the smaller index, so the result does not depend on the combine order
    take2 = (v2 > v1) | ((v2 == v1) & (i2 < i1))
    return tl.where(take2, v2, v1), tl.where(take2, i2, i1)


@triton.jit
def linear_recurrence(a1, b1, a2, b2):
    # x_t = a_t * x_{t-1} + b_t composed left to right: not commutative
    return a1 * a2, b1 * a2 + b2


@triton.jit
def kernel(A, B, Z, ZI, M: tl.constexpr, N: tl.constexpr, AXIS: tl.constexpr):
    off = tl.arange(0, M)[:, None] * N + tl.arange(0, N)[None, :]
    a = tl.load(A + off)
    b = tl.load(B + off)
    GENERATE_TEST_HERE
'''


def _rec_scan(a, b, axis, reverse):
    a, b = np.moveaxis(a.astype(np.float64), axis, -1), np.moveaxis(b.astype(np.float64), axis, -1)
    if reverse:
        a, b = a[..., ::-1], b[..., ::-1]
    x = np.zeros(a.shape[:-1])
    out = np.empty_like(b)
    for t in range(a.shape[-1]):
        x = a[..., t] * x + b[..., t]
        out[..., t] = x
    if reverse:
        out = out[..., ::-1]
    return np.moveaxis(out, -1, axis)


@pytest.mark.parametrize("body, ref", [
    ("tl.store(Z + off, tl.associative_scan(a, AXIS, add_fn))", lambda a, b, ax: np.cumsum(a, ax)),
    ("tl.store(Z + off, tl.associative_scan(a, AXIS, max_fn, reverse=True))",
     lambda a, b, ax: np.flip(np.maximum.accumulate(np.flip(a, ax), ax), ax)),
    ("tl.store(Z + off, tl.associative_scan((a, b), AXIS, linear_recurrence)[1])",
     lambda a, b, ax: _rec_scan(a, b, ax, False)),
    ("tl.store(Z + off, tl.associative_scan((a, b), AXIS, linear_recurrence, reverse=True)[1])",
     lambda a, b, ax: _rec_scan(a, b, ax, True)),
    ("tl.store(Z + off, tl.reduce(a, AXIS, add_fn, keep_dims=True) + b * 0)",
     lambda a, b, ax: np.sum(a, ax, keepdims=True) + b * 0),
    ("tl.store(Z + off, a.reduce(AXIS, max_fn, keep_dims=True) + b * 0)",
     lambda a, b, ax: np.max(a, ax, keepdims=True) + b * 0),
])
@pytest.mark.parametrize("axis", [0, 1])
def test_combine_fn(mode, body, ref, axis):
    M, N = 8, 16
    rs = np.random.RandomState(16)
    a = rs.uniform(0.5, 1.0, (M, N)).astype(np.float32)
    b = rs.uniform(-1, 1, (M, N)).astype(np.float32)
    k = launch(make_kernel(COMBINE, GENERATE_TEST_HERE=body), mode)
    z = empty_device((M, N), "float32")
    k[(1,)](to_device(a), to_device(b), z, empty_device(1, "int32"), M=M, N=N, AXIS=axis)
    # a tree of up to log2(16) + 16 roundings of values below 20 in magnitude
    np.testing.assert_allclose(z.numpy(), ref(a, b, axis), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("axis", [0, 1, None])
def test_reduce_tuple_argmax(mode, axis):
    M, N = 8, 16
    rs = np.random.RandomState(17)
    a = rs.randint(0, 5, (M, N)).astype(np.float32)        # many ties: the smaller index must win
    body = ("idx = tl.broadcast_to(off, (M, N))\n    v, i = tl.reduce((a, idx), AXIS, argmax_fn)\n"
            "    tl.store(ZI + IOFF, i)")
    ioff = {0: "tl.arange(0, N)", 1: "tl.arange(0, M)", None: "0"}[axis]
    k = launch(make_kernel(COMBINE, GENERATE_TEST_HERE=body, IOFF=ioff), mode)
    zi = empty_device({0: N, 1: M, None: 1}[axis], "int32")
    k[(1,)](to_device(a), to_device(a), empty_device((M, N), "float32"), zi, M=M, N=N, AXIS=axis)
    flat = np.arange(M * N).reshape(M, N)
    if axis is None:
        want = np.array([np.argmax(a)])
    else:
        want = np.take_along_axis(flat, np.expand_dims(np.argmax(a, axis), axis), axis).reshape(-1)
    np.testing.assert_array_equal(zi.numpy(), want)


@pytest.mark.parametrize("dtype", ["int32", "float32", "uint8", "float16"])
# small tiles: a bitonic network is log2(n)^2/2 stages, each fully unrolled by the lowering today
@pytest.mark.parametrize("shape, dim", [((32,), None), ((4, 8), 1), ((8, 4), 0), ((2, 16), None)])
@pytest.mark.parametrize("descending", [False, True])
def test_sort(mode, dtype, shape, dim, descending):
    rs = np.random.RandomState(18)
    x = numpy_random(shape, dtype, rs, low=0 if dtype in uint_dtypes else -30, high=30)
    M, N = (1, shape[0]) if len(shape) == 1 else shape
    k = launch(make_kernel('''
@triton.jit
def kernel(X, Z, M: tl.constexpr, N: tl.constexpr, DIM: tl.constexpr, DESC: tl.constexpr, RANK: tl.constexpr):
    if RANK == 1:
        off = tl.arange(0, N)
    else:
        off = tl.arange(0, M)[:, None] * N + tl.arange(0, N)[None, :]
    x = tl.load(X + off)
    tl.store(Z + off, tl.sort(x, DIM, descending=DESC))
'''), mode)
    z = empty_device(shape, dtype)
    k[(1,)](to_device(x, dtype), z, M=M, N=N, DIM=dim, DESC=descending, RANK=len(shape))
    ax = len(shape) - 1 if dim is None else dim
    want = np.sort(x, axis=ax)
    np.testing.assert_array_equal(z.numpy(), np.flip(want, ax) if descending else want)
