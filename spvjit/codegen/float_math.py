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
"""
from __future__ import annotations

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
