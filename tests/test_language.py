"""The kernel language surface, feature by feature, on the device and in the interpreter.

Every test runs one small kernel twice: on the Vulkan device (lavapipe here) and
through `spvjit.interpret(kernel)` (the numpy interpreter), and compares both
with a numpy reference.  Tolerances are justified next to each comparison; where
the device must agree bit for bit (integer ops, one IEEE add/mul, data movement)
the comparison is exact.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import spvjit
import spvjit.language as sl

MODES = ["device", "interpreter"]


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


def K(kernel, mode):
    """The kernel to launch in this mode."""
    return spvjit.interpret(kernel) if mode == "interpreter" else kernel


def rng(seed=0):
    return np.random.default_rng(seed)


# =====================================================================================
# tiles, masks and broadcasting
# =====================================================================================
@spvjit.kernel
def axpb_kernel(x_ptr, out_ptr, n, alpha, beta, BLOCK: sl.constexpr):
    offs = sl.program_id(0) * BLOCK + sl.arange(0, BLOCK)
    mask = offs < n
    x = sl.load(x_ptr + offs, mask=mask, other=0.0)
    sl.store(out_ptr + offs, x * alpha + beta, mask=mask)


@pytest.mark.parametrize("n", [1, 7, 1000, 65537])
def test_rank1_masked_tails_and_scalar_args(mode, n):
    x = rng(n).standard_normal(n).astype(np.float32)
    tx, out = spvjit.tensor(x), spvjit.zeros(n + 3, np.float32)   # 3 guard elements after the end
    BLOCK = 256
    K(axpb_kernel, mode)[(spvjit.cdiv(n, BLOCK),)](tx, out, n, 1.5, 3, BLOCK=BLOCK)
    got = out.numpy()
    # one f32 multiply then one f32 add. Vulkan lets a device fuse them into an fma (no
    # NoContraction decoration is emitted), which can differ from numpy's two roundings by
    # half an ulp of the product: allow 1 ulp of |x * alpha| on top of 1 ulp of the result
    ref = x * np.float32(1.5) + np.float32(3)
    assert np.all(np.abs(got[:n] - ref) <= 2 ** -23 * (np.abs(ref) + np.abs(x * 1.5)))
    np.testing.assert_array_equal(got[n:], 0)          # the mask kept the tail untouched


def test_empty_tensor_fully_masked(mode):
    # n == 0: every access is masked off; nothing may be read or written
    x, out = spvjit.zeros(0, np.float32), spvjit.zeros(0, np.float32)
    K(axpb_kernel, mode)[(1,)](x, out, 0, 1.0, 2, BLOCK=128)
    K(axpb_kernel, mode)[(0,)](x, out, 0, 1.0, 2, BLOCK=128)       # an empty grid launches nothing
    assert out.numpy().shape == (0,)


@spvjit.kernel
def tile2d_kernel(x_ptr, out_ptr, M, N, stride_m, BM: sl.constexpr, BN: sl.constexpr):
    rm = sl.program_id(0) * BM + sl.arange(0, BM)
    rn = sl.program_id(1) * BN + sl.arange(0, BN)
    offs = rm[:, None] * stride_m + rn[None, :]
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    x = sl.load(x_ptr + offs, mask=mask, other=0)
    y = x * 2 - rm[:, None] + rn[None, :] * 1000
    sl.store(out_ptr + offs, y, mask=mask)


@pytest.mark.parametrize("M,N", [(1, 1), (7, 13), (33, 70)])
def test_rank2_tiles_and_broadcast_index(mode, M, N):
    x = rng(M * N).integers(-1000, 1000, (M, N), dtype=np.int32)
    tx, out = spvjit.tensor(x), spvjit.zeros((M, N), np.int32)
    BM, BN = 16, 32
    K(tile2d_kernel, mode)[(spvjit.cdiv(M, BM), spvjit.cdiv(N, BN))](tx, out, M, N, N, BM=BM, BN=BN)
    i, j = np.meshgrid(np.arange(M), np.arange(N), indexing="ij")
    np.testing.assert_array_equal(out.numpy(), x * 2 - i + j * 1000)   # integers: exact


@spvjit.kernel
def outer_kernel(a_ptr, b_ptr, out_ptr, M, N, BM: sl.constexpr, BN: sl.constexpr):
    rm = sl.arange(0, BM)
    rn = sl.arange(0, BN)
    a = sl.load(a_ptr + rm, mask=rm < M, other=0.0)
    b = sl.load(b_ptr + rn, mask=rn < N, other=0.0)
    prod = a[:, None] * b[None, :]                      # [BM, BN]
    row = sl.broadcast_to(a[:, None], (BM, BN))          # explicit broadcast too
    out = prod + row
    sl.store(out_ptr + rm[:, None] * N + rn[None, :], out, mask=(rm[:, None] < M) & (rn[None, :] < N))


def test_broadcast_outer(mode):
    M, N = 13, 29
    a, b = rng(1).standard_normal(M).astype(np.float32), rng(2).standard_normal(N).astype(np.float32)
    out = spvjit.zeros((M, N), np.float32)
    K(outer_kernel, mode)[(1,)](spvjit.tensor(a), spvjit.tensor(b), out, M, N, BM=16, BN=32)
    # one multiply, one add per element in f32 (maybe fused into an fma, see the axpb test)
    ref = a[:, None] * b[None, :] + a[:, None]
    bound = 2 ** -23 * (np.abs(ref) + np.abs(a[:, None] * b[None, :]))
    assert np.all(np.abs(out.numpy() - ref) <= bound)


@spvjit.kernel
def zeros_full_kernel(f_ptr, i_ptr, u8_ptr, BLOCK: sl.constexpr):
    offs = sl.arange(0, BLOCK)
    z = sl.zeros((BLOCK,), dtype=sl.float32)
    f = sl.full((BLOCK,), 2.5, sl.float32)
    i = sl.full((BLOCK,), -7, sl.int32)
    u = sl.full((BLOCK,), 200, sl.uint8)
    z2 = sl.zeros((2, BLOCK // 2), dtype=sl.int32)
    sl.store(f_ptr + offs, z + f + offs.to(sl.float32))
    sl.store(i_ptr + offs, i + sl.reshape(z2, (BLOCK,)))
    sl.store(u8_ptr + offs, u)


def test_zeros_and_full(mode):
    B = 64
    f, i, u = spvjit.zeros(B, np.float32), spvjit.zeros(B, np.int32), spvjit.zeros(B, np.uint8)
    K(zeros_full_kernel, mode)[(1,)](f, i, u, BLOCK=B)
    np.testing.assert_array_equal(f.numpy(), 2.5 + np.arange(B, dtype=np.float32))
    np.testing.assert_array_equal(i.numpy(), np.full(B, -7))
    np.testing.assert_array_equal(u.numpy(), np.full(B, 200))


# =====================================================================================
# casts
# =====================================================================================
@spvjit.kernel
def cast_kernel(x_ptr, out_ptr, n, DST: sl.constexpr, BLOCK: sl.constexpr):
    offs = sl.arange(0, BLOCK)
    mask = offs < n
    x = sl.load(x_ptr + offs, mask=mask)
    sl.store(out_ptr + offs, x.to(DST), mask=mask)


_NP = {sl.float32: np.float32, sl.float16: np.float16, sl.int32: np.int32, sl.uint32: np.uint32,
       sl.int8: np.int8, sl.uint8: np.uint8}
_CAST_TYPES = [sl.float32, sl.float16, sl.int32, sl.uint32, sl.int8, sl.uint8]


def _cast_inputs(src, dst, n=200):
    """Values whose conversion is defined on every device: float -> int only for values whose
    truncation fits the destination (out-of-range float->int is undefined in SPIR-V);
    int -> int may wrap (defined: two's complement truncation / sign or zero extension)."""
    r = rng(hash((src.name, dst.name)) % 1000)
    if src.is_float:
        lo, hi = -1000.0, 1000.0
        if dst.is_int:
            info = np.iinfo(_NP[dst])
            lo, hi = max(lo, info.min), min(hi, info.max)
        if dst.name == "f16" or src.name == "f16":
            lo, hi = max(lo, -60000), min(hi, 60000)
        x = r.uniform(lo, hi, n)
        x[:6] = [0.0, -0.0, 0.5, -0.75, hi - 0.5, lo + 0.5] if dst.is_int else [0, -0.0, 1e-3, 1 / 3, hi, lo]
        return x.astype(_NP[src])
    info = np.iinfo(_NP[src])
    lo, hi = int(info.min), int(info.max)
    if dst.is_float:      # exactly representable in the destination (so no rounding-mode question)
        lim = 2048 if dst.name == "f16" else 1 << 24
        lo, hi = max(lo, -lim), min(hi, lim)
    x = r.integers(lo, hi, n, endpoint=True, dtype=np.int64)
    x[:2] = [lo, hi]
    return x.astype(_NP[src])


@pytest.mark.parametrize("dst", _CAST_TYPES, ids=str)
@pytest.mark.parametrize("src", _CAST_TYPES, ids=str)
def test_casts(mode, src, dst):
    x = _cast_inputs(src, dst)
    n = x.size
    out = spvjit.zeros(n, _NP[dst])
    K(cast_kernel, mode)[(1,)](spvjit.tensor(x), out, n, DST=dst, BLOCK=256)
    if src.is_float and dst.is_int:
        ref = np.trunc(x.astype(np.float64)).astype(_NP[dst])       # C cast: toward zero
    else:
        ref = x.astype(_NP[dst])      # numpy: round-to-nearest-even narrowing, int wrap-around
    # f32 -> f16 narrowing is round-to-nearest-even on lavapipe and in numpy; Vulkan lets a
    # device round toward zero instead, so allow one f16 ulp; every other pair is exact
    if src.name == "f32" and dst.name == "f16":
        np.testing.assert_allclose(out.numpy().astype(np.float32), ref.astype(np.float32),
                                   rtol=2 ** -10, atol=0)
    else:
        np.testing.assert_array_equal(out.numpy(), ref)


@spvjit.kernel
def bf16_round_kernel(x_ptr, out_ptr, sum_ptr, n, BLOCK: sl.constexpr):
    offs = sl.arange(0, BLOCK)
    mask = offs < n
    x = sl.load(x_ptr + offs, mask=mask, other=0.0)
    b = x.to(sl.bfloat16)
    sl.store(out_ptr + offs, b.to(sl.float32), mask=mask)
    # arithmetic in bf16 rounds after each op: (b + b) * b computed in bf16
    c = (b + b) * b
    sl.store(sum_ptr + offs, c.to(sl.float32), mask=mask)
    # constants in bf16 expressions are bf16 too: 0.3 is 0.30078125 (the device used to keep 0.3)
    d = sl.where(b > 1.0, b * 0.3, sl.full((BLOCK,), 0.7, sl.bfloat16))
    sl.store(sum_ptr + n + offs, d.to(sl.float32), mask=mask)


def _round_bf16(x):
    bits = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(np.float32)


def test_bfloat16_in_kernel(mode):
    # There is no way yet to make a bf16 *tensor* (numpy has no bf16; spvjit.tensor keeps the numpy
    # dtype, and uint16 data would be typed u16), so bf16 is tested as an in-kernel dtype.
    n = 300
    x = (rng(5).standard_normal(n) * 100).astype(np.float32)
    x[:4] = [1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, 65504.0, -3.0e38]   # ties: to even, and a huge value
    out, out2 = spvjit.zeros(n, np.float32), spvjit.zeros(2 * n, np.float32)
    K(bf16_round_kernel, mode)[(1,)](spvjit.tensor(x), out, out2, n, BLOCK=512)
    b = _round_bf16(x)
    # bf16 rounding is exact integer arithmetic on the f32 bits, and each bf16 op is one f32 op
    # then that rounding (also in the interpreter): bit-exact expected
    np.testing.assert_array_equal(out.numpy(), b)
    with np.errstate(over="ignore"):      # -3e38 doubles to -inf, as on the device
        np.testing.assert_array_equal(out2.numpy()[:n], _round_bf16(_round_bf16(b + b) * b))
    ref_d = np.where(b > 1, _round_bf16(b * _round_bf16(np.float32(0.3))), _round_bf16(np.float32(0.7)))
    np.testing.assert_array_equal(out2.numpy()[n:], ref_d)


@spvjit.kernel
def bf16_cast_kernel(x_ptr, out_ptr, n, DST: sl.constexpr, BLOCK: sl.constexpr):
    offs = sl.arange(0, BLOCK)
    mask = offs < n
    x = sl.load(x_ptr + offs, mask=mask)
    sl.store(out_ptr + offs, x.to(sl.bfloat16).to(DST), mask=mask)


@pytest.mark.parametrize("dst", _CAST_TYPES, ids=str)
@pytest.mark.parametrize("src", _CAST_TYPES, ids=str)
def test_casts_through_bfloat16(mode, src, dst):
    # src -> bf16 -> dst, with inputs whose bf16 value converts to dst without undefined behaviour
    x = _cast_inputs(src, dst)
    if not src.is_float:                                  # int -> f32 exact, then one bf16 rounding
        x = np.clip(x.astype(np.int64), -(1 << 24), 1 << 24).astype(x.dtype)
    n = x.size
    out = spvjit.zeros(n, _NP[dst])
    K(bf16_cast_kernel, mode)[(1,)](spvjit.tensor(x), out, n, DST=dst, BLOCK=256)
    b = _round_bf16(x.astype(np.float32))
    if dst.is_int:
        info = np.iinfo(_NP[dst])
        ok = (np.trunc(b) >= info.min) & (np.trunc(b) <= info.max)   # rounding up may leave the range
        np.testing.assert_array_equal(out.numpy()[ok], np.trunc(b[ok]).astype(_NP[dst]))
    else:
        # bf16 values are exact in f32; to f16 they may round (or overflow to inf) once more
        np.testing.assert_array_equal(out.numpy(), b.astype(_NP[dst]))


# =====================================================================================
# reductions
# =====================================================================================
@spvjit.kernel
def reduce2d_kernel(x_ptr, out_ptr, KIND: sl.constexpr, AXIS: sl.constexpr, KEEP: sl.constexpr,
                    BM: sl.constexpr, BN: sl.constexpr):
    rm = sl.arange(0, BM)
    rn = sl.arange(0, BN)
    x = sl.load(x_ptr + rm[:, None] * BN + rn[None, :])
    if KIND == "sum":
        r = sl.sum(x, axis=AXIS, keep_dims=KEEP)
    elif KIND == "max":
        r = sl.max(x, axis=AXIS, keep_dims=KEEP)
    elif KIND == "min":
        r = sl.min(x, axis=AXIS, keep_dims=KEEP)
    else:
        r = sl.argmax(x, axis=AXIS, keep_dims=KEEP)
    if KEEP:
        # a kept dim must broadcast back against x
        if AXIS is None:
            sl.static_assert(len(r.shape) == 2)
            r = sl.reshape(r, (1,))
        else:
            r = sl.reshape(r + sl.zeros_like(r), (BN if AXIS == 0 else BM,))
    if AXIS is None:
        sl.store(out_ptr + sl.arange(0, 1), r + sl.zeros((1,), r.dtype))
    elif AXIS == 0:
        sl.store(out_ptr + rn, r)
    else:
        sl.store(out_ptr + rm, r)


def _np_reduce(kind, x, axis):
    return {"sum": np.sum, "max": np.max, "min": np.min, "argmax": np.argmax}[kind](x, axis=axis)


@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("axis", [0, 1, None])
@pytest.mark.parametrize("kind", ["sum", "max", "min", "argmax"])
@pytest.mark.parametrize("dt", [np.float32, np.int32])
def test_reductions(mode, kind, axis, keep, dt):
    BM, BN = 8, 32
    r = rng(3)
    if dt == np.float32:
        x = r.standard_normal((BM, BN)).astype(dt)
    else:
        x = r.integers(-50, 50, (BM, BN)).astype(dt)      # small: ties for argmax are likely
    out_len = 1 if axis is None else (BN if axis == 0 else BM)
    out_dt = np.int32 if kind == "argmax" else dt
    out = spvjit.zeros(out_len, out_dt)
    K(reduce2d_kernel, mode)[(1,)](spvjit.tensor(x), out, KIND=kind, AXIS=axis, KEEP=keep, BM=BM, BN=BN)
    ref = np.atleast_1d(_np_reduce(kind, x.reshape(-1) if axis is None else x, None if axis is None else axis))
    if kind == "sum" and dt == np.float32:
        # <= 256 f32 terms of N(0,1), summed in a different order: |err| <= 256 * 2^-24 * sum|x|
        np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=2e-5 * np.abs(x).sum())
    else:
        np.testing.assert_array_equal(out.numpy(), ref.astype(out_dt))   # max/min/argmax (first index on ties): exact


@spvjit.kernel
def reduce1d_kernel(x_ptr, out_ptr, n, BLOCK: sl.constexpr):
    offs = sl.arange(0, BLOCK)
    mask = offs < n
    x = sl.load(x_ptr + offs, mask=mask, other=-float("inf"))
    sl.store(out_ptr + 0, sl.max(x, axis=0))
    sl.store(out_ptr + 1, sl.argmax(x, axis=0).to(sl.float32))
    sl.store(out_ptr + 2, sl.sum(sl.where(mask, x, 0.0), axis=0))
    sl.store(out_ptr + 3, sl.min(sl.where(mask, x, float("inf")), axis=0))


@pytest.mark.parametrize("n", [1, 7, 100, 1000])
def test_reduction_masked_1d(mode, n):
    x = rng(n).standard_normal(n).astype(np.float32)
    x[n // 2] = x.max() + 1         # a unique max
    out = spvjit.zeros(4, np.float32)
    K(reduce1d_kernel, mode)[(1,)](spvjit.tensor(x), out, n, BLOCK=1024)
    got = out.numpy()
    assert got[0] == x.max() and got[1] == np.argmax(x) and got[3] == x.min()
    # f32 sum of <= 1000 N(0,1) terms in another order: error <= n * 2^-24 * sum|x|
    assert abs(got[2] - x.astype(np.float64).sum()) <= n * 2 ** -24 * np.abs(x).sum() + 1e-6


# =====================================================================================
# dot
# =====================================================================================
@spvjit.kernel
def dot_kernel(a_ptr, b_ptr, c_ptr, M, N, K, BM: sl.constexpr, BN: sl.constexpr, BK: sl.constexpr):
    rm = sl.arange(0, BM)
    rn = sl.arange(0, BN)
    rk = sl.arange(0, BK)
    acc = sl.full((BM, BN), 1.0, sl.float32)           # a non-zero accumulator
    for k0 in range(0, K, BK):
        a = sl.load(a_ptr + rm[:, None] * K + (k0 + rk)[None, :],
                    mask=(rm[:, None] < M) & ((k0 + rk)[None, :] < K), other=0.0)
        b = sl.load(b_ptr + (k0 + rk)[:, None] * N + rn[None, :],
                    mask=((k0 + rk)[:, None] < K) & (rn[None, :] < N), other=0.0)
        acc = sl.dot(a, b, acc)
    sl.store(c_ptr + rm[:, None] * N + rn[None, :], acc, mask=(rm[:, None] < M) & (rn[None, :] < N))


@pytest.mark.parametrize("dt", [np.float32, np.float16])
@pytest.mark.parametrize("M,N,Kd", [(16, 8, 32), (13, 7, 21), (1, 1, 1), (9, 30, 70)])
def test_dot(mode, dt, M, N, Kd):
    r = rng(M * 100 + N)
    a = r.standard_normal((M, Kd)).astype(dt)
    b = r.standard_normal((Kd, N)).astype(dt)
    c = spvjit.zeros((M, N), np.float32)
    K(dot_kernel, mode)[(1,)](spvjit.tensor(a), spvjit.tensor(b), c, M, N, Kd, BM=16, BN=32, BK=16)
    ref = a.astype(np.float64) @ b.astype(np.float64) + 1.0
    # products of f16 inputs are exact in f32; f32 accumulation over K <= 70 terms of size ~1:
    # error <= K * 2^-24 * sum|a||b| (f32 inputs round each product once more: same bound)
    bound = Kd * 2 ** -23 * (np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))) + 1e-6
    assert np.all(np.abs(c.numpy() - ref) <= bound)


# =====================================================================================
# math
# =====================================================================================
@spvjit.kernel
def math_kernel(x_ptr, y_ptr, out_ptr, n, FN: sl.constexpr, BLOCK: sl.constexpr):
    offs = sl.program_id(0) * BLOCK + sl.arange(0, BLOCK)
    mask = offs < n
    x = sl.load(x_ptr + offs, mask=mask, other=1.0)
    y = sl.load(y_ptr + offs, mask=mask, other=1.0)
    if FN == "exp":
        r = sl.exp(x)
    elif FN == "exp2":
        r = sl.exp2(x)
    elif FN == "log":
        r = sl.log(x)
    elif FN == "sqrt":
        r = sl.sqrt(x)
    elif FN == "rsqrt":
        r = sl.rsqrt(x)
    elif FN == "sin":
        r = sl.sin(x)
    elif FN == "cos":
        r = sl.cos(x)
    elif FN == "abs":
        r = sl.abs(x)
    elif FN == "sigmoid":
        r = sl.sigmoid(x)
    elif FN == "maximum":
        r = sl.maximum(x, y)
    elif FN == "minimum":
        r = sl.minimum(x, y)
    elif FN == "where":
        r = sl.where(x > y, x - y, y * 2)
    elif FN == "div":
        r = x / y
    else:
        r = -x
    sl.store(out_ptr + offs, r, mask=mask)


# name: (input range, numpy reference, rtol, atol) -- Vulkan's precision rules for GLSL.std.450:
# exp/exp2: 3 + 2|x| ulp; log: 3 ulp outside [0.5, 2], 2^-21 absolute inside; rsqrt 2 ulp;
# sqrt: as 1/rsqrt (a few ulp); sin/cos: 2^-11 absolute on [-pi, pi]; x / y: 2.5 ulp;
# sigmoid is exp + add + divide; abs, max, min, where, neg: exact.
_MATH = {
    "exp": ((-10, 10), np.exp, 25 * 2 ** -23, 0),
    "exp2": ((-10, 10), np.exp2, 25 * 2 ** -23, 0),
    "log": ((1e-3, 1e3), np.log, 3 * 2 ** -23, 2 ** -21),
    "sqrt": ((0, 1e4), np.sqrt, 4 * 2 ** -23, 0),
    "rsqrt": ((1e-3, 1e4), lambda x: 1 / np.sqrt(x), 3 * 2 ** -23, 0),
    "sin": ((-np.pi, np.pi), np.sin, 0, 2 ** -11),
    "cos": ((-np.pi, np.pi), np.cos, 0, 2 ** -11),
    "abs": ((-10, 10), np.abs, 0, 0),
    "sigmoid": ((-20, 20), lambda x: 1 / (1 + np.exp(-x)), 60 * 2 ** -23, 0),
    "maximum": ((-10, 10), None, 0, 0),
    "minimum": ((-10, 10), None, 0, 0),
    "where": ((-10, 10), None, 0, 0),
    "div": ((-10, 10), None, 3 * 2 ** -23, 0),
    "neg": ((-10, 10), np.negative, 0, 0),
}


@pytest.mark.parametrize("fn", list(_MATH))
def test_math(mode, fn):
    (lo, hi), ref_fn, rtol, atol = _MATH[fn]
    n = 777
    r = rng(len(fn))
    x = r.uniform(lo, hi, n).astype(np.float32)
    y = r.uniform(lo, hi, n).astype(np.float32)
    if fn == "div":
        y = np.where(np.abs(y) < 0.1, 0.5, y).astype(np.float32)
    y[:5] = x[:5]                                  # ties for max/min/where
    out = spvjit.zeros(n, np.float32)
    K(math_kernel, mode)[(spvjit.cdiv(n, 256),)](spvjit.tensor(x), spvjit.tensor(y), out, n, FN=fn, BLOCK=256)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    ref = {"maximum": lambda: np.maximum(x, y), "minimum": lambda: np.minimum(x, y),
           "where": lambda: np.where(x > y, x - y, y * np.float32(2)),
           "div": lambda: x64 / y64}.get(fn, lambda: ref_fn(x64))()
    np.testing.assert_allclose(out.numpy(), ref, rtol=rtol, atol=atol)


@spvjit.kernel
def pow_kernel(x_ptr, y_ptr, out_ptr, BLOCK: sl.constexpr):
    offs = sl.arange(0, BLOCK)
    x = sl.load(x_ptr + offs)
    y = sl.load(y_ptr + offs)
    sl.store(out_ptr + offs, x ** y)
    sl.store(out_ptr + BLOCK + offs, (x - 1) ** 2)          # the common case: a square


@pytest.mark.parametrize("dt", [np.float32, np.float16])
def test_pow(mode, dt):
    # C's pow, as numpy: negative bases with integer exponents are fine (GLSL's Pow alone is
    # undefined there: lavapipe gave NaN for (x - 1) ** 2 with x < 1), 0^-y = inf, x^0 = 1
    B = 64
    r = rng(19)
    x = r.uniform(-3, 3, B).astype(dt)
    y = r.integers(-3, 4, B).astype(dt)
    pos = x > 0
    y[pos] = r.uniform(-2, 2, pos.sum())                    # non-integer exponents of positive bases
    x[:6], y[:6] = [0, 0, 0, -2, -2, 2], [2, -1, 0, 3, 0, 0.5]
    out = spvjit.zeros(2 * B, dt)
    K(pow_kernel, mode)[(1,)](spvjit.tensor(x), spvjit.tensor(y), out, BLOCK=B)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    with np.errstate(divide="ignore"):
        ref = np.power(x64, y64)
    # Vulkan: pow inherits exp2(y * log2(x))'s precision: (3 + 2|y log2 x|) ulp <= ~15 ulp here;
    # f16 ulp is 2^-10, f32 2^-23
    ulp = 2.0 ** (-10 if dt == np.float16 else -23)
    got = out.numpy().astype(np.float64)
    np.testing.assert_allclose(got[:B], ref.astype(dt), rtol=16 * ulp, atol=0)
    np.testing.assert_allclose(got[B:], ((x - dt(1)).astype(np.float64)) ** 2, rtol=16 * ulp, atol=ulp)


@spvjit.kernel
def cdiv_kernel(x_ptr, out_ptr, d, BLOCK: sl.constexpr):
    offs = sl.arange(0, BLOCK)
    x = sl.load(x_ptr + offs)
    sl.store(out_ptr + offs, sl.cdiv(x, d))
    # cdiv of constexprs folds at compile time
    sl.store(out_ptr + BLOCK + offs, offs * 0 + sl.cdiv(BLOCK, 3))


def test_cdiv(mode):
    B = 64
    x = rng(9).integers(0, 10_000, B).astype(np.int32)      # non-negative: cdiv is for sizes
    out = spvjit.zeros(2 * B, np.int32)
    K(cdiv_kernel, mode)[(1,)](spvjit.tensor(x), out, 7, BLOCK=B)
    np.testing.assert_array_equal(out.numpy()[:B], -(-x // 7))
    np.testing.assert_array_equal(out.numpy()[B:], -(-B // 3))


# =====================================================================================
# integer arithmetic and bit operations
# =====================================================================================
@spvjit.kernel
def intdiv_kernel(a_ptr, b_ptr, q_ptr, r_ptr, BLOCK: sl.constexpr):
    offs = sl.arange(0, BLOCK)
    a = sl.load(a_ptr + offs)
    b = sl.load(b_ptr + offs)
    sl.store(q_ptr + offs, a // b)
    sl.store(r_ptr + offs, a % b)


@pytest.mark.parametrize("dt", [np.int32, np.uint32])
def test_integer_div_mod_truncate_like_c(mode, dt):
    # Inside kernels `//` and `%` on integers truncate toward zero like C (and Triton):
    # -7 // 2 == -3 and -7 % 2 == -1, where Python gives -4 and 1.
    B = 256
    r = rng(11)
    if dt == np.int32:
        a = r.integers(-10_000, 10_000, B).astype(dt)
        b = r.integers(-100, 100, B).astype(dt)
        a[:4], b[:4] = [-7, 7, -7, 7], [2, -2, -2, 2]
    else:
        a = r.integers(0, 1 << 32, B, dtype=np.uint64).astype(dt)
        b = r.integers(1, 1 << 16, B).astype(dt)
    b[b == 0] = 3                                     # division by zero is undefined on devices
    q, rem = spvjit.zeros(B, dt), spvjit.zeros(B, dt)
    K(intdiv_kernel, mode)[(1,)](spvjit.tensor(a), spvjit.tensor(b), q, rem, BLOCK=B)
    a64, b64 = a.astype(np.int64), b.astype(np.int64)
    ref_q = np.sign(a64) * np.sign(b64) * (np.abs(a64) // np.abs(b64))
    ref_r = a64 - b64 * ref_q
    np.testing.assert_array_equal(q.numpy(), ref_q.astype(dt))
    np.testing.assert_array_equal(rem.numpy(), ref_r.astype(dt))
    if dt == np.int32:
        assert list(q.numpy()[:4]) == [-3, -3, 3, 3] and list(rem.numpy()[:4]) == [-1, 1, -1, 1]


@spvjit.kernel
def bitops_kernel(a_ptr, b_ptr, s_ptr, out_ptr, BLOCK: sl.constexpr):
    offs = sl.arange(0, BLOCK)
    a = sl.load(a_ptr + offs)
    b = sl.load(b_ptr + offs)
    s = sl.load(s_ptr + offs)
    sl.store(out_ptr + 0 * BLOCK + offs, a & b)
    sl.store(out_ptr + 1 * BLOCK + offs, a | b)
    sl.store(out_ptr + 2 * BLOCK + offs, a ^ b)
    sl.store(out_ptr + 3 * BLOCK + offs, ~a)
    sl.store(out_ptr + 4 * BLOCK + offs, a << s)
    sl.store(out_ptr + 5 * BLOCK + offs, a >> s)
    sl.store(out_ptr + 6 * BLOCK + offs, (a >> 3) & 0xF)


@pytest.mark.parametrize("dt", [np.int32, np.uint32])
def test_bit_ops(mode, dt):
    B = 128
    r = rng(12)
    a = r.integers(0, 1 << 32, B, dtype=np.uint64).astype(np.uint32).view(dt)
    b = r.integers(0, 1 << 32, B, dtype=np.uint64).astype(np.uint32).view(dt)
    s = r.integers(0, 32, B).astype(dt)            # shifts by >= the bit width are undefined
    out = spvjit.zeros(7 * B, dt)
    K(bitops_kernel, mode)[(1,)](spvjit.tensor(a), spvjit.tensor(b), spvjit.tensor(s), out, BLOCK=B)
    got = out.numpy().reshape(7, B)
    # >> is arithmetic on int32 and logical on uint32, like numpy's right_shift
    refs = [a & b, a | b, a ^ b, ~a, np.left_shift(a, s), np.right_shift(a, s), (a >> dt(3)) & dt(0xF)]
    for i, ref in enumerate(refs):
        np.testing.assert_array_equal(got[i], ref.astype(dt), err_msg=f"op {i}")


# =====================================================================================
# control flow
# =====================================================================================
@spvjit.kernel
def loop_kernel(x_ptr, out_ptr, start, stop, step, BLOCK: sl.constexpr):
    offs = sl.arange(0, BLOCK)
    acc = sl.zeros((BLOCK,), sl.float32)
    count = 0
    last = -1
    for i in range(start, stop, step):
        acc += sl.load(x_ptr + i * BLOCK + offs)
        count += 1
        last = i
    sl.store(out_ptr + offs, acc)
    sl.store(out_ptr + BLOCK, count.to(sl.float32))
    sl.store(out_ptr + BLOCK + 1, last.to(sl.float32))


@pytest.mark.parametrize("start,stop,step", [(0, 5, 1), (1, 8, 3), (3, 3, 1), (7, 0, -2), (6, 2, 1)])
def test_range_loop_runtime_bounds(mode, start, stop, step):
    B, R = 32, 8
    x = rng(13).integers(-100, 100, (R, B)).astype(np.float32)
    out = spvjit.zeros(B + 2, np.float32)
    K(loop_kernel, mode)[(1,)](spvjit.tensor(x), out, start, stop, step, BLOCK=B)
    idx = list(range(start, stop, step))
    got = out.numpy()
    np.testing.assert_array_equal(got[:B], x[idx].sum(0) if idx else 0)   # small integers: exact
    assert got[B] == len(idx) and got[B + 1] == (idx[-1] if idx else -1)


@spvjit.kernel
def static_range_kernel(x_ptr, out_ptr, BLOCK: sl.constexpr, N: sl.constexpr):
    offs = sl.arange(0, BLOCK)
    acc = sl.zeros((BLOCK,), sl.int32)
    for i in sl.static_range(N):
        acc += sl.load(x_ptr + i * BLOCK + offs) * (i + 1)     # i is a Python int here
    for j in sl.static_range(1, 4, 2):
        acc += j
    sl.store(out_ptr + offs, acc)


def test_static_range(mode):
    B, N = 16, 5
    x = rng(14).integers(-100, 100, (N, B)).astype(np.int32)
    out = spvjit.zeros(B, np.int32)
    K(static_range_kernel, mode)[(1,)](spvjit.tensor(x), out, BLOCK=B, N=N)
    np.testing.assert_array_equal(out.numpy(), (x * np.arange(1, N + 1)[:, None]).sum(0) + 1 + 3)


@spvjit.kernel
def if_kernel(x_ptr, out_ptr, n, thr, BLOCK: sl.constexpr):
    pid = sl.program_id(0)
    offs = pid * BLOCK + sl.arange(0, BLOCK)
    mask = offs < n
    x = sl.load(x_ptr + offs, mask=mask, other=0.0)
    s = pid * 1.0
    if pid % 2 == 0:
        y = x * 2.0
        s = s + 100.0
    else:
        y = x - 1.0
    if pid > thr:                  # no else: z keeps its value in the other path
        y = y + 1000.0
    sl.store(out_ptr + offs, y + s, mask=mask)


def test_if_else_on_runtime_scalars(mode):
    n, B = 1000, 128
    x = rng(15).integers(-50, 50, n).astype(np.float32)
    out = spvjit.zeros(n, np.float32)
    thr = 4
    K(if_kernel, mode)[(spvjit.cdiv(n, B),)](spvjit.tensor(x), out, n, thr, BLOCK=B)
    pid = np.arange(n) // B
    ref = np.where(pid % 2 == 0, x * 2 + 100, x - 1) + pid + np.where(pid > thr, 1000, 0)
    np.testing.assert_array_equal(out.numpy(), ref.astype(np.float32))   # small integers in f32: exact


@spvjit.kernel
def early_return_kernel(out_ptr, n_active, BLOCK: sl.constexpr):
    pid = sl.program_id(0)
    offs = pid * BLOCK + sl.arange(0, BLOCK)
    if pid >= n_active:
        return
    sl.store(out_ptr + offs, offs + 1)
    if pid == 1:
        sl.store(out_ptr + offs, offs * 0 - 5)
        return
    sl.store(out_ptr + offs, offs + 2)


def test_early_return(mode):
    B, progs, active = 32, 6, 4
    out = spvjit.zeros(B * progs, np.int32)
    K(early_return_kernel, mode)[(progs,)](out, active, BLOCK=B)
    ref = np.arange(B * progs) + 2
    ref[B:2 * B] = -5
    ref[active * B:] = 0
    np.testing.assert_array_equal(out.numpy(), ref)


@spvjit.kernel
def _scale_shift(x, scale, SHIFT: sl.constexpr = 3):
    y = x * scale
    return y + SHIFT


@spvjit.kernel
def _two_results(x):
    return x + 1, x - 1


@spvjit.kernel
def helper_call_kernel(x_ptr, out_ptr, BLOCK: sl.constexpr):
    offs = sl.arange(0, BLOCK)
    x = sl.load(x_ptr + offs)
    a = _scale_shift(x, 2)
    b = _scale_shift(x, 3, SHIFT=10)
    p, m = _two_results(a)
    sl.store(out_ptr + offs, a + b + p * m)


def test_helper_kernel_inlined(mode):
    B = 64
    x = rng(16).integers(-100, 100, B).astype(np.int32)
    out = spvjit.zeros(B, np.int32)
    K(helper_call_kernel, mode)[(1,)](spvjit.tensor(x), out, BLOCK=B)
    a = x * 2 + 3
    np.testing.assert_array_equal(out.numpy(), a + (x * 3 + 10) + (a + 1) * (a - 1))


# =====================================================================================
# atomics
# =====================================================================================
@spvjit.kernel
def atomic_kernel(x_ptr, sum_ptr, max_ptr, n, NBINS: sl.constexpr, BLOCK: sl.constexpr):
    offs = sl.program_id(0) * BLOCK + sl.arange(0, BLOCK)
    mask = offs < n
    x = sl.load(x_ptr + offs, mask=mask, other=0)
    sl.atomic_add(sum_ptr + offs % NBINS, x, mask=mask)
    sl.atomic_max(max_ptr + offs % NBINS, x, mask=mask)


@pytest.mark.parametrize("dt", [np.float32, np.int32])
def test_atomics_many_programs(mode, dt):
    n, B, bins = 5000, 128, 4          # 40 programs x 128 lanes hitting 4 addresses
    r = rng(17)
    x = (r.standard_normal(n) * 100).astype(dt) if dt == np.float32 else r.integers(-1000, 1000, n).astype(dt)
    s = spvjit.zeros(bins, dt)
    init = -1e30 if dt == np.float32 else -(1 << 31)
    m = spvjit.tensor(np.full(bins, init, dt))
    K(atomic_kernel, mode)[(spvjit.cdiv(n, B),)](spvjit.tensor(x), s, m, n, NBINS=bins, BLOCK=B)
    ref_s = np.array([x[i::bins].astype(np.float64).sum() for i in range(bins)])
    ref_m = np.array([x[i::bins].max() for i in range(bins)])
    if dt == np.float32:
        # f32 sums of 1250 terms in an arbitrary order: |err| <= 1250 * 2^-24 * sum|x|
        for i in range(bins):
            assert abs(s.numpy()[i] - ref_s[i]) <= 1250 * 2 ** -24 * np.abs(x[i::bins]).sum()
    else:
        np.testing.assert_array_equal(s.numpy(), ref_s.astype(dt))
    np.testing.assert_array_equal(m.numpy(), ref_m)   # max is order-independent: exact


@spvjit.kernel
def atomic_scalar_kernel(ctr_ptr, old_ptr):
    old = sl.atomic_add(ctr_ptr, 1)      # one scalar atomic per program
    sl.store(old_ptr + sl.program_id(0), old)


def test_atomic_scalar_returns_old_values(mode):
    progs = 100
    ctr, old = spvjit.zeros(1, np.int32), spvjit.zeros(progs, np.int32)
    K(atomic_scalar_kernel, mode)[(progs,)](ctr, old)
    assert ctr.numpy()[0] == progs
    np.testing.assert_array_equal(np.sort(old.numpy()), np.arange(progs))   # each old value once


# =====================================================================================
# constexprs, grids, num_warps
# =====================================================================================
GLOBAL_SCALE = sl.constexpr(3)
GLOBAL_NAME = sl.constexpr("triple")


@spvjit.kernel
def constexpr_kernel(out_ptr, BLOCK: sl.constexpr = 32, OFFSET: sl.constexpr = 7, FLAG: sl.constexpr = False):
    offs = sl.arange(0, BLOCK)
    v = offs * GLOBAL_SCALE + OFFSET
    if GLOBAL_NAME == "triple" and FLAG:
        v = v * 0
    sl.store(out_ptr + offs, v)


def test_constexpr_defaults_and_globals(mode):
    out = spvjit.zeros(64, np.int32)
    K(constexpr_kernel, mode)[(1,)](out)
    np.testing.assert_array_equal(out.numpy()[:32], np.arange(32) * 3 + 7)
    np.testing.assert_array_equal(out.numpy()[32:], 0)
    K(constexpr_kernel, mode)[(1,)](out, BLOCK=64, OFFSET=-1)
    np.testing.assert_array_equal(out.numpy(), np.arange(64) * 3 - 1)
    K(constexpr_kernel, mode)[(1,)](out, FLAG=True)
    np.testing.assert_array_equal(out.numpy()[:32], 0)


_GLOBAL_MODULE = """
import spvjit, spvjit.language as sl
SCALE = sl.constexpr({value})

@spvjit.kernel
def k(o_ptr):
    sl.store(o_ptr, SCALE * 1)
"""


def test_editing_a_constexpr_global_recompiles(tmp_path):
    import subprocess
    import sys
    env = {**__import__("os").environ, "SPVJIT_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("SPVJIT_INTERPRET", None)
    run = ("import numpy as np, spvjit, gmod; o = spvjit.zeros(1, np.int32); gmod.k[(1,)](o); "
           "print(o.numpy()[0])")
    got = []
    for value in (3, 4):                  # two processes: the second finds the first's disk cache
        (tmp_path / "gmod.py").write_text(_GLOBAL_MODULE.format(value=value))
        p = subprocess.run([sys.executable, "-B", "-c", run], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        got.append(int(p.stdout.strip()))
    assert got == [3, 4]


@spvjit.kernel
def grid3_kernel(out_ptr):
    x, y, z = sl.program_id(0), sl.program_id(1), sl.program_id(2)
    nx, ny, nz = sl.num_programs(0), sl.num_programs(1), sl.num_programs(2)
    lin = (z * ny + y) * nx + x
    sl.store(out_ptr + lin * 4 + sl.arange(0, 4), sl.full((4,), 0, sl.int32) + x * 1_000_000 + y * 1000 + z)
    if lin == 0:
        sl.store(out_ptr + nx * ny * nz * 4 + sl.arange(0, 4),
                 sl.where(sl.arange(0, 4) == 0, nx, sl.where(sl.arange(0, 4) == 1, ny, nz)))


@pytest.mark.parametrize("grid", [(5,), (3, 4), (2, 3, 4)])
def test_grids_and_num_programs(mode, grid):
    g = grid + (1,) * (3 - len(grid))
    total = g[0] * g[1] * g[2]
    out = spvjit.zeros(total * 4 + 4, np.int32)
    K(grid3_kernel, mode)[grid](out)
    z, y, x = np.meshgrid(np.arange(g[2]), np.arange(g[1]), np.arange(g[0]), indexing="ij")
    ref = (x * 1_000_000 + y * 1000 + z).reshape(-1)
    got = out.numpy()
    np.testing.assert_array_equal(got[:-4].reshape(total, 4), np.repeat(ref[:, None], 4, 1))
    np.testing.assert_array_equal(got[-4:-1], g)


@spvjit.kernel
def pid_kernel(out_ptr, n):
    pid = sl.program_id(0)
    if pid < n:
        sl.store(out_ptr + pid, pid + sl.num_programs(0) * 0 + 1)


def test_grid_larger_than_max_workgroup_count():
    # device only: the launcher splits the grid into dispatches of at most
    # maxComputeWorkGroupCount programs with a program-id offset (the interpreter has no limit)
    limit = spvjit.get_device().caps.max_workgroup_count[0]
    progs = limit + 1000 if limit < 1 << 20 else 70_000
    out = spvjit.zeros(progs + 1, np.int32)
    pid_kernel[(progs,)](out, progs)
    got = out.numpy()
    np.testing.assert_array_equal(got[:progs], np.arange(1, progs + 1))
    assert got[progs] == 0


def test_grid_split_also_splits_num_programs(monkeypatch):
    # num_programs must report the whole grid, not one dispatch's part of it.  A small
    # simulated limit makes the split happen on every device (NVIDIA allows 2^31-1).
    dev = spvjit.get_device()
    monkeypatch.setattr(dev, "caps", dataclasses.replace(dev.caps, max_workgroup_count=(1000, 65535, 65535)))
    progs = 2 * 1000 + 5
    out = spvjit.zeros(1, np.int32)
    np_kernel[(progs,)](out)
    assert out.numpy()[0] == progs


def test_grid_beyond_int32_program_ids_is_refused():
    out = spvjit.zeros(1, np.int32)
    with pytest.raises(spvjit.LaunchError, match="32-bit"):
        np_kernel[(2**31,)](out)


@spvjit.kernel
def np_kernel(out_ptr):
    if sl.program_id(0) == sl.num_programs(0) - 1:
        sl.store(out_ptr, sl.num_programs(0))


@spvjit.kernel
def tiny_tile_kernel(x_ptr, o_ptr, BM: sl.constexpr, BN: sl.constexpr):
    rm = sl.arange(0, BM)
    rn = sl.arange(0, BN)
    x = sl.load(x_ptr + rm[:, None] * BN + rn[None, :])
    o = o_ptr
    sl.store(o + rn[:, None] * BM + rm[None, :], x.T)
    o += BM * BN
    sl.store(o + rn, sl.sum(x, axis=0))
    o += BN
    sl.store(o + rm, sl.max(x, axis=1))
    o += BM
    sl.store(o, sl.argmax(x, axis=None))
    sl.store(o + 1, sl.sum(sl.reshape(x, (BM * BN,)), axis=0))


@pytest.mark.parametrize("BM,BN", [(1, 1), (1, 2), (2, 1), (4, 2), (1, 8), (8, 1), (2, 16)])
def test_tiles_smaller_than_a_subgroup(mode, BM, BN):
    # fewer elements than lanes in a subgroup (8 on lavapipe): partial subgroups everywhere
    x = rng(BM * 10 + BN).integers(-9, 9, (BM, BN)).astype(np.int32)
    out = spvjit.zeros(BM * BN + BM + BN + 2, np.int32)
    K(tiny_tile_kernel, mode)[(1,)](spvjit.tensor(x), out, BM=BM, BN=BN)
    ref = np.concatenate([x.T.ravel(), x.sum(0), x.max(1), [x.argmax()], [x.sum()]])
    np.testing.assert_array_equal(out.numpy(), ref)


@spvjit.kernel
def warps_kernel(x_ptr, out_ptr, M, N, BM: sl.constexpr, BN: sl.constexpr):
    rm = sl.arange(0, BM)
    rn = sl.arange(0, BN)
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    x = sl.load(x_ptr + rm[:, None] * N + rn[None, :], mask=mask, other=0)
    rows = sl.sum(x, axis=1)                  # [BM]
    cols = sl.max(x, axis=0)                  # [BN]
    y = x.T                                   # [BN, BM]: moves data between lanes
    z = y + rows[None, :] - cols[:, None]
    sl.store(out_ptr + rn[:, None] * M + rm[None, :], z, mask=(rn[:, None] < N) & (rm[None, :] < M))
    sl.store(out_ptr + M * N + sl.arange(0, 1), sl.sum(sl.sum(x, axis=0), axis=0) + sl.zeros((1,), sl.int32))


@pytest.mark.parametrize("num_warps", [1, 2, 8])
def test_num_warps(mode, num_warps):
    M, N = 13, 29       # a [16, 32] tile: lavapipe's compile time grows fast with unrolled tiles
    x = rng(18).integers(-100, 100, (M, N)).astype(np.int32)
    out = spvjit.zeros(M * N + 1, np.int32)
    K(warps_kernel, mode)[(1,)](spvjit.tensor(x), out, M, N, BM=16, BN=32, num_warps=num_warps)
    ref = x.T + x.sum(1)[None, :] - x.max(0)[:, None]
    got = out.numpy()
    np.testing.assert_array_equal(got[:M * N].reshape(N, M), ref)
    assert got[M * N] == x.sum()


@spvjit.kernel
def scalar_args_kernel(out_ptr, i, f, u):
    sl.store(out_ptr + 0, i.to(sl.float32))
    sl.store(out_ptr + 1, f)
    sl.store(out_ptr + 2, f * i)
    sl.store(out_ptr + 3, (i // 7).to(sl.float32))
    sl.store(out_ptr + 4, u + 0.5)


def test_scalar_int_and_float_arguments(mode):
    out = spvjit.zeros(5, np.float32)
    K(scalar_args_kernel, mode)[(1,)](out, -123, 2.5, np.int32(8))
    # integer valued / exactly representable: exact
    np.testing.assert_array_equal(out.numpy(), [-123, 2.5, -307.5, -17, 8.5])


# =====================================================================================
# regressions found while writing these tests
# =====================================================================================
@spvjit.kernel
def pid_in_branch_kernel(out_ptr, n):
    # program_id / num_programs first used inside a branch, then again after it: the lowering
    # used to reuse the id computed inside the branch (invalid SPIR-V: no dominance)
    if n > 0:
        a = sl.program_id(0) + 1
    else:
        a = sl.num_programs(0) + 2
    for i in range(n):
        a += sl.num_programs(0)
    b = sl.program_id(0) * 10 + sl.num_programs(0)
    sl.store(out_ptr + sl.program_id(0), a + b)


@pytest.mark.parametrize("n", [0, 2])
def test_program_id_first_used_in_a_branch(mode, n):
    out = spvjit.zeros(3, np.int32)
    K(pid_in_branch_kernel, mode)[(3,)](out, n)
    pid = np.arange(3)
    a = pid + 1 + 3 * n if n > 0 else np.full(3, 5)
    np.testing.assert_array_equal(out.numpy(), a + pid * 10 + 3)


@spvjit.kernel
def bool_tensor_kernel(x_ptr, b_ptr, out_ptr, BLOCK: sl.constexpr):
    offs = sl.arange(0, BLOCK)
    x = sl.load(x_ptr + offs)
    sl.store(b_ptr + offs, x > 0)                      # i1 through a bool tensor (8-bit storage)
    b = sl.load(b_ptr + offs)
    sl.store(out_ptr + offs, b.to(sl.int32) + (~b).to(sl.int32) * 10 + (b & (x < 5)).to(sl.int32) * 100)


def test_bool_tensors(mode):
    B = 16
    x = np.arange(-4, 12, dtype=np.int32)
    b, out = spvjit.zeros(B, np.bool_), spvjit.zeros(B, np.int32)
    K(bool_tensor_kernel, mode)[(1,)](spvjit.tensor(x), b, out, BLOCK=B)
    np.testing.assert_array_equal(b.numpy(), x > 0)
    np.testing.assert_array_equal(out.numpy(), (x > 0) * 1 + (x <= 0) * 10 + ((x > 0) & (x < 5)) * 100)


@spvjit.kernel
def merge_numbers_kernel(out_ptr, n):
    # Python numbers merged by a runtime `if` promote like tensors: 1 and 2.5 give f32
    if n > 0:
        s = 1
    else:
        s = 2.5
    t = -7 // 2          # compile-time Python ints fold with Python's floor semantics (-4) ...
    u = (n * 0 - 7) // 2   # ... runtime integers truncate like C (-3)
    sl.store(out_ptr, s)
    sl.store(out_ptr + 1, (t * 10 + u).to(sl.float32))


@pytest.mark.parametrize("n", [0, 1])
def test_if_merges_python_numbers(mode, n):
    out = spvjit.zeros(2, np.float32)
    K(merge_numbers_kernel, mode)[(1,)](out, n)
    np.testing.assert_array_equal(out.numpy(), [1.0 if n > 0 else 2.5, -43])


@spvjit.kernel
def pid_yz_kernel(out_ptr):
    x, y, z = sl.program_id(0), sl.program_id(1), sl.program_id(2)
    lin = (z * sl.num_programs(1) + y) * sl.num_programs(0) + x
    sl.store(out_ptr + lin, lin + 1)


@pytest.mark.parametrize("axis", [1, 2])
def test_grid_split_in_y_and_z(axis):
    # device only (see test_grid_larger_than_max_workgroup_count)
    limit = spvjit.get_device().caps.max_workgroup_count[axis]
    if limit >= 1 << 20:
        pytest.skip("this device's grid limit is too large to exceed cheaply")
    grid = [2, 1, 1]
    grid[axis] = limit + 3
    total = grid[0] * grid[1] * grid[2]
    out = spvjit.zeros(total, np.int32)
    pid_yz_kernel[tuple(grid)](out)
    np.testing.assert_array_equal(out.numpy(), np.arange(1, total + 1))
