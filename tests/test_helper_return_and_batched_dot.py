"""Two pieces of Triton's language that compose from existing ops in the frontend:

- a helper (`@kernel` called from a kernel) may `return` inside a runtime `if` at its top
  level; the statements after the `if` continue in the branch that did not return, and the
  `if` yields the returned values (as Triton's code generator does);
- `dot` of two 3-D tiles is a batched product, one 2-D dot per batch index, restacked.
"""
import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit import CompilationError


def launcher(kernel, mode):
    return kernel if mode == "device" else spvjit.interpret(kernel)


@spvjit.kernel
def pick(x, flag):
    if flag > 0:
        if flag > 5:
            return x * 10.0, 1
        y = x + 1.0
        return y, 2
    elif flag < -5:
        return x * 0.0, 3
    x = x - 1.0
    return x, 4


@spvjit.kernel
def returns_in_if(X, Z, F, flag, N: sl.constexpr):
    offs = sl.arange(0, N)
    v, f = pick(sl.load(X + offs), flag)
    sl.store(Z + offs, v)
    sl.store(F, f)


@pytest.mark.parametrize("flag,scale,shift,code", [(7, 10, 0, 1), (1, 1, 1, 2), (-7, 0, 0, 3), (0, 1, -1, 4)])
def test_helper_returns_inside_runtime_if(mode, flag, scale, shift, code):
    x = np.arange(16, dtype=np.float32) - 5
    z, f = spvjit.empty(16), spvjit.zeros((1,), np.int32)
    launcher(returns_in_if, mode)[(1,)](spvjit.tensor(x), z, f, flag, N=16)
    np.testing.assert_array_equal(z.numpy(), x * scale + shift)     # exact in f32
    assert int(f.numpy()[0]) == code


@spvjit.kernel
def clamp_low(x, lo):
    if lo > 0:
        return sl.maximum(x, lo)       # falls through to the end otherwise: returns x
    return x


@spvjit.kernel
def single_return(X, Z, lo, N: sl.constexpr):
    offs = sl.arange(0, N)
    sl.store(Z + offs, clamp_low(sl.load(X + offs), lo))


@pytest.mark.parametrize("lo", [3.0, -1.0])
def test_helper_early_return_then_rest(mode, lo):
    x = np.arange(8, dtype=np.float32)
    z = spvjit.empty(8)
    launcher(single_return, mode)[(1,)](spvjit.tensor(x), z, lo, N=8)
    np.testing.assert_array_equal(z.numpy(), np.maximum(x, lo) if lo > 0 else x)


@spvjit.kernel
def mixed_types(x, flag):
    if flag > 0:
        return x
    return x.to(sl.int32)


@spvjit.kernel
def mixed_counts(x, flag):
    if flag > 0:
        return x, x
    return x


@spvjit.kernel
def in_loop(x, n):
    for i in range(n):
        if i > 2:
            return x
    return x


@pytest.mark.parametrize("helper,message", [
    (mixed_types, "is tensor<8xf32> in one branch and tensor<8xi32> in the other"),
    (mixed_counts, "return different numbers of values"),
    (in_loop, "may return only at its top level"),
])
def test_helper_return_errors_name_the_line(helper, message):
    @spvjit.kernel
    def caller(X, Z, flag):
        offs = sl.arange(0, 8)
        sl.store(Z + offs, helper(sl.load(X + offs), flag))

    with pytest.raises(CompilationError, match=message):
        caller[(1,)](spvjit.zeros(8), spvjit.zeros(8), 1)


@spvjit.kernel
def batched_dot(A, B, C, D, BB: sl.constexpr, M: sl.constexpr, K: sl.constexpr, N: sl.constexpr,
                ACC: sl.constexpr):
    b = sl.arange(0, BB)[:, None, None]
    m = sl.arange(0, M)[None, :, None]
    k = sl.arange(0, K)[None, None, :]
    kr = sl.arange(0, K)[None, :, None]
    n = sl.arange(0, N)[None, None, :]
    a = sl.load(A + b * M * K + m * K + k)
    w = sl.load(B + b * K * N + kr * N + n)
    if ACC:
        c = sl.dot(a, w, sl.load(D + b * M * N + m * N + n))
    else:
        c = sl.dot(a, w)
    sl.store(C + b * M * N + m * N + n, c)


@pytest.mark.parametrize("BB", [1, 2, 4])
@pytest.mark.parametrize("acc", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_batched_dot(mode, BB, acc, dtype):
    rng = np.random.default_rng(BB + 10 * acc)
    a = rng.standard_normal((BB, 16, 8)).astype(dtype)
    w = rng.standard_normal((BB, 8, 16)).astype(dtype)
    d = rng.standard_normal((BB, 16, 16)).astype(np.float32)
    c = spvjit.empty((BB, 16, 16), np.float32)
    launcher(batched_dot, mode)[(1,)](spvjit.tensor(a), spvjit.tensor(w), c, spvjit.tensor(d),
                                      BB=BB, M=16, K=8, N=16, ACC=acc)
    ref = a.astype(np.float64) @ w.astype(np.float64) + (d if acc else 0)
    # f32 accumulation of 8 products of N(0,1) terms (exact for f16 inputs): a few ulps of ~3
    np.testing.assert_allclose(c.numpy(), ref, rtol=1e-5, atol=1e-5)


@spvjit.kernel
def batched_dot_of_three(A, B, C, M: sl.constexpr, K: sl.constexpr, N: sl.constexpr):
    m = sl.arange(0, M)[:, None]
    k = sl.arange(0, K)[None, :]
    kr = sl.arange(0, K)[:, None]
    n = sl.arange(0, N)[None, :]
    scale = sl.cumsum(sl.full((3, 1, 1), 1.0, sl.float32), axis=0)      # 1, 2, 3 by batch
    a = sl.load(A + m * K + k)[None, :, :] * scale                       # [3, M, K]
    w = sl.broadcast_to(sl.load(B + kr * N + n)[None, :, :], (3, K, N))
    c = sl.dot(a, w)
    sl.store(C + m * N + n, sl.sum(c * scale, axis=0))                    # (1 + 4 + 9) a @ w


def test_batched_dot_with_a_batch_that_is_not_a_power_of_two(mode):
    rng = np.random.default_rng(5)
    a = rng.standard_normal((16, 8)).astype(np.float32)
    w = rng.standard_normal((8, 16)).astype(np.float32)
    c = spvjit.empty((16, 16), np.float32)
    launcher(batched_dot_of_three, mode)[(1,)](spvjit.tensor(a), spvjit.tensor(w), c, M=16, K=8, N=16)
    np.testing.assert_allclose(c.numpy(), 14 * (a.astype(np.float64) @ w), rtol=1e-5, atol=1e-4)


def test_batched_dot_shape_errors():
    @spvjit.kernel
    def bad(Z):
        a = sl.zeros((2, 16, 16), sl.float32)
        w = sl.zeros((4, 16, 16), sl.float32)
        sl.store(Z + sl.arange(0, 16), sl.sum(sl.sum(sl.dot(a, w), axis=0), axis=0))

    with pytest.raises(CompilationError, match="differ in the batch dimension"):
        bad[(1,)](spvjit.zeros(16))
