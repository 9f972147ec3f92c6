"""`from triton.language.extra import libdevice`: libdevice's math names on spvjit.

Functions take float tiles (integers convert to float32) and return the same type.  Each maps
to a GLSL.std.450 instruction or to an exact construction in codegen/float_math.py; names
that have no implementation here are simply absent, so using one is a clear compile error.
"""
from __future__ import annotations

from ..core import _sem, float32
from ..builtins import (_math1, abs, ceil, cos, div_rn, erf, exp, exp2, fdiv, floor, fma, log, log2, maximum,
                        minimum, rsqrt, sigmoid, sin, sqrt, sqrt_rn, umulhi)


def _u(name):
    def f(x):
        return _math1(name, x)
    f.__name__ = name
    f.__qualname__ = name
    return f


tanh, tan, asin, acos, atan = _u("tanh"), _u("tan"), _u("asin"), _u("acos"), _u("atan")
sinh, cosh, asinh, acosh, atanh = _u("sinh"), _u("cosh"), _u("asinh"), _u("acosh"), _u("atanh")
trunc, rint, round, nearbyint = _u("trunc"), _u("rint"), _u("round"), _u("rint")


def fabs(x): return abs(x)
def fmin(x, y): return minimum(x, y)
def fmax(x, y): return maximum(x, y)
def fmod(x, y):
    x = _sem().to_tensor(x)
    return _sem().binary("mod", x if x.dtype.is_float else _sem().cast(x, float32), y)
def pow(x, y): return _sem().binary("pow", x, y)
def atan2(y, x): return _sem().binary("atan2", y, x)
def exp10(x): return exp(_sem().binary("mul", x, 2.302585092994046))
def log10(x): return _sem().binary("mul", log2(x), 0.30102999566398120)
def fast_expf(x): return exp(x)
def fast_dividef(x, y): return fdiv(x, y)
def fast_logf(x): return log(x)
def isnan(x): return _sem().compare("ne", x, x)
def isinf(x): return _sem().compare("eq", abs(x), float("inf"))
def isfinited(x): return _sem().compare("lt", abs(x), float("inf"))


finitef = isfinited
__all__ = [n for n in dir() if not n.startswith("_") and n != "annotations"]
