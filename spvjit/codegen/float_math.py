"""Float functions that GLSL.std.450 lacks or leaves imprecise, built from exact steps.

- fmod: C's fmod (Triton's float `%`).  OpFRem is `x - y * trunc(x / y)` to the driver, which
  is wrong whenever x / y rounds (1e30 % 3) and NaN for y = inf.  Here the remainder is reduced
  by the largest `|y| * 2^k` not above it, one binade per step: each subtraction is exact
  (Sterbenz: e <= r < 2e), so the result is the exact remainder, as numpy's fmod.
- erf: erf(x) = x * P(x^2) for |x| <= 1 and 1 - exp(-x^2) * Q(|x|) for 1 < |x| < 4 (1 beyond,
  where erf rounds to 1 in float32).  P (degree 6 in x^2) and Q (degree 12 in u = (|x| - 2.5) / 1.5)
  are Chebyshev least-squares fits of erf(x)/x and erfc(x)*exp(x^2), converted to monomials;
  evaluated in float32 by Horner they stay within 1.5 ulp (|x| <= 1) and 1.1 * 2^-24 absolute
  (beyond) of the true erf, measured on 200k points each.
- round: halfway cases away from zero (libdevice's round; GLSL Round may pick either way).
- f64 -> f16/bf16 and 32/64-bit int -> bf16: through f32 rounded to odd, so the two roundings
  give the single one.
"""
from __future__ import annotations

from ..ir import types as T

_ERF_SMALL = [1.128379164208717, -0.3761262254300207, 0.112835680359479, -0.026853539399409286,
              0.0051883826511368684, -0.0008014566121073551, 7.878989515887519e-05]
_ERFC_SCALED = [0.21080636420966653, -0.11152100907205674, 0.0561104779908974, -0.027005626170509694,
                0.01248963348340581, -0.005567950218921875, 0.002402030399501672, -0.0010155697862451114,
                0.0004138196774310714, -0.00014562891045158058, 5.5606107163712484e-05,
                -3.6271104151954265e-05, 1.3584280600433731e-05]


def _horner(em, rt, coeffs, t):
    c = lambda v: em.b.const(rt, v)   # noqa: E731
    acc = c(coeffs[-1])
    for k in reversed(coeffs[:-1]):
        acc = em.ext(rt, "Fma", acc, t, c(k))
    return acc


def erf(em, rt, x):
    c = lambda v: em.b.const(rt, v)   # noqa: E731
    ax = em.ext(rt, "FAbs", x)
    small = em.op("OpFMul", rt, x, _horner(em, rt, _ERF_SMALL, em.op("OpFMul", rt, x, x)))
    u = em.op("OpFMul", rt, em.op("OpFSub", rt, ax, c(2.5)), c(1 / 1.5))
    tail = em.op("OpFMul", rt, em.ext(rt, "Exp", em.op("OpFNegate", rt, em.op("OpFMul", rt, ax, ax))),
                 _horner(em, rt, _ERFC_SCALED, u))
    big = em.op("OpFSub", rt, c(1.0), tail)
    big = em.select(rt, em.op("OpFOrdGreaterThanEqual", em.bool, ax, c(4.0)), c(1.0), big)
    big = em.select(rt, em.op("OpFOrdLessThan", em.bool, x, c(0.0)), em.op("OpFNegate", rt, big), big)
    return em.select(rt, em.op("OpFOrdLessThanEqual", em.bool, ax, c(1.0)), small, big)


def round_half_away(em, rt, x):
    c = lambda v: em.b.const(rt, v)   # noqa: E731
    t = em.ext(rt, "Trunc", x)
    frac = em.ext(rt, "FAbs", em.op("OpFSub", rt, x, t))          # exact
    away = em.op("OpFAdd", rt, t, em.ext(rt, "FSign", x))
    return em.select(rt, em.op("OpFOrdGreaterThanEqual", em.bool, frac, c(0.5)), away, t)


def fmod(em, rt, dt, x, y):
    """Exact C fmod of x and y (float registers of type rt)."""
    c = lambda v: em.b.const(rt, v)   # noqa: E731
    b = em.b
    ax, ay = em.ext(rt, "FAbs", x), em.ext(rt, "FAbs", y)
    inf = c(float("inf"))
    # the loop runs only for finite x and finite nonzero y (ordered compares are false on NaN)
    finite = em.land(em.op("OpFOrdLessThan", em.bool, ax, inf),
                     em.land(em.op("OpFOrdGreaterThan", em.bool, ay, c(0.0)),
                             em.op("OpFOrdLessThan", em.bool, ay, inf)))
    r_var = em.local_var(rt, ax)
    frexp_t = b.type_struct([rt, em.i32])
    _, ey = _frexp(em, frexp_t, rt, ay)
    header, body, cont, merge = (b.new_id() for _ in range(4))
    em.op("OpBranch", None, header)
    b.label(header)
    r = em.load_var(rt, r_var)
    go = em.land(finite, em.op("OpFOrdGreaterThanEqual", em.bool, r, ay))
    em.op("OpLoopMerge", None, merge, cont, 0)
    em.op("OpBranchConditional", None, go, body, merge)
    b.label(body)
    _, er = _frexp(em, frexp_t, rt, r)
    e = em.ext(rt, "Ldexp", ay, em.op("OpISub", em.i32, er, ey))          # |y| * 2^k, same binade as r
    e = em.select(rt, em.op("OpFOrdGreaterThan", em.bool, e, r), em.op("OpFMul", rt, e, c(0.5)), e)
    em.store_var(r_var, em.op("OpFSub", rt, r, e))                        # exact: e <= r < 2e
    em.op("OpBranch", None, cont)
    b.label(cont)
    em.op("OpBranch", None, header)
    b.label(merge)
    r = em.load_var(rt, r_var)
    # the sign of x, also for a zero remainder (fmod(-4, 2) is -0.0)
    if dt.bits == 32:
        u = em.u32
        sign = em.op("OpBitwiseAnd", u, em.op("OpBitcast", u, x), em.cu(0x80000000))
        res = em.op("OpBitcast", rt, em.op("OpBitwiseOr", u, em.op("OpBitcast", u, r), sign))
    else:
        res = em.select(rt, em.op("OpFOrdLessThan", em.bool, x, c(0.0)), em.op("OpFNegate", rt, r), r)
    nan_case = em.op("OpLogicalOr", em.bool,
                     em.op("OpLogicalNot", em.bool, em.op("OpFOrdLessThan", em.bool, ax, inf)),
                     em.op("OpLogicalOr", em.bool, em.op("OpIsNan", em.bool, y),
                           em.op("OpFOrdEqual", em.bool, ay, c(0.0))))
    return em.select(rt, nan_case, c(float("nan")), res)


def _frexp(em, struct_t, rt, v):
    s = em.ext(struct_t, "FrexpStruct", v)
    return em.op("OpCompositeExtract", rt, s, 0), em.op("OpCompositeExtract", em.i32, s, 1)


def f64_to_f32_odd(em, x):
    """float64 -> float32 rounded to odd: an inexact result gets an odd last mantissa bit.
    Rounding that to a narrower float (f16, bf16) then equals rounding x directly, where
    f64 -> f32 -> f16 rounded twice (x just above an f16 halfway point fell onto it, then went
    to even).  Works whichever f32 neighbour of x the driver's OpFConvert returns."""
    f32, f64 = em.f32, em.type_of(T.f64)
    r = em.op("OpFConvert", f32, x)
    back = em.op("OpFConvert", f64, r)
    # both exact (Emitter.exact): Mesa 26.1's lavapipe otherwise folded f64(f32(x)) into x, so
    # every inexact x looked exact (2070 of 18432 f64 -> f16 conversions of test_wide_types
    # were one ulp off there)
    em.exact(r)
    em.exact(back)
    inexact = em.op("OpFOrdNotEqual", em.bool, back, x)            # false for NaN
    away = em.op("OpFOrdGreaterThan", em.bool, em.ext(f64, "FAbs", x), em.ext(f64, "FAbs", back))
    return _to_odd(em, r, inexact, away)


def int_to_f32_odd(em, x, src):
    """A 32- or 64-bit integer -> float32 rounded to odd (see f64_to_f32_odd), for conversions
    to bfloat16: through a float32 rounded to nearest, 2^31 + 2^23 + 1 became a bf16 tie and
    went to even.  The f32 result converts back exactly, except past the type's range (it
    rounded up to 2^bits or 2^(bits-1)), where x is below it by construction."""
    f32, st, signed = em.f32, em.type_of(src), src.is_signed
    r = em.op("OpConvertSToF" if signed else "OpConvertUToF", f32, x)
    over = em.op("OpFOrdGreaterThanEqual", em.bool, r, em.b.const(f32, 2.0 ** (src.bits - signed)))
    back = em.op("OpConvertFToS" if signed else "OpConvertFToU", st,
                 em.select(f32, over, em.b.const(f32, 0.0), r))
    inexact = em.op("OpLogicalOr", em.bool, over, em.op("OpINotEqual", em.bool, back, x))
    if signed:   # |x| > |back|: x and back share a sign
        pos = em.op("OpSGreaterThan", em.bool, x, em.const(src, 0))
        away = em.select(em.bool, pos, em.op("OpSGreaterThan", em.bool, x, back),
                         em.op("OpSLessThan", em.bool, x, back))
    else:
        away = em.op("OpUGreaterThan", em.bool, x, back)
    away = em.land(away, em.op("OpLogicalNot", em.bool, over))
    return _to_odd(em, r, inexact, away)


def _to_odd(em, r, inexact, away):
    """r (a float32 neighbour of the exact value) with an odd last bit where it is inexact:
    an even r moves one ulp towards the exact value (`away`: whose magnitude is larger)."""
    u32 = em.u32
    bits = em.op("OpBitcast", u32, r)
    even = em.op("OpIEqual", em.bool, em.op("OpBitwiseAnd", u32, bits, em.cu(1)), em.cu(0))
    moved = em.select(u32, away, em.op("OpIAdd", u32, bits, em.cu(1)), em.op("OpISub", u32, bits, em.cu(1)))
    return em.op("OpBitcast", em.f32, em.select(u32, em.land(inexact, even), moved, bits))


def f32_to_f16(em, x):
    """float32 -> float16 rounded to nearest even, whatever rounding the driver's OpFConvert
    uses (Vulkan lets it truncate, and lavapipe does: 1 + 2^-11 + 2^-20 became 1.0).

    The driver's result h is one of the two f16 neighbours of x; the other one is h moved by
    one f16 ulp towards x.  Both differences to x are exact in f32 (Sterbenz), so the nearer
    one, or on a tie the one with an even last mantissa bit, is the correctly rounded value.
    |x| >= 65520 (half an ulp past the largest f16) gives infinity; NaN stays NaN."""
    f32, f16 = em.f32, em.type_of_f16()
    c = lambda v: em.b.const(f32, v)   # noqa: E731
    h32 = em.op("OpFConvert", f32, em.op("OpFConvert", f16, x))
    ax, ab = em.ext(f32, "FAbs", x), em.ext(f32, "FAbs", h32)
    frexp_t = em.b.type_struct([f32, em.i32])
    s = em.ext(frexp_t, "FrexpStruct", ab)
    m, e = em.op("OpCompositeExtract", f32, s, 0), em.op("OpCompositeExtract", em.i32, s, 1)
    ulp_up = em.ext(f32, "FMax", em.ext(f32, "Ldexp", c(1.0), em.op("OpISub", em.i32, e, em.ci(11))), c(2.0 ** -24))
    up = em.op("OpFOrdGreaterThan", em.bool, ax, ab)
    # below a power of two the spacing halves (never under the subnormal spacing 2^-24)
    at_pow2 = em.op("OpFOrdEqual", em.bool, m, c(0.5))
    ulp_down = em.select(f32, at_pow2, em.ext(f32, "FMax", em.op("OpFMul", f32, ulp_up, c(0.5)), c(2.0 ** -24)), ulp_up)
    other = em.select(f32, up, em.op("OpFAdd", f32, ab, ulp_up), em.op("OpFSub", f32, ab, ulp_down))
    d_h = em.op("OpFSub", f32, em.ext(f32, "FMax", ax, ab), em.ext(f32, "FMin", ax, ab))
    d_o = em.op("OpFSub", f32, em.ext(f32, "FMax", ax, other), em.ext(f32, "FMin", ax, other))
    # h's last mantissa bit: h / ulp(h) is an integer; it is even when half of it is too
    k_half = em.op("OpFMul", f32, em.op("OpFDiv", f32, ab, ulp_up), c(0.5))
    h_even = em.op("OpFOrdEqual", em.bool, em.ext(f32, "Fract", k_half), c(0.0))
    pick_other = em.op("OpLogicalOr", em.bool, em.op("OpFOrdLessThan", em.bool, d_o, d_h),
                       em.land(em.op("OpFOrdEqual", em.bool, d_o, d_h), em.op("OpLogicalNot", em.bool, h_even)))
    exact = em.op("OpFOrdEqual", em.bool, ax, ab)
    mag = em.select(f32, em.land(pick_other, em.op("OpLogicalNot", em.bool, exact)), other, ab)
    mag = em.select(f32, em.op("OpFOrdGreaterThanEqual", em.bool, ax, c(65520.0)), c(float("inf")), mag)
    # x's sign bit onto the magnitude (a compare would turn -0.0 into +0.0)
    u32 = em.u32
    sign = em.op("OpBitwiseAnd", u32, em.op("OpBitcast", u32, x), em.cu(0x80000000))
    signed = em.op("OpBitcast", f32, em.op("OpBitwiseOr", u32, em.op("OpBitcast", u32, mag), sign))
    signed = em.select(f32, em.op("OpIsNan", em.bool, x), x, signed)
    return em.op("OpFConvert", f16, signed)
