"""`tl.math`: Triton's math module (element-wise functions of float tiles).

Each name has the meaning of its Triton namesake; results are computed in the argument's
float type (integers are converted to float32 first).
"""
from __future__ import annotations

from .builtins import (abs, ceil, cos, div_rn, erf, exp, exp2, fdiv, floor, fma, log, log2, rsqrt,
                       sin, sqrt, sqrt_rn, umulhi)

__all__ = ["abs", "ceil", "cos", "div_rn", "erf", "exp", "exp2", "fdiv", "floor", "fma", "log", "log2",
           "rsqrt", "sin", "sqrt", "sqrt_rn", "umulhi"]
