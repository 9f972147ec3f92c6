"""The kernel language: `import spvjit.language as sl` (or `as tl`, for Triton code)."""
from .core import (bfloat16, constexpr, dtype, float16, float32, float64, int1, int8, int16,
                   int32, int64, pointer_type, tensor, uint8, uint16, uint32, uint64)
from .builtins import (abs, arange, argmax, argmin, atomic_add, atomic_max, atomic_min,
                       atomic_xchg, broadcast_to, cast, cdiv, ceil, clamp, cos, div_rn, dot, erf,
                       exp, exp2, fdiv, fma, sqrt_rn, umulhi,
                       expand_dims, floor, full, load, log, log2, max, max_contiguous, maximum,
                       min, minimum, multiple_of, num_programs, program_id, range, reshape,
                       rsqrt, sigmoid, sin, sqrt, static_assert, static_range, store, sum,
                       trans, where, zeros, zeros_like, permute, view,
                       cumsum, cumprod, debug_barrier, device_assert, device_print, static_print,
                       flip, join, split, cat, interleave, associative_scan, reduce, sort,
                       make_block_ptr, advance, assume)
from . import math, extra  # noqa: E402  (tl.math.*, tl.extra.libdevice.*)
from .random import (pair_uniform_to_normal, philox, philox_impl, rand, rand4x, randint,  # noqa: E402
                     randint4x, randn, randn4x, uint_to_uniform_float)
from . import builtins as _builtins  # noqa: E402
from .core import bind_method_modules as _bind  # noqa: E402

_bind(_builtins, math)
