"""IR modules for the IR tests: hand-written kernels through the frontend, and
hypothesis strategies that build random well-typed modules with the Builder.

`interpret(kernel, inputs, grid)` runs any KernelIR (a parsed one too) in the
numpy interpreter and returns the final contents of its buffers.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import spvjit
import spvjit.language as sl
from spvjit.interpreter import HostTensor, Pointer, ProgramRunner
from spvjit.ir import Block, Builder, KernelIR, Param, TileType, Value, verify
from spvjit.ir.types import PointerType, f32, i1, i32


def interpret(kernel: KernelIR, inputs: dict, grid) -> dict[str, np.ndarray]:
    """Run `kernel` on copies of `inputs` (param name -> array or scalar); return the buffers."""
    buffers, env, out = [], {}, {}
    for p in kernel.params:
        v = inputs[p.name]
        if p.value.type.is_pointer:
            env[id(p.value)] = Pointer(len(buffers), 0)
            out[p.name] = np.array(v, copy=True).reshape(-1)
            buffers.append(out[p.name])
        else:
            env[id(p.value)] = np.asarray(v, p.value.type.elem.numpy)[()]
    ProgramRunner(kernel, buffers, env, tuple(grid) + (1,) * (3 - len(grid))).run_all()
    return out


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-for-bit equality: NaN equals itself, 0.0 differs from -0.0."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# ---- kernels through the frontend ---------------------------------------------

@spvjit.kernel
def vector_add(x_ptr, y_ptr, out_ptr, n, BLOCK: sl.constexpr):
    offs = sl.program_id(0) * BLOCK + sl.arange(0, BLOCK)
    mask = offs < n
    x = sl.load(x_ptr + offs, mask=mask, other=0.0)
    sl.store(out_ptr + offs, x + sl.load(y_ptr + offs, mask=mask), mask=mask)


@spvjit.kernel
def softmax(out_ptr, in_ptr, stride, n_cols, BLOCK: sl.constexpr):
    row = sl.program_id(0)
    cols = sl.arange(0, BLOCK)
    x = sl.load(in_ptr + row * stride + cols, mask=cols < n_cols, other=-float("inf"))
    num = sl.exp(x - sl.max(x, axis=0))
    sl.store(out_ptr + row * stride + cols, num / sl.sum(num, axis=0), mask=cols < n_cols)


@spvjit.kernel
def matmul(a, b, c, M, N, K, BM: sl.constexpr, BN: sl.constexpr, BK: sl.constexpr):
    rm = sl.program_id(0) * BM + sl.arange(0, BM)
    rn = sl.program_id(1) * BN + sl.arange(0, BN)
    rk = sl.arange(0, BK)
    acc = sl.zeros((BM, BN), dtype=sl.float32)
    for k in range(0, K, BK):
        av = sl.load(a + rm[:, None] * K + (k + rk)[None, :],
                     mask=(rm[:, None] < M) & ((k + rk)[None, :] < K), other=0.0)
        bv = sl.load(b + (k + rk)[:, None] * N + rn[None, :],
                     mask=((k + rk)[:, None] < K) & (rn[None, :] < N), other=0.0)
        acc += sl.dot(av, bv)
    sl.store(c + rm[:, None] * N + rn[None, :], acc, mask=(rm[:, None] < M) & (rn[None, :] < N))


@spvjit.kernel
def early_return(x_ptr, out_ptr, n, flag, BLOCK: sl.constexpr):
    pid = sl.program_id(0)
    if pid * BLOCK >= n:
        return
    offs = pid * BLOCK + sl.arange(0, BLOCK)
    x = sl.load(x_ptr + offs, mask=offs < n, other=0.0)
    s = 1.0
    if flag > 0:
        s = 2.0
    else:
        s = s + 1.5
    sl.store(out_ptr + offs, x * s, mask=offs < n)


@spvjit.kernel
def layer_norm(x_ptr, w_ptr, out_ptr, n, eps, BLOCK: sl.constexpr):
    row = sl.program_id(0)
    cols = sl.arange(0, BLOCK)
    m = cols < n
    x = sl.load(x_ptr + row * n + cols, mask=m, other=0.0)
    d = sl.where(m, x - sl.sum(x, axis=0) / n, 0.0)
    y = d * sl.rsqrt(sl.sum(d * d, axis=0) / n + eps) * sl.load(w_ptr + cols, mask=m)
    sl.store(out_ptr + row * n + cols, y, mask=m)


@spvjit.kernel
def atomics(x_ptr, out_ptr, n, BLOCK: sl.constexpr):
    offs = sl.program_id(0) * BLOCK + sl.arange(0, BLOCK)
    x = sl.load(x_ptr + offs, mask=offs < n, other=0.0)
    sl.atomic_add(out_ptr, sl.sum(x, axis=0))
    sl.atomic_max(out_ptr + 1, sl.max(x, axis=0))


@spvjit.kernel
def argmax_rows(x_ptr, out_ptr, R: sl.constexpr, C: sl.constexpr):
    r = sl.arange(0, R)
    x = sl.load(x_ptr + r[:, None] * C + sl.arange(0, C)[None, :])
    sl.store(out_ptr + r, sl.argmax(x, axis=1))


@spvjit.kernel
def casts(x_ptr, out_ptr, BLOCK: sl.constexpr):
    offs = sl.arange(0, BLOCK)
    x = sl.load(x_ptr + offs)
    i = x.to(sl.int32)
    bits = x.to(sl.int32, bitcast=True)
    y = (i // 3 + i % 5 + (bits & 255)).to(sl.float32) + x.to(sl.float16).to(sl.float32)
    sl.store(out_ptr + offs, y)


@spvjit.kernel
def trans_reshape(x_ptr, out_ptr, M: sl.constexpr, N: sl.constexpr):
    x = sl.load(x_ptr + sl.arange(0, M)[:, None] * N + sl.arange(0, N)[None, :])
    sl.store(out_ptr + sl.arange(0, M * N), sl.reshape(sl.trans(x), (M * N,)))


@spvjit.kernel
def while_growth(x_ptr, out_ptr, n, BLOCK: sl.constexpr):
    """A `while` whose trip count differs per program (from the program id)."""
    pid = sl.program_id(0)
    offs = pid * BLOCK + sl.arange(0, BLOCK)
    x = sl.load(x_ptr + offs, mask=offs < n, other=0.0)
    scale = (pid + 1).to(sl.float32)
    steps = 0
    while scale < 100.0:
        x = x * 0.5 + scale
        scale = scale * 3.0
        steps += 1
    sl.store(out_ptr + offs, x + steps, mask=offs < n)


def _f(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# name -> (kernel, runtime args, constexprs, grid); arrays are copied for every run
SUITE = {
    "vector_add": (vector_add, [_f(50), _f(50, seed=1), np.zeros(50, np.float32), 50], {"BLOCK": 16}, (4,)),
    "softmax": (softmax, [np.zeros((5, 12), np.float32), _f(5, 12), 12, 12], {"BLOCK": 16}, (5,)),
    "matmul": (matmul, [_f(13, 9), _f(9, 11), np.zeros((13, 11), np.float32), 13, 11, 9],
               {"BM": 8, "BN": 8, "BK": 4}, (2, 2)),
    "early_return": (early_return, [_f(40), np.zeros(40, np.float32), 40, 1], {"BLOCK": 16}, (4,)),
    "layer_norm": (layer_norm, [_f(4, 30), _f(30), np.zeros((4, 30), np.float32), 30, 1e-5],
                   {"BLOCK": 32}, (4,)),
    "atomics": (atomics, [_f(40), np.zeros(2, np.float32), 40], {"BLOCK": 16}, (3,)),
    "argmax": (argmax_rows, [_f(8, 16), np.zeros(8, np.int32)], {"R": 8, "C": 16}, (1,)),
    "casts": (casts, [_f(16) * 100, np.zeros(16, np.float32)], {"BLOCK": 16}, (1,)),
    "trans_reshape": (trans_reshape, [_f(4, 8), np.zeros(32, np.float32)], {"M": 4, "N": 8}, (1,)),
    "while_growth": (while_growth, [_f(40), np.zeros(40, np.float32), 40], {"BLOCK": 16}, (3,)),
}


def suite_module(name: str) -> KernelIR:
    fn, args, consts, _ = SUITE[name]
    host = [HostTensor(a) if isinstance(a, np.ndarray) else a for a in args]
    return fn.ir_module(*host, **consts)


def suite_inputs(name: str) -> dict:
    fn, args, _, _ = SUITE[name]
    names = [p for p in fn.signature.parameters if p not in fn.constexpr_names]
    return dict(zip(names, args))


# ---- random modules --------------------------------------------------------------

F32_CONSTS = [0.0, -0.0, 1.0, -1.5, 2.0, 0.1, 3.0, 1e30, -1e-30, float("inf")]
I32_CONSTS = [0, 1, -1, 2, 3, 7, -8, 31, 40, 2**31 - 1, -2**31]
F32_BINARY = ["add", "sub", "mul", "truediv", "maximum", "minimum", "mod", "pow"]
I32_BINARY = ["add", "sub", "mul", "floordiv", "mod", "and", "or", "xor", "shl", "shr",
              "maximum", "minimum"]
F32_UNARY = ["neg", "abs", "exp", "floor", "ceil", "sqrt", "sigmoid"]
I32_UNARY = ["neg", "not", "abs"]
HINTS = [None, None, None, "t", "x", "acc"]    # repeated hints exercise the printer's _1 suffixes


class _Gen:
    """Draws typed expressions over a pool of values visible at the insertion point."""

    def __init__(self, draw, block: int):
        self.draw, self.block = draw, block

    def pick(self, options):
        return self.draw(st.sampled_from(options))

    def op(self, b: Builder, name, operands, ty, **attrs) -> Value:
        return b.create(name, operands, [ty], attrs, hints=[self.pick(HINTS)]).result

    def constant(self, b: Builder, ty: TileType) -> Value:
        consts = F32_CONSTS if ty.elem == f32 else I32_CONSTS if ty.elem == i32 else [False, True]
        return self.op(b, "constant", [], ty, value=self.pick(consts))

    def expr(self, b: Builder, pool: list[Value], ty: TileType, depth: int, const_only: bool = False) -> Value:
        # now and then a subtree of constants only, which fold_constants can evaluate
        const_only = const_only or self.draw(st.integers(0, 4)) == 0
        have = [v for v in pool if v.type == ty] if not const_only else []
        kind = self.draw(st.integers(0, 9)) if depth > 0 else self.draw(st.integers(0, 2))
        if kind == 0 and have:
            return self.pick(have)
        if kind <= 2:
            if ty.shape and self.draw(st.booleans()):
                return self.op(b, "splat", [self.expr(b, pool, ty.with_shape(()), depth - 1)], ty)
            return self.constant(b, ty)
        sub = lambda t=ty: self.expr(b, pool, t, depth - 1, const_only)   # noqa: E731
        elem = ty.elem
        if kind == 3:   # cast from another element type
            src = self.pick([t for t in (f32, i32, i1) if t != elem])
            return self.op(b, "cast", [sub(ty.with_elem(src))], ty)
        if kind == 4:   # select
            return self.op(b, "select", [sub(ty.with_elem(i1)), sub(), sub()], ty)
        if kind == 5 and ty.shape and elem != i1:   # reduce a broadcast 2-D tile back to 1-D
            n, axis = ty.shape[0], self.draw(st.integers(0, 1))
            col = self.op(b, "expand_dims", [sub()], TileType((1, n) if axis == 0 else (n, 1), elem), axis=axis)
            square = self.op(b, "broadcast", [col], TileType((n, n), elem))
            other = self.op(b, "trans", [square], square.type) if self.draw(st.booleans()) else square
            return self.op(b, "reduce", [other], ty, kind=self.pick(["sum", "max", "min"]), axis=1 - axis)
        if elem == i1:
            if kind <= 7:
                src = ty.with_elem(self.pick([f32, i32]))
                return self.op(b, "cmp", [sub(src), sub(src)], ty,
                               pred=self.pick(["lt", "le", "gt", "ge", "eq", "ne"]))
            if kind == 8:
                return self.op(b, "not", [sub()], ty)
            return self.op(b, self.pick(["and", "or", "xor"]), [sub(), sub()], ty)
        if kind == 6:
            return self.op(b, self.pick(F32_UNARY if elem == f32 else I32_UNARY), [sub()], ty)
        return self.op(b, self.pick(F32_BINARY if elem == f32 else I32_BINARY), [sub(), sub()], ty)


@st.composite
def kernels(draw, max_depth: int = 3) -> KernelIR:
    """A random kernel: masked loads of an f32 and an i32 tile, random expressions
    (sometimes inside a `for` with a carried value or an `if` that may return early)
    and stores of an f32 and an i32 result.  Inputs: see `random_inputs`."""
    blk = draw(st.sampled_from([4, 8]))
    g = _Gen(draw, blk)
    body = Block()
    b = Builder(body)
    params = []
    for name, elem in [("xf", PointerType(f32)), ("xi", PointerType(i32)),
                       ("of", PointerType(f32)), ("oi", PointerType(i32)), ("n", i32)]:
        params.append(Param(name, Value(TileType((), elem), name)))
    xf, xi, of, oi, n = (p.value for p in params)
    vec = lambda e: TileType((blk,), e)   # noqa: E731
    scalar = lambda e: TileType((), e)    # noqa: E731

    pid = b.op1("program_id", [], scalar(i32), axis=0)
    start = b.op1("mul", [pid, b.op1("constant", [], scalar(i32), value=blk)], scalar(i32))
    lanes = b.op1("arange", [], vec(i32), start=0, end=blk)
    offs = b.op1("add", [b.op1("splat", [start], vec(i32)), lanes], vec(i32))
    mask = b.op1("cmp", [offs, b.op1("splat", [n], vec(i32))], vec(i1), pred="lt")

    def ptr(base: Value) -> Value:
        ptrs = TileType((blk,), base.type.elem)
        return b.op1("addptr", [b.op1("splat", [base], ptrs), offs], ptrs)

    other = g.constant(b, vec(f32))
    loaded_f = b.op1("load", [ptr(xf), mask, other], vec(f32))
    loaded_i = b.op1("load", [ptr(xi), mask], vec(i32))
    pool = [n, pid, offs, mask, loaded_f, loaded_i]

    for _ in range(draw(st.integers(0, 3))):
        ty = draw(st.sampled_from([vec(f32), vec(i32), vec(i1), scalar(f32), scalar(i32)]))
        pool.append(g.expr(b, pool, ty, max_depth))

    if draw(st.booleans()):   # a loop carrying an f32 tile
        lb, ub = (b.op1("constant", [], scalar(i32), value=v) for v in (0, draw(st.integers(0, 3))))
        step = b.op1("constant", [], scalar(i32), value=draw(st.sampled_from([1, 2])))
        init = g.expr(b, pool, vec(f32), 1)
        loop = Block()
        iv, acc = loop.add_arg(scalar(i32), "i"), loop.add_arg(vec(f32), "acc")
        lbld = Builder(loop)
        inner = pool + [iv, acc, lbld.op1("cast", [lbld.op1("splat", [iv], vec(i32))], vec(f32))]
        lbld.create("yield", [lbld.op1("add", [acc, g.expr(lbld, inner, vec(f32), 2)], vec(f32))], [])
        pool.append(b.create("for", [lb, ub, step, init], [vec(f32)], regions=[loop], hints=["acc"]).result)

    if draw(st.booleans()):   # an `if` on a runtime scalar; the else branch may return early
        cond = b.op1("cmp", [draw(st.sampled_from([n, pid])), g.constant(b, scalar(i32))], scalar(i1),
                     pred=draw(st.sampled_from(["lt", "ge", "eq"])))
        ty = draw(st.sampled_from([vec(f32), vec(i32), scalar(i32)]))
        then, orelse = Block(), Block()
        Builder(then).create("yield", [g.expr(Builder(then), pool, ty, 2)], [])
        if draw(st.booleans()):
            Builder(orelse).create("return", [], [])
        else:
            Builder(orelse).create("yield", [g.expr(Builder(orelse), pool, ty, 2)], [])
        pool.append(b.create("if", [cond], [ty], regions=[then, orelse], hints=["r"]).result)

    b.create("store", [ptr(of), g.expr(b, pool, vec(f32), max_depth), mask], [])
    b.create("store", [ptr(oi), g.expr(b, pool, vec(i32), max_depth), mask], [])
    b.create("return", [], [])
    kernel = KernelIR("random", params, body, {"BLOCK": blk})
    verify(kernel)
    return kernel


def random_inputs(seed: int, blk: int, grid: int = 2) -> dict:
    """Inputs for a `kernels()` module: buffers of grid*blk elements and n within them."""
    rng = np.random.default_rng(seed)
    size = grid * blk
    xf = (rng.standard_normal(size) * 4).astype(np.float32)
    xi = rng.integers(-50, 50, size).astype(np.int32)
    # a few special values where a wrong rewrite shows: signed zeros, inf, NaN, extremes
    xf[rng.integers(0, size, 3)] = rng.choice(np.array([-0.0, 0.0, np.inf, -np.inf, np.nan, 3e38], np.float32), 3)
    xi[rng.integers(0, size, 2)] = rng.choice(np.array([0, -1, 2**31 - 1, -2**31], np.int32), 2)
    return {"xf": xf, "xi": xi,
            "of": np.zeros(size, np.float32), "oi": np.zeros(size, np.int32),
            "n": int(rng.integers(0, size + 1))}
