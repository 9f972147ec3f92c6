"""64-bit element types (int64, uint64, float64): typing, constants, scalar arguments, pointer
offsets, reductions, data movement, conversions, and the clear error on devices without them.

Every kernel runs in the numpy interpreter and on the device; references are numpy with
64-bit wrap-around (integers must match exactly).  The GPU-layout variants compile for a
"discrete GPU" Target (tests/test_gpu_layouts.py) so the shared-memory and multi-subgroup
paths that lavapipe's one-subgroup programs never take run here too.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import spvjit
import spvjit.language as tl
from spvjit.codegen.compiler import compile_kernel
from spvjit.codegen.spirv.tools import disassemble
from spvjit.codegen.target import Target
from spvjit.compiler import check_device_support
from spvjit.frontend.errors import CompilationError
from spvjit.interpreter.host_tensor import HostTensor
from spvjit.ir import parse, print_kernel

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def launch(k, mode):
    return spvjit.interpret(k) if mode == "interpreter" else k


def full_range(n, dtype, rs):
    info = np.iinfo(dtype)
    return rs.randint(info.min, info.max, n, dtype=np.dtype(dtype)).astype(dtype)


# ---------------------------------------------------------------------------------------
# constants and scalar arguments
# ---------------------------------------------------------------------------------------
@spvjit.jit
def big_constants(X, Z, ZU, BLOCK: tl.constexpr):
    off = tl.arange(0, BLOCK)
    x = tl.load(X + off)
    big = 2**40                    # a Python int past int32: an int64 constant, as in Triton
    huge = 2**63 + 5               # past int64: uint64
    tl.store(Z + off, x * 0x100000001 + big - 3000000000)
    tl.store(ZU + off, x.to(tl.uint64) + huge)


def test_python_ints_past_int32_are_64bit_constants(mode):
    x = full_range(128, "int64", np.random.RandomState(1))
    z, zu = spvjit.empty(128, np.int64), spvjit.empty(128, np.uint64)
    launch(big_constants, mode)[(1,)](spvjit.tensor(x), z, zu, BLOCK=128)
    np.testing.assert_array_equal(z.numpy(), x * np.int64(0x100000001) + np.int64(2**40) - np.int64(3000000000))
    np.testing.assert_array_equal(zu.numpy(), x.astype(np.uint64) + np.uint64(2**63 + 5))
    text = big_constants.ir(spvjit.tensor(x), z, zu, BLOCK=128)
    assert "i64" in text and "u64" in text
    # the IR text form holds these constants exactly (print -> parse -> print)
    assert print_kernel(parse(text)) == text


@spvjit.jit
def int32_plus_big(X, Z, BLOCK: tl.constexpr):
    off = tl.arange(0, BLOCK)
    tl.store(Z + off, tl.load(X + off) + 2**40)


def test_int32_tensor_with_a_64bit_literal_is_refused(mode):
    """Triton: an int literal takes the tile's type, and 2**40 does not fit int32."""
    with pytest.raises(CompilationError, match="does not fit in i32"):
        launch(int32_plus_big, mode)[(1,)](spvjit.tensor(np.zeros(16, np.int32)), spvjit.empty(16, np.int32), BLOCK=16)


@spvjit.jit
def scalar_args(X, Z, a, b, c, f, BLOCK: tl.constexpr):
    off = tl.arange(0, BLOCK)
    x = tl.load(X + off)
    tl.store(Z + off, x + a + b * c + f.to(x.dtype))


@pytest.mark.parametrize("dtype, a, b, c", [
    ("int64", 2**40, 7, -2**35),            # i64, i32, i64: the second i64 needs 8-byte alignment
    ("uint64", 2**63 + 5, 3, 2**62),        # u64, i32, i64
    ("int64", -2**50, 2**33, 5),
])
def test_64bit_scalar_arguments(mode, dtype, a, b, c):
    x = np.arange(64).astype(dtype)
    z = spvjit.empty(64, np.dtype(dtype))
    launch(scalar_args, mode)[(1,)](spvjit.tensor(x), z, a, b, c, 2.0, BLOCK=64)
    want = [(int(v) + a + b * c + 2) % 2**64 for v in x]
    np.testing.assert_array_equal(z.numpy(), np.array(want, np.uint64).view(dtype) if dtype == "int64"
                                  else np.array(want, np.uint64))
    kinds = scalar_args.specialize([spvjit.tensor(x), z, a, b, c, 2.0], {"BLOCK": 64})[0].kinds
    assert kinds["a"][1].bits == 64 and kinds["f"][1].name == "f32"


def test_scalar_argument_past_64_bits_is_refused():
    x = spvjit.tensor(np.zeros(8, np.int64))
    with pytest.raises(spvjit.LaunchError, match="does not fit in 64 bits"):
        scalar_args[(1,)](x, spvjit.empty(8, np.int64), 2**64, 1, 1, 1.0, BLOCK=8)


# ---------------------------------------------------------------------------------------
# pointer arithmetic with 64-bit offsets (Triton code widens offsets to avoid overflow)
# ---------------------------------------------------------------------------------------
@spvjit.jit
def strided_copy(X, Z, stride_xm, stride_zm, N: tl.constexpr, BLOCK_N: tl.constexpr, KIND: tl.constexpr):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    if KIND == "pid":
        row_x = X + pid.to(tl.int64) * stride_xm
        row_z = Z + pid.to(tl.int64) * stride_zm
        tl.store(row_z + cols, tl.load(row_x + cols, mask=cols < N), mask=cols < N)
    else:
        offs = (pid * stride_xm + cols).to(tl.uint64 if KIND == "u64" else tl.int64)
        offz = pid.to(tl.int64) * stride_zm + cols.to(tl.int64)
        tl.store(Z + offz, tl.load(X + offs, mask=cols < N), mask=cols < N)


@pytest.mark.parametrize("kind", ["pid", "i64", "u64"])
def test_int64_pointer_offsets(mode, kind):
    rs = np.random.RandomState(2)
    x = rs.normal(0, 1, (6, 40)).astype(np.float32)
    z = spvjit.zeros((6, 48), np.float32)
    launch(strided_copy, mode)[(6,)](spvjit.tensor(x), z, 40, 48, N=40, BLOCK_N=64, KIND=kind)
    want = np.zeros((6, 48), np.float32)
    want[:, :40] = x
    np.testing.assert_array_equal(z.numpy(), want)


# ---------------------------------------------------------------------------------------
# reductions over the full 64-bit range
# ---------------------------------------------------------------------------------------
@spvjit.jit
def reduce_all(X, Z, ZI, BLOCK: tl.constexpr):
    x = tl.load(X + tl.arange(0, BLOCK))
    tl.store(Z + 0, tl.sum(x, axis=0))
    tl.store(Z + 1, tl.max(x, axis=0))
    tl.store(Z + 2, tl.min(x, axis=0))
    tl.store(ZI + 0, tl.argmax(x, axis=0))
    tl.store(ZI + 1, tl.argmin(x, axis=0))


@spvjit.jit
def reduce_rows(X, Z, M: tl.constexpr, N: tl.constexpr):
    x = tl.load(X + tl.arange(0, M)[:, None] * N + tl.arange(0, N)[None, :])
    tl.store(Z + tl.arange(0, M), tl.max(x, axis=1))
    tl.store(Z + M + tl.arange(0, N), tl.sum(x, axis=0))


def _values(dtype, n, rs):
    if dtype == "float64":
        # parts that float32 cannot hold: 1e10-scale values with 1e-3 details
        return rs.normal(0, 1, n) * 1e10 + rs.normal(0, 1, n) * 1e-3
    return full_range(n, dtype, rs)


def _check_reduce_all(x, z, zi, dtype):
    if dtype == "float64":
        # pairwise vs sequential order: each of n additions rounds by at most half an ulp of a
        # partial sum bounded by sum|x|
        assert abs(z[0] - np.sum(x)) <= len(x) * 2.0 ** -53 * np.sum(np.abs(x))
    else:
        assert z[0] == x.sum()                                   # wraps mod 2^64, as numpy
    assert (z[1], z[2], zi[0], zi[1]) == (x.max(), x.min(), x.argmax(), x.argmin())


@pytest.mark.parametrize("dtype", ["int64", "uint64", "float64"])
@pytest.mark.parametrize("block, warps", [(32, 1), (1024, 4)])
def test_reductions_64bit(mode, dtype, block, warps):
    x = _values(dtype, block, np.random.RandomState(3))
    z, zi = spvjit.empty(3, np.dtype(dtype)), spvjit.empty(2, np.int32)
    launch(reduce_all, mode)[(1,)](spvjit.tensor(x), z, zi, BLOCK=block, num_warps=warps)
    _check_reduce_all(x, z.numpy(), zi.numpy(), dtype)


@pytest.mark.parametrize("dtype", ["int64", "uint64", "float64"])
def test_axis_reductions_64bit(mode, dtype):
    M, N = 8, 32
    x = _values(dtype, M * N, np.random.RandomState(4)).reshape(M, N)
    z = spvjit.empty(M + N, np.dtype(dtype))
    launch(reduce_rows, mode)[(1,)](spvjit.tensor(x), z, M=M, N=N)
    np.testing.assert_array_equal(z.numpy()[:M], x.max(axis=1))
    if dtype == "float64":
        np.testing.assert_allclose(z.numpy()[M:], x.sum(axis=0), rtol=0, atol=M * 2.0 ** -52 * np.abs(x).sum(0).max())
    else:
        np.testing.assert_array_equal(z.numpy()[M:], x.sum(axis=0))


# ---------------------------------------------------------------------------------------
# GPU layouts: 64-bit values through shared memory and subgroup moves
# ---------------------------------------------------------------------------------------
@spvjit.jit
def moves(X, Z, M: tl.constexpr, N: tl.constexpr):
    off = tl.arange(0, M)[:, None] * N + tl.arange(0, N)[None, :]
    x = tl.load(X + off)
    offt = tl.arange(0, N)[:, None] * M + tl.arange(0, M)[None, :]
    tl.store(Z + offt, tl.trans(x))
    tl.store(Z + M * N + off, tl.cumsum(x, 1))


@pytest.mark.usefixtures("needs_device")
@pytest.mark.parametrize("dtype", ["int64", "uint64", "float64"])
@pytest.mark.parametrize("extended", [True, False])
def test_64bit_in_gpu_layouts(dtype, extended):
    """Multi-subgroup programs: reductions go through subgroup ops (or, without subgroup
    extended types, an xor-shuffle butterfly for 64-bit integers) and shared-memory partials;
    trans and cumsum move 64-bit values through the 32-bit-word scratch as two halves."""
    from test_gpu_layouts import gpu_like_target, run_as_gpu
    import test_gpu_layouts
    base = gpu_like_target()
    target = dataclasses.replace(base, subgroup_extended_types=extended)
    orig = test_gpu_layouts.gpu_like_target
    test_gpu_layouts.gpu_like_target = lambda: target
    try:
        rs = np.random.RandomState(5)
        x = _values(dtype, 1024, rs)
        z, zi = spvjit.empty(3, np.dtype(dtype)), spvjit.empty(2, np.int32)
        ck = run_as_gpu(reduce_all, (1,), spvjit.tensor(x), z, zi, BLOCK=1024, num_warps=4)
        assert ck.workgroup_size > base.subgroup_size
        butterfly = "OpGroupNonUniformShuffleXor" in disassemble(ck.spirv)
        assert butterfly == (not extended and dtype != "float64")
        _check_reduce_all(x, z.numpy(), zi.numpy(), dtype)
        M, N = 16, 32
        y = (np.arange(M * N) * 3).astype(dtype) * (2**33 + 7 if dtype != "float64" else 1.25)
        out = spvjit.empty(2 * M * N, np.dtype(dtype))
        ck = run_as_gpu(moves, (1,), spvjit.tensor(y), out, M=M, N=N, num_warps=4)
        assert "Workgroup" in disassemble(ck.spirv)              # the shared scratch was used
        y2 = y.reshape(M, N)
        np.testing.assert_array_equal(out.numpy()[:M * N], y2.T.reshape(-1))
        np.testing.assert_array_equal(out.numpy()[M * N:], np.cumsum(y2, 1).reshape(-1))
    finally:
        test_gpu_layouts.gpu_like_target = orig


# ---------------------------------------------------------------------------------------
# conversions
# ---------------------------------------------------------------------------------------
@spvjit.jit
def convert(X, Z, BLOCK: tl.constexpr, DST: tl.constexpr, BITCAST: tl.constexpr):
    off = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(Z + off, tl.load(X + off).to(DST, bitcast=BITCAST))


def _bf16(v):
    """Nearest bfloat16 of float64 values (ties to even), as float32: one rounding."""
    m, e = np.frexp(np.asarray(v, np.float64))
    return np.ldexp(np.round(m * 256), e - 8).astype(np.float32)


def _halfway_f64(rs):
    """float64 values at and just off the halfway points of float32, float16 and bfloat16,
    where rounding twice (through float32) goes wrong."""
    base = rs.normal(0, 100, 2048)
    out = [base]
    for narrow in (np.float32, np.float16):
        h = base.astype(narrow).astype(np.float64)
        half = np.spacing(base.astype(narrow)).astype(np.float64) / 2
        out += [h + half, h + half * (1 + 2.0 ** -20), h + half * (1 - 2.0 ** -20)]
    b = _bf16(base).astype(np.float64)
    out += [b + np.abs(b) * 2.0 ** -9, b + np.abs(b) * 2.0 ** -9 * (1 + 2.0 ** -30)]
    return np.concatenate(out)


@pytest.mark.parametrize("src, dst", [
    ("float64", "float32"), ("float64", "float16"), ("float64", "bfloat16"),
    ("int64", "float32"), ("uint64", "float64"), ("int64", "float64"),
    ("float64", "int64"), ("float32", "int64"), ("int64", "int8"), ("uint64", "uint16"),
    ("int32", "int64"), ("uint32", "uint64"), ("int8", "uint64"), ("int64", "uint64"),
])
def test_conversions_64bit(mode, src, dst):
    rs = np.random.RandomState(6)
    if src == "float64":
        x = _halfway_f64(rs) if dst in ("float32", "float16", "bfloat16") else rs.normal(0, 1e15, 4096)
    elif src == "float32":
        x = rs.normal(0, 1e9, 4096).astype(np.float32)
    else:
        x = full_range(4096, src, rs)
    if dst == "float32" and src == "int64":
        x = x >> rs.randint(0, 40, x.size)          # every magnitude, most not exact in float32
    n = -(-x.size // 256) * 256
    x = np.resize(x, n)
    tl_dst = {"bfloat16": tl.bfloat16}.get(dst, getattr(tl, dst))
    z = spvjit.empty(n, tl.bfloat16 if dst == "bfloat16" else np.dtype(dst))
    launch(convert, mode)[(n // 256,)](spvjit.tensor(x), z, BLOCK=256, DST=tl_dst, BITCAST=False)
    if dst == "bfloat16":
        want = _bf16(x)
    elif "float" in src and "int" in dst:
        want = np.trunc(x).astype(dst)
    else:
        want = x.astype(dst)                 # numpy: one correctly rounded conversion / wrap-around
    np.testing.assert_array_equal(z.numpy(), want)


@pytest.mark.parametrize("src, dst", [("float64", "int64"), ("int64", "float64"), ("uint64", "int64"),
                                      ("float64", "uint64")])
def test_bitcasts_64bit(mode, src, dst):
    rs = np.random.RandomState(7)
    x = rs.normal(0, 1e6, 256) if src == "float64" else full_range(256, src, rs)
    if src == "int64":
        x = np.abs(x) >> 2                     # finite, non-NaN float64 bit patterns
    z = spvjit.empty(256, np.dtype(dst))
    launch(convert, mode)[(1,)](spvjit.tensor(x), z, BLOCK=256, DST=getattr(tl, dst), BITCAST=True)
    np.testing.assert_array_equal(z.numpy(), x.view(dst))


@spvjit.jit
def f64_arith(X, Y, Z, BLOCK: tl.constexpr):
    off = tl.arange(0, BLOCK)
    x = tl.load(X + off)
    y = tl.load(Y + off)
    tl.store(Z + off, x + y)
    tl.store(Z + BLOCK + off, x % y)
    tl.store(Z + 2 * BLOCK + off, tl.sqrt(tl.abs(x)))
    tl.store(Z + 3 * BLOCK + off, x * 1e-300)         # a float literal f32 cannot hold: float64


def test_float64_keeps_its_precision(mode):
    rs = np.random.RandomState(8)
    x = 1 + rs.uniform(0, 1, 128) * 1e-12                 # differences below float32's ulp
    x[:8] = [1e300, -1e300, 5.5, 1e30, 7.0, -7.25, 1.0, 3.0]
    y = rs.uniform(1, 2, 128)
    y[:8] = [3.0, 7.0, 2.0, 3.0, np.inf, 0.5, 1e-300, -0.0]
    z = spvjit.empty(4 * 128, np.float64)
    launch(f64_arith, mode)[(1,)](spvjit.tensor(x), spvjit.tensor(y), z, BLOCK=128)
    z = z.numpy().reshape(4, 128)
    np.testing.assert_array_equal(z[0], x + y)
    np.testing.assert_array_equal(z[1], np.fmod(x, y))       # exact, as C's fmod
    # GLSL.std.450 sqrt is not required to round correctly: 2 ulp of float64
    np.testing.assert_allclose(z[2], np.sqrt(np.abs(x)), rtol=2 * 2.0 ** -52)
    np.testing.assert_array_equal(z[3], x * 1e-300)


@spvjit.jit
def f64_exp(X, Z, BLOCK: tl.constexpr):
    off = tl.arange(0, BLOCK)
    tl.store(Z + off, tl.exp(tl.load(X + off)))


def test_float64_transcendentals_are_refused(mode):
    """GLSL.std.450 exp/log/sin/... are 32-bit only: refused rather than silently rounded."""
    x = spvjit.tensor(np.zeros(16, np.float64))
    with pytest.raises(CompilationError, match="exp of float64 values is not supported"):
        launch(f64_exp, mode)[(1,)](x, spvjit.empty(16, np.float64), BLOCK=16)


@pytest.mark.usefixtures("needs_device")
def test_tensors_of_64bit_numpy_arrays_round_trip():
    for dt in ("int64", "uint64", "float64"):
        a = _values(dt, 100, np.random.RandomState(9))
        t = spvjit.tensor(a)
        assert t.dtype == np.dtype(dt)
        np.testing.assert_array_equal(t.numpy(), a)


# ---------------------------------------------------------------------------------------
# devices without 64-bit support
# ---------------------------------------------------------------------------------------
@spvjit.jit
def add_one(X, Z, BLOCK: tl.constexpr):
    off = tl.arange(0, BLOCK)
    tl.store(Z + off, tl.load(X + off) + 1)


@pytest.mark.parametrize("dtype, feature, what", [
    ("int64", "int64", r"64-bit integers \(shaderInt64\)"),
    ("uint64", "int64", r"64-bit integers \(shaderInt64\)"),
    ("float64", "float64", r"64-bit floats \(shaderFloat64\)"),
])
def test_missing_64bit_support_is_a_clear_error(dtype, feature, what):
    x = HostTensor(np.zeros(16, dtype))            # building IR needs no device
    ir = add_one.ir_module(x, x, BLOCK=16)
    full = Target(name="test gpu", device_type="discrete", subgroup_size=32,
                  subgroup_ops=("basic", "arithmetic", "ballot", "shuffle"), int64=True, float64=True)
    ck = compile_kernel(ir, full)
    check_device_support(ck, full)
    lacking = dataclasses.replace(full, **{feature: False})
    with pytest.raises(spvjit.DeviceError, match=rf"kernel add_one needs {what}, which test gpu does not support"):
        check_device_support(ck, lacking)


def test_32bit_kernels_need_no_64bit_support():
    x = HostTensor(np.zeros(16, np.int32))
    ir = add_one.ir_module(x, x, BLOCK=16)
    bare = Target(name="bare", device_type="discrete", subgroup_size=32)
    check_device_support(compile_kernel(ir, bare), bare)


@spvjit.jit
def loop_to(Z, n):
    acc = 0
    for i in range(0, n):
        acc += 1
    tl.store(Z, acc)


def test_64bit_loop_bounds_are_refused(mode):
    """The induction variable is an int32: a 64-bit bound (an int argument past int32) is a
    clear error at the loop, not a silently truncated trip count."""
    z = spvjit.empty(1, np.int32)
    launch(loop_to, mode)[(1,)](z, 5)
    assert z.numpy()[0] == 5
    with pytest.raises(CompilationError, match="range bounds must be 32-bit integers, got i64"):
        launch(loop_to, mode)[(1,)](z, 2**40)


@spvjit.jit
def dot64(A, B, C, M: tl.constexpr, N: tl.constexpr, K: tl.constexpr):
    rm, rn, rk = tl.arange(0, M), tl.arange(0, N), tl.arange(0, K)
    a = tl.load(A + rm[:, None] * K + rk[None, :])
    b = tl.load(B + rk[:, None] * N + rn[None, :])
    tl.store(C + rm[:, None] * N + rn[None, :], tl.dot(a, b))


def _dot_inputs():
    rs = np.random.RandomState(10)
    a, b = rs.normal(0, 1, (16, 32)), rs.normal(0, 1, (32, 16))
    # K roundings of float64 partial sums, each at most half an ulp of sum|a||b|
    tol = 32 * 2.0 ** -53 * (np.abs(a) @ np.abs(b))
    return a, b, tol


def test_float64_dot_accumulates_in_float64(mode):
    """Triton: a float64 dot returns float64; float32 accumulation would be off by ~1e-6."""
    a, b, tol = _dot_inputs()
    c = spvjit.empty((16, 16), np.float64)
    launch(dot64, mode)[(1,)](spvjit.tensor(a), spvjit.tensor(b), c, M=16, N=16, K=32)
    assert np.all(np.abs(c.numpy() - a @ b) <= tol)


@pytest.mark.usefixtures("needs_device")
def test_float64_dot_in_gpu_layout():
    """Several subgroups: A and B are staged in the shared scratch as two words per element."""
    from test_gpu_layouts import run_as_gpu
    a, b, tol = _dot_inputs()
    c = spvjit.empty((16, 16), np.float64)
    ck = run_as_gpu(dot64, (1,), spvjit.tensor(a), spvjit.tensor(b), c, M=16, N=16, K=32, num_warps=4)
    assert "Workgroup" in disassemble(ck.spirv)
    assert np.all(np.abs(c.numpy() - a @ b) <= tol)


def test_int64_dot_is_refused(mode):
    x = spvjit.tensor(np.ones((16, 16), np.int64))
    with pytest.raises(CompilationError, match="dot of int64 values is not supported"):
        launch(dot64, mode)[(1,)](x, x, spvjit.empty((16, 16), np.int64), M=16, N=16, K=16)


def _bf16_of_int(values):
    """Nearest bfloat16 of Python ints (8 significant bits, ties to even), as float32."""
    out = []
    for a in values:
        s, a = (-1 if a < 0 else 1), abs(a)
        e = a.bit_length() - 8
        if e > 0:
            q, rem = divmod(a, 1 << e)
            if rem > 1 << (e - 1) or (rem == 1 << (e - 1) and q & 1):
                q += 1
            a = q << e
        out.append(float(s * a))
    return np.array(out, np.float32)


@pytest.mark.parametrize("dtype", ["int32", "uint32", "int64", "uint64"])
def test_int_to_bfloat16_rounds_once(mode, dtype):
    """m * 2^k + 2^(k-1) + 1 lies just above a bf16 halfway point; rounded to float32 first it
    became the halfway point itself and went to even (wrong for even m; k >= 17 puts the +1
    below float32's 24 bits)."""
    rs = np.random.RandomState(11)
    info = np.iinfo(dtype)
    ties = [((int(m) | 0x80) << k) + (1 << (k - 1)) + 1
            for m, k in zip(rs.randint(0x80, 0x100, 2048), rs.randint(17, info.bits - 8, 2048))]
    ties = [t for t in ties if t <= info.max]
    x = np.resize(np.array(ties + [info.max, info.min, 0, 1, -1 if info.min else 2], dtype=object).astype(dtype), 1024)
    z = spvjit.empty(1024, tl.bfloat16)
    launch(convert, mode)[(4,)](spvjit.tensor(x), z, BLOCK=256, DST=tl.bfloat16, BITCAST=False)
    np.testing.assert_array_equal(z.numpy(), _bf16_of_int(x.tolist()))
