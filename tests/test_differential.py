"""Differential tests: random kernels on lavapipe vs the numpy interpreter vs numpy.

Hypothesis draws expression trees (elementwise ops, broadcasts of a row, a column
and a scalar), shapes (rank 1 or 2, sizes 1..300, so tails are masked) and dtypes
(f32, f16, i32), and random reductions.  Kernels must live in a file (the frontend
reads their source), so each drawn kernel is written as Python source into a temp
module and imported; a kernel compiles once per distinct source.

Inputs are chosen so nothing is undefined: divisors are |b| + 1, shift amounts
are masked to 0..7, exp/sin/cos arguments are clamped, sqrt takes |a| + 1, int32
arithmetic wraps (two's complement on both sides), and f16 trees whose values
could overflow are rejected before compiling.  Integers must match exactly;
floats must lie within a forward error bound propagated through the tree (see
`_eval`), which also covers an fma-fusing device and Vulkan's ulp allowances.
"""
from __future__ import annotations

import atexit
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import spvjit
import spvjit.language as sl

_DIR = Path(tempfile.mkdtemp(prefix="spvjit_diff_"))
atexit.register(shutil.rmtree, _DIR, True)
_MODULES: dict[str, object] = {}

# 50 examples per test keep this file near 20 s on a 2-core machine; SPVJIT_DIFF_EXAMPLES=500 digs deeper
SETTINGS = settings(max_examples=spvjit.knobs.get("SPVJIT_DIFF_EXAMPLES"), deadline=None, print_blob=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# name: (numpy dtype of the tensors, kernel dtype).  There are no bf16 tensors (numpy has no
# bf16), so bf16 kernels load f32 tensors holding bf16 values, compute in bf16, store f32.
DTYPES = {"f32": (np.float32, sl.float32), "f16": (np.float16, sl.float16), "i32": (np.int32, sl.int32),
          "bf16": (np.float32, sl.bfloat16)}
UNIT = {"f32": 2.0 ** -24, "f16": 2.0 ** -11, "bf16": 2.0 ** -9}          # unit roundoff
# Vulkan: absolute sin/cos error on [-pi, pi] (bf16: f32's, then rounding a value <= 1 to bf16)
TRIG_ABS = {"f32": 2.0 ** -11, "f16": 2.0 ** -7, "bf16": 2.0 ** -8}
TINY = {"f32": 2.0 ** -126, "f16": 2.0 ** -14, "bf16": 2.0 ** -126}     # smallest normal: denormals may flush


def _bf16(x):
    """f32 values rounded to the nearest bf16 (ties to even), still f32."""
    bits = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(np.float32)


def load_kernel(source: str, name: str = "kernel"):
    """Import `source` (a module defining @spvjit.kernel `name`) from a file; cached by text."""
    key = hashlib.sha1(source.encode()).hexdigest()[:16]
    if key not in _MODULES:
        path = _DIR / f"k_{key}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(f"spvjit_diff_{key}", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        _MODULES[key] = mod
    return getattr(_MODULES[key], name)


# =====================================================================================
# elementwise expression trees
# =====================================================================================
FLOAT_BIN = ["add", "sub", "mul", "div", "max", "min"]
FLOAT_UN = ["neg", "abs", "exp", "sin", "cos", "sqrt", "cube"]
INT_BIN = ["add", "sub", "mul", "div", "mod", "and", "or", "xor", "shl", "shr", "max", "min"]
INT_UN = ["neg", "abs", "not"]


@st.composite
def trees(draw, dt: str, leaves: list[str], depth: int = 4):
    """A random expression: ("leaf", name) | ("const", v) | ("bin", op, a, b) | ("un", op, a)
    | ("where", leaf, leaf, a, b); about 3/4 of the leaves are runtime values."""
    if depth == 0 or draw(st.integers(0, 5)) == 0:
        if draw(st.integers(0, 3)) == 0:
            v = draw(st.integers(-100, 100)) if dt == "i32" else draw(st.integers(-16, 16)) / 4   # exact in f16/bf16
            return ("const", v)
        return ("leaf", draw(st.sampled_from(leaves)))
    fbin, fun = (FLOAT_BIN, FLOAT_UN) if dt != "i32" else (INT_BIN, INT_UN)
    kind = draw(st.sampled_from(["bin", "bin", "bin", "un", "where"]))
    sub = trees(dt, leaves, depth - 1)
    if kind == "bin":
        return ("bin", draw(st.sampled_from(fbin)), draw(sub), draw(sub))
    if kind == "un":
        return ("un", draw(st.sampled_from(fun)), draw(sub))
    return ("where", draw(st.sampled_from(leaves)), draw(st.sampled_from(leaves)), draw(sub), draw(sub))


def render(t, dt: str) -> str:
    """Kernel source of tree `t`; integer trees spell division `//` (C truncation), floats `/`."""
    kind = t[0]
    if kind == "leaf":
        return t[1]
    if kind == "const":           # a scalar tensor of the tree's dtype: no Python folding
        return f"sl.full((), {t[1]!r}, DT)"
    if kind == "where":
        return f"sl.where({t[1]} > {t[2]}, {render(t[3], dt)}, {render(t[4], dt)})"
    if kind == "un":
        a = render(t[2], dt)
        # math functions take float32 (Triton refuses 16-bit floats): widen, then round back once
        w, n = (".to(sl.float32)", ".to(DT)") if dt in ("f16", "bf16") else ("", "")
        return {"neg": f"(-{a})", "abs": f"sl.abs({a})", "not": f"(~{a})",
                "exp": f"sl.exp(sl.minimum(sl.maximum({a}, -4.0), 4.0){w}){n}",
                "sin": f"sl.sin(sl.minimum(sl.maximum({a}, -3.0), 3.0){w}){n}",
                "cos": f"sl.cos(sl.minimum(sl.maximum({a}, -3.0), 3.0){w}){n}",
                "sqrt": f"sl.sqrt((sl.abs({a}) + 1.0){w}){n}", "cube": f"({a} ** 3)"}[t[1]]
    op, a, b = t[1], render(t[2], dt), render(t[3], dt)
    div = "//" if dt == "i32" else "/"
    return {"add": f"({a} + {b})", "sub": f"({a} - {b})", "mul": f"({a} * {b})",
            "div": f"({a} {div} (sl.abs({b}) + 1))", "mod": f"({a} % (sl.abs({b}) + 1))",
            "and": f"({a} & {b})", "or": f"({a} | {b})", "xor": f"({a} ^ {b})",
            "shl": f"({a} << ({b} & 7))", "shr": f"({a} >> ({b} & 7))",
            "max": f"sl.maximum({a}, {b})", "min": f"sl.minimum({a}, {b})"}[op]


def _eval(t, env, dt):
    """numpy reference: (value, error bound, largest |intermediate|) in float64 for floats;
    (value, 0, 0) in wrapping int32 for integers."""
    kind = t[0]
    if kind == "leaf":
        v = env[t[1]]
        return v, np.zeros(np.shape(v)), np.max(np.abs(v), initial=0.0) if dt != "i32" else 0
    if kind == "const":
        return (np.int32(t[1]) if dt == "i32" else np.float64(t[1])), 0.0, abs(t[1])
    if dt == "i32":
        return _eval_int(t, env), 0, 0
    u, tiny = UNIT[dt], TINY[dt]       # each rounding: relative u, or absolute tiny near zero
    if kind == "where":
        (a, ea, ma), (b, eb, mb) = _eval(t[3], env, dt), _eval(t[4], env, dt)
        c = env[t[1]] > env[t[2]]                      # leaves: exact on every side
        return np.where(c, a, b), np.where(c, ea, eb), max(ma, mb)
    if kind == "un":
        a, ea, ma = _eval(t[2], env, dt)
        op = t[1]
        if op == "neg":
            return -a, ea, ma
        if op == "abs":
            return np.abs(a), ea, ma
        if op == "exp":      # Vulkan: 3 + 2|x| ulp, |x| <= 4 -> 11 ulp = 22 u
            x = np.clip(a, -4, 4)
            v = np.exp(x)
            return v, v * np.expm1(ea) + 24 * u * v + tiny, max(ma, np.max(v, initial=0))
        if op == "cube":     # a ** 3 (pow of a negative base, too): Vulkan's pow inherits
            v = a ** 3       # exp2(y * log2(x)): (3 + 2|3 log2|a||) ulp, 1 ulp = 2u
            ulps = 3 + 6 * np.abs(np.log2(np.maximum(np.abs(a), 2.0 ** -20)))
            aa = np.abs(a) + ea
            e = aa ** 3 - np.abs(a) ** 3 + 2 * ulps * u * np.abs(v) + tiny
            return v, e, max(ma, np.max(np.abs(v), initial=0))
        if op in ("sin", "cos"):
            x = np.clip(a, -3, 3)
            return (np.sin(x) if op == "sin" else np.cos(x)), ea + TRIG_ABS[dt], max(ma, 1)
        # sqrt(|a| + 1): the add rounds, then sqrt (a few ulp on devices)
        w = np.abs(a) + 1
        ew = ea + u * w
        v = np.sqrt(w)
        return v, ew / (2 * np.sqrt(np.maximum(w - ew, 0.25))) + 8 * u * v + tiny, max(ma, np.max(w, initial=0))
    op = t[1]
    (a, ea, ma), (b, eb, mb) = _eval(t[2], env, dt), _eval(t[3], env, dt)
    m = max(ma, mb)
    if op in ("add", "sub"):
        v = a + b if op == "add" else a - b
        return v, ea + eb + u * (np.abs(a) + np.abs(b)) + tiny, max(m, np.max(np.abs(v), initial=0))
    if op == "mul":
        v = a * b
        e = np.abs(a) * eb + np.abs(b) * ea + ea * eb + u * (np.abs(a) + ea) * (np.abs(b) + eb) + tiny
        return v, e, max(m, np.max(np.abs(v), initial=0))
    if op == "div":          # a / (|b| + 1); Vulkan allows 2.5 ulp for a divide
        den = np.abs(b) + 1
        eden = eb + u * den
        q = a / den
        e = (ea + np.abs(q) * eden) / np.maximum(den - eden, 0.5) + 6 * u * np.abs(q) + tiny
        return q, e, max(m, np.max(den, initial=0))
    v = np.maximum(a, b) if op == "max" else np.minimum(a, b)
    return v, np.maximum(ea, eb), m


def _eval_int(t, env):
    kind = t[0]
    if kind == "leaf":
        return env[t[1]]
    if kind == "const":
        return np.int32(t[1])
    if kind == "where":
        return np.where(env[t[1]] > env[t[2]], _eval_int(t[3], env), _eval_int(t[4], env)).astype(np.int32)
    if kind == "un":
        a = _eval_int(t[2], env)
        return {"neg": lambda: -a, "abs": lambda: np.abs(a), "not": lambda: ~a}[t[1]]().astype(np.int32)
    a, b = _eval_int(t[2], env), _eval_int(t[3], env)
    op = t[1]
    if op in ("div", "mod"):
        den = (np.abs(b) + np.int32(1)).astype(np.int64)        # never 0 (|INT_MIN| + 1 wraps to -2^31 + 1)
        a64 = np.asarray(a, np.int64)
        q = np.sign(a64) * np.sign(den) * (np.abs(a64) // np.abs(den))   # truncation toward zero, like C
        r = q if op == "div" else a64 - den * q
        return r.astype(np.int32)
    if op in ("shl", "shr"):
        s = (b & np.int32(7)).astype(np.int32)
        return (np.left_shift(a, s) if op == "shl" else np.right_shift(a, s)).astype(np.int32)
    return {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b, "and": lambda: a & b,
            "or": lambda: a | b, "xor": lambda: a ^ b, "max": lambda: np.maximum(a, b),
            "min": lambda: np.minimum(a, b)}[op]().astype(np.int32)


_ELEMENTWISE_1D = '''\
import spvjit
import spvjit.language as sl


@spvjit.kernel
def kernel(x_ptr, y_ptr, s, out_ptr, N, DT: sl.constexpr, ODT: sl.constexpr, BLOCK: sl.constexpr):
    offs = sl.program_id(0) * BLOCK + sl.arange(0, BLOCK)
    mask = offs < N
    x = sl.load(x_ptr + offs, mask=mask, other=1).to(DT)
    y = sl.load(y_ptr + offs, mask=mask, other=1).to(DT)
    sv = s.to(DT)
    out = {expr}
    sl.store(out_ptr + offs, out.to(ODT), mask=mask)
'''

_ELEMENTWISE_2D = '''\
import spvjit
import spvjit.language as sl


@spvjit.kernel
def kernel(x_ptr, y_ptr, r_ptr, c_ptr, s, out_ptr, M, N, DT: sl.constexpr, ODT: sl.constexpr,
           BM: sl.constexpr, BN: sl.constexpr):
    rm = sl.program_id(0) * BM + sl.arange(0, BM)
    rn = sl.program_id(1) * BN + sl.arange(0, BN)
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    offs = rm[:, None] * N + rn[None, :]
    x = sl.load(x_ptr + offs, mask=mask, other=1).to(DT)
    y = sl.load(y_ptr + offs, mask=mask, other=1).to(DT)
    {row}.to(DT)
    {col}.to(DT)
    sv = s.to(DT)
    out = {expr}
    sl.store(out_ptr + offs, out.to(ODT), mask=mask)
'''
# a row [1, BN] and a column [BM, 1], broadcast by the binary ops; written in several ways
_ROWS = ["row = sl.load(r_ptr + rn, mask=rn < N, other=1)[None, :]",
         "row = sl.expand_dims(sl.load(r_ptr + rn, mask=rn < N, other=1), 0)",
         "row = sl.broadcast_to(sl.load(r_ptr + rn[None, :], mask=rn[None, :] < N, other=1), (BM, BN))"]
_COLS = ["col = sl.load(c_ptr + rm, mask=rm < M, other=1)[:, None]",
         "col = sl.expand_dims(sl.load(c_ptr + rm, mask=rm < M, other=1), 1)",
         "col = sl.load(c_ptr + rm[:, None] + rn[None, :] * 0, mask=rm[:, None] < M, other=1)"]


def _inputs(r: np.random.Generator, dt: str, shape):
    npdt = DTYPES[dt][0]
    if dt == "i32":
        return r.integers(-1000, 1000, shape).astype(npdt)
    x = (r.integers(-16, 17, shape) / 4 + r.uniform(-0.1, 0.1, shape)).astype(npdt)
    return _bf16(x) if dt == "bf16" else x


@st.composite
def elementwise_cases(draw):
    dt = draw(st.sampled_from(list(DTYPES)))
    rank = draw(st.integers(1, 2))
    shape = tuple(draw(st.integers(1, 300)) for _ in range(rank))
    leaves = ["x", "y", "sv"] + (["row", "col"] if rank == 2 else [])
    tree = draw(trees(dt, leaves, draw(st.integers(1, 4))))
    variants = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    seed = draw(st.integers(0, 2 ** 16))
    return dt, shape, tree, variants, seed


MODES = ("device", "interpreter")


@SETTINGS
@given(elementwise_cases())
def test_elementwise_trees(case):
    dt, shape, tree, (rv, cv), seed = case
    npdt, sldt = DTYPES[dt]
    odt = sl.float32 if dt == "bf16" else sldt
    r = np.random.default_rng(seed)
    x, y = _inputs(r, dt, shape), _inputs(r, dt, shape)
    s_val = int(_inputs(r, "i32", ())) if dt == "i32" else float(_inputs(r, "bf16" if dt == "bf16" else "f16", ()))
    env = {"x": x.astype(np.float64) if dt != "i32" else x, "y": y.astype(np.float64) if dt != "i32" else y,
           "sv": np.float64(s_val) if dt != "i32" else np.int32(s_val)}
    if len(shape) == 2:
        rowv, colv = _inputs(r, dt, shape[1]), _inputs(r, dt, shape[0])
        env["row"] = (rowv.astype(np.float64) if dt != "i32" else rowv)[None, :]
        env["col"] = (colv.astype(np.float64) if dt != "i32" else colv)[:, None]
    with np.errstate(all="ignore"):
        ref, err, biggest = _eval(tree, env, dt)
    ref = np.broadcast_to(ref, shape)
    if dt != "i32":                      # an intermediate that could overflow: not a defined case
        assume(biggest < (3e4 if dt == "f16" else 1e30))
    expr = render(tree, dt)
    if len(shape) == 1:
        src = _ELEMENTWISE_1D.format(expr=expr)
        BLOCK = 128
        grid = (spvjit.cdiv(shape[0], BLOCK),)
    else:
        src = _ELEMENTWISE_2D.format(expr=expr, row=_ROWS[rv], col=_COLS[cv])
        BM, BN = 16, 32
        grid = (spvjit.cdiv(shape[0], BM), spvjit.cdiv(shape[1], BN))
    kernel = load_kernel(src)
    for mode in MODES:
        out = spvjit.zeros(shape, npdt)
        k = spvjit.interpret(kernel) if mode == "interpreter" else kernel
        if len(shape) == 1:
            k[grid](spvjit.tensor(x), spvjit.tensor(y), s_val, out, shape[0], DT=sldt, ODT=odt, BLOCK=BLOCK)
        else:
            k[grid](spvjit.tensor(x), spvjit.tensor(y), spvjit.tensor(rowv), spvjit.tensor(colv), s_val,
                    out, shape[0], shape[1], DT=sldt, ODT=odt, BM=BM, BN=BN)
        got = out.numpy()
        if dt == "i32":
            np.testing.assert_array_equal(got, ref, err_msg=f"{mode}: {expr}")
        else:
            # within twice the propagated bound, plus the final rounding to the output dtype
            bound = 2 * np.broadcast_to(err, shape) + UNIT[dt] * np.abs(ref) + TINY[dt]
            bad = ~(np.abs(got.astype(np.float64) - ref) <= bound)
            assert not bad.any(), (mode, expr, got[bad][:5], ref[bad][:5], bound[bad][:5])


# =====================================================================================
# reductions
# =====================================================================================
_REDUCE = '''\
import spvjit
import spvjit.language as sl


@spvjit.kernel
def kernel(x_ptr, r_ptr, c_ptr, out_ptr, M, N, DT: sl.constexpr, ODT: sl.constexpr, BM: sl.constexpr,
           BN: sl.constexpr):
    rm = sl.program_id(0) * BM + sl.arange(0, BM)
    rn = sl.program_id(1) * BN + sl.arange(0, BN)
    mask = (rm[:, None] < M) & (rn[None, :] < N)
    x = sl.load(x_ptr + rm[:, None] * N + rn[None, :], mask=mask, other=0).to(DT)
    {pre}
    v = sl.where(mask, v, {ident})
    r = {call}
    {to_out}
    {store}
'''
_REDUCE_1D = '''\
import spvjit
import spvjit.language as sl


@spvjit.kernel
def kernel(x_ptr, r_ptr, c_ptr, out_ptr, M, N, DT: sl.constexpr, ODT: sl.constexpr, BM: sl.constexpr,
           BN: sl.constexpr):
    rn = sl.arange(0, BN)
    mask = rn < N
    x = sl.load(x_ptr + rn, mask=mask, other=0).to(DT)
    {pre}
    v = sl.where(mask, v, {ident})
    r = {call}
    {to_out}
    {store}
'''


def _pow2(n):
    return 1 << (n - 1).bit_length()


@st.composite
def reduction_cases(draw):
    dt = draw(st.sampled_from(list(DTYPES)))
    kind = draw(st.sampled_from(["sum", "max", "min", "argmax"]))
    rank = draw(st.integers(1, 2))
    axis = draw(st.sampled_from([0, None] if rank == 1 else [0, 1, None]))
    keep = draw(st.booleans())
    # the reduced extent sits in one tile, whose reduction the lowering unrolls; lavapipe's
    # compile time grows with it (seconds at 2048+ elements), so reduced extents stay modest
    if rank == 1:
        shape = (draw(st.integers(1, 300)),)
    elif axis is None:     # the whole tile in one program: at most 1024 elements
        m = draw(st.integers(1, 300))
        shape = (m, draw(st.integers(1, max(1, min(300, 1024 // _pow2(m))))))
    elif axis == 1:        # rows spread over programs, each reduces [4, <=64]
        shape = (draw(st.integers(1, 300)), draw(st.integers(1, 64)))
    else:
        shape = (draw(st.integers(1, 64)), draw(st.integers(1, 300)))
    pre = draw(st.sampled_from(["v = x", "v = x + {row}", "v = x * 2 - {col}", "v = sl.abs(x)"] if rank == 2
                               else ["v = x", "v = x * 2", "v = -x"]))
    seed = draw(st.integers(0, 2 ** 16))
    return dt, kind, shape, axis, keep, pre, seed


def _np_reduce(kind, v, axis):
    if kind == "argmax":
        return np.argmax(v, axis=axis).astype(np.int32)      # first index on ties
    return {"sum": np.sum, "max": np.max, "min": np.min}[kind](v, axis=axis)


@SETTINGS
@given(reduction_cases())
def test_reductions(case):
    dt, kind, shape, axis, keep, pre, seed = case
    npdt, sldt = DTYPES[dt]
    odt = sl.float32 if dt == "bf16" else sldt
    r = np.random.default_rng(seed)
    if dt == "i32":
        gen = lambda s: r.integers(-20, 21, s).astype(np.int32)          # small: many ties
    else:
        gen = lambda s: (r.integers(-8, 9, s) / 4).astype(npdt)          # exact, many ties
    x = gen(shape)
    rank = len(shape)
    M, N = (1, shape[0]) if rank == 1 else shape
    rowv, colv = gen(N), gen(M)
    fl = dt != "i32"
    ident = {"sum": "0", "max": "-float('inf')" if fl else "-2147483648",
             "min": "float('inf')" if fl else "2147483647",
             "argmax": "-float('inf')" if fl else "-2147483648"}[kind]
    # where each program's tile sits and what it reduces
    if rank == 1:
        BM, BN, grid = 1, _pow2(N), (1,)
    elif axis == 1:
        BM, BN = 4, _pow2(N)
        grid = (spvjit.cdiv(M, BM), 1)
    elif axis == 0:
        BM, BN = _pow2(M), 4
        grid = (1, spvjit.cdiv(N, BN))
    else:
        BM, BN, grid = _pow2(M), _pow2(N), (1, 1)
    fn = {"sum": "sl.sum", "max": "sl.max", "min": "sl.min", "argmax": "sl.argmax"}[kind]
    call = f"{fn}(v, axis={axis}, keep_dims={keep})"
    if rank == 1 or axis is None:            # a scalar, or [1] / [1, 1] with keep_dims
        store = f"sl.store(out_ptr + sl.zeros({(1,) * rank!r}, sl.int32), r)" if keep else "sl.store(out_ptr, r)"
    elif axis == 1:
        idx = "rm[:, None]" if keep else "rm"
        store = f"sl.store(out_ptr + {idx}, r, mask={idx} < M)"
    else:
        idx = "rn[None, :]" if keep else "rn"
        store = f"sl.store(out_ptr + {idx}, r, mask={idx} < N)"
    pre_src = pre.format(row="sl.load(r_ptr + rn, mask=rn < N, other=0).to(DT)[None, :]",
                         col="sl.load(c_ptr + rm, mask=rm < M, other=0).to(DT)[:, None]")
    to_out = "r = r.to(ODT)" if kind != "argmax" else "pass"
    src = (_REDUCE_1D if rank == 1 else _REDUCE).format(pre=pre_src, ident=ident, call=call, store=store,
                                                        to_out=to_out)
    kernel = load_kernel(src)

    # reference, in float64 for floats
    xv = x.astype(np.float64) if fl else x.astype(np.int64)
    rv, cv = (rowv.astype(np.float64), colv.astype(np.float64)) if fl else (rowv.astype(np.int64), colv.astype(np.int64))
    if pre == "v = x":
        v = xv
    elif pre == "v = x * 2":
        v = xv * 2
    elif pre == "v = -x":
        v = -xv
    elif pre == "v = sl.abs(x)":
        v = np.abs(xv)
    elif "{row}" in pre:
        v = xv + rv[None, :]
    else:
        v = xv * 2 - cv[:, None]
    if axis is None and rank == 2:
        # a full reduction flattens the whole [BM, BN] tile, so argmax counts padded columns too:
        # reduce the padded tile (padding holds the identity, as the kernel's `where` does)
        pad = np.full((BM, BN), -np.inf if fl else np.iinfo(np.int32).min, np.float64 if fl else np.int64)
        if kind == "argmax":
            pad[:M, :N] = v
            v = pad
    flat = v.reshape(-1) if axis is None else v
    ref = np.atleast_1d(_np_reduce(kind, flat, None if axis is None else axis))
    out_len = 1 if (axis is None or rank == 1) else (M if axis == 1 else N)
    out_dt = np.int32 if kind == "argmax" else npdt
    for mode in MODES:
        out = spvjit.zeros(out_len, out_dt)
        k = spvjit.interpret(kernel) if mode == "interpreter" else kernel
        k[grid](spvjit.tensor(x), spvjit.tensor(rowv), spvjit.tensor(colv), out, M, N, DT=sldt, ODT=odt,
                BM=BM, BN=BN)
        got = out.numpy()
        if kind == "sum" and fl:
            # sums of exact quarter-integers: f32 partial sums of <= 1024 terms of |v| <= 6 stay
            # far below 2^24 / 4, so every f32 partial sum is exact, in any order; f16 (bf16)
            # partial sums are exact only below 2^11 / 4 (2^8 / 4): bound by n * u * sum|v|
            n = flat.shape[0] if axis is None else flat.shape[axis]
            absum = np.atleast_1d(np.sum(np.abs(flat), axis=None if axis is None else axis))
            bound = (n * UNIT[dt] * absum) if dt != "f32" else 0 * absum
            assert np.all(np.abs(got.astype(np.float64) - ref) <= bound), (mode, src, got, ref)
        else:
            np.testing.assert_array_equal(got, ref.astype(out_dt), err_msg=f"{mode}\n{src}")
