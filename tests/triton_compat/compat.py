"""Host glue for the Triton-compatibility suite: what Triton's tests do with torch, done with numpy.

The kernels in this folder are written in Triton's language exactly as a Triton user would
write them (`import spvjit as triton`, `import spvjit.language as tl`); only the host side
differs.  This module supplies that host side:

- dtype-name lists in Triton's spelling ('int8', 'float16', 'bfloat16', ...);
- `numpy_random` (random test data of a dtype, no NaN/inf, small exponents) and the
  `to_device` / `to_numpy` pair (numpy <-> spvjit tensor, bfloat16 kept as float32 host-side);
- `make_kernel`: a kernel from a source template with `GENERATE_TEST_HERE`-style
  placeholders replaced (Triton's tests patch kernel sources the same way);
- `triton_binary_dtype`: Triton's promotion rule for a binary op, written out independently
  of spvjit's semantic layer so that the tests check it;
- `gap(reason)`: a strict expected failure decided per parametrization (see below).
"""
from __future__ import annotations

import contextlib
import hashlib
import linecache
import textwrap

import numpy as np
import pytest

import spvjit
import spvjit.language as tl

# Triton's test_core.py lists, 64-bit types included
int_dtypes = ["int8", "int16", "int32", "int64"]
uint_dtypes = ["uint8", "uint16", "uint32", "uint64"]
integral_dtypes = int_dtypes + uint_dtypes
float_dtypes = ["float16", "float32", "float64"]
dtypes = integral_dtypes + float_dtypes
dtypes_with_bfloat16 = dtypes + ["bfloat16"]

TL = {"int8": tl.int8, "int16": tl.int16, "int32": tl.int32, "int64": tl.int64,
      "uint8": tl.uint8, "uint16": tl.uint16, "uint32": tl.uint32, "uint64": tl.uint64,
      "float16": tl.float16, "float32": tl.float32, "float64": tl.float64,
      "bfloat16": tl.bfloat16, "bool": tl.int1}


def bitwidth(dtype: str) -> int:
    return 1 if dtype == "bool" else int("".join(c for c in dtype if c.isdigit()))


def numpy_random(shape, dtype_str, rs: np.random.RandomState | None = None, low=None, high=None):
    """Random values of `dtype_str` (bfloat16 is returned as float32 holding bf16 values)."""
    rs = rs or np.random.RandomState(17)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if dtype_str == "bool":
        return rs.randint(0, 2, shape).astype(bool)
    if dtype_str in integral_dtypes:
        info = np.iinfo(getattr(np, dtype_str))
        low = info.min if low is None else max(low, info.min)
        high = info.max if high is None else min(high, info.max)
        x = rs.randint(low, high, shape, dtype=np.int64 if dtype_str != "uint64" else np.uint64)
        x[x == 0] = 1     # avoid zeros, as Triton's helper does (divisions)
        return x.astype(dtype_str)
    x = rs.normal(0, 1, shape).astype(np.float32)
    if dtype_str == "bfloat16":
        return (x.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
    return x.astype(dtype_str)


def to_device(x, dtype_str: str | None = None):
    if dtype_str == "bfloat16":
        return spvjit.tensor(np.asarray(x, np.float32), dtype=tl.bfloat16)
    x = np.asarray(x)
    if dtype_str is not None and dtype_str != "bool":
        x = x.astype(dtype_str)
    return spvjit.tensor(x)


def empty_device(shape, dtype_str: str):
    if dtype_str == "bfloat16":
        return spvjit.empty(shape, tl.bfloat16)
    return spvjit.empty(shape, np.dtype(dtype_str))


def to_numpy(t) -> np.ndarray:
    return t.numpy()


# ---- kernels from templates ------------------------------------------------------------------
_KERNELS: dict[str, object] = {}


def make_kernel(template: str, name: str = "kernel", **replace):
    """Compile a `@triton.jit` kernel from source text with placeholders replaced.

    The source is registered in linecache under a name derived from its hash, so spvjit's
    frontend (which reads kernel sources) and error messages see it like a file."""
    src = textwrap.dedent(template)
    for k, v in replace.items():
        src = src.replace(k, v)
    digest = hashlib.sha1(src.encode()).hexdigest()[:16]
    if digest in _KERNELS:
        return _KERNELS[digest]
    filename = f"<triton_compat {name} {digest}>"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    namespace = {"triton": spvjit, "tl": tl, "np": np}
    exec(compile(src, filename, "exec"), namespace)
    _KERNELS[digest] = namespace[name]
    return namespace[name]


def launch(kernel, mode: str):
    """The kernel in the requested mode: the device compiler, or the numpy interpreter."""
    return spvjit.interpret(kernel) if mode == "interpreter" else kernel


# ---- Triton's typing rules, written out for the references ----------------------------------
def triton_binary_dtype(a: str, b: str) -> str:
    """Element type of `a op b` for + - * in Triton (integer_promote / computation type)."""
    fa, fb = "float" in a, "float" in b
    if fa or fb:
        if fa and fb:
            if {a, b} == {"float16", "bfloat16"}:
                return "float32"
            return a if bitwidth(a) >= bitwidth(b) else b
        return a if fa else b
    if a == "bool":
        return b
    if b == "bool":
        return a
    ua, ub = a.startswith("u"), b.startswith("u")
    if ua == ub:
        return a if bitwidth(a) >= bitwidth(b) else b
    signed, unsigned = (b, a) if ua else (a, b)
    return signed if bitwidth(signed) > bitwidth(unsigned) else unsigned


# ---- strict expected failures decided at run time --------------------------------------------
@contextlib.contextmanager
def gap(reason: str | None):
    """`with gap(reason):` around a test body that is known to fail for `reason`.

    reason None: the body must pass.  Otherwise the body must fail (any exception), and the
    test reports xfail; if it passes, the test fails with XPASS(strict) so a fix shows up
    and the gap entry gets removed, as `xfail(strict=True)` would."""
    if reason is None:
        yield
        return
    try:
        yield
    except (Exception, pytest.fail.Exception) as e:  # noqa: BLE001 - any failure is the known one
        pytest.xfail(f"{reason} [{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}]")
    pytest.fail(f"XPASS(strict): known gap no longer fails, remove it: {reason}")
