"""Block pointers (`sl.make_block_ptr`, `sl.advance`, `boundary_check`, `padding_option`), as
Triton's tl.load / tl.store accept them: checked against numpy slicing on the device and in
the interpreter; misuse is one clear error naming the kernel line."""
import numpy as np
import pytest

import spvjit
import spvjit.language as tl
from spvjit.errors import CompilationError

MODES = ["device", "interpreter"]


def _k(kernel, mode):
    return spvjit.interpret(kernel) if mode == "interpreter" else kernel


@spvjit.kernel
def copy_2d(X, Z, M, N, stride_xm, stride_xn, PAD: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr):
    """Each program copies a BM x BN block of X (any strides) into a padded, contiguous Z."""
    pm, pn = tl.program_id(0), tl.program_id(1)
    src = tl.make_block_ptr(base=X, shape=(M, N), strides=(stride_xm, stride_xn),
                            offsets=(pm * BM, pn * BN), block_shape=(BM, BN), order=(1, 0))
    x = tl.load(src, boundary_check=(0, 1), padding_option=PAD)
    zn = tl.cdiv(N, BN) * BN
    dst = tl.make_block_ptr(Z, (tl.cdiv(M, BM) * BM, zn), (zn, 1), (pm * BM, pn * BN), (BM, BN), (1, 0))
    tl.store(dst, x)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pad", ["zero", "nan"])
@pytest.mark.parametrize("transposed", [False, True])
def test_boundary_check_pads_outside_the_tensor(mode, pad, transposed):
    M, N, BM, BN = 19, 27, 8, 16
    base = np.random.RandomState(1).standard_normal((N, M) if transposed else (M, N)).astype(np.float32)
    x = base.T if transposed else base               # a strided view: strides (1, M) when transposed
    sm, sn = (1, M) if transposed else (N, 1)
    gm, gn = -(-M // BM), -(-N // BN)
    z = spvjit.zeros((gm * BM, gn * BN))
    _k(copy_2d, mode)[(gm, gn)](spvjit.tensor(np.ascontiguousarray(base)), z, M, N, sm, sn,
                                PAD=pad, BM=BM, BN=BN)
    want = np.full((gm * BM, gn * BN), np.nan if pad == "nan" else 0.0, np.float32)
    want[:M, :N] = x
    np.testing.assert_array_equal(z.numpy(), want)    # a copy: exact


@spvjit.kernel
def row_sums(X, Z, M, N, BM: tl.constexpr, BN: tl.constexpr):
    """Sum of each row, walking the columns with tl.advance in a loop; rows checked only where
    the block can leave the tensor (dim 0) and columns too (dim 1)."""
    pm = tl.program_id(0)
    p = tl.make_block_ptr(X, (M, N), (N, 1), (pm * BM, 0), (BM, BN), (1, 0))
    acc = tl.zeros((BM,), tl.float32)
    for _ in range(0, tl.cdiv(N, BN)):
        acc += tl.sum(tl.load(p, boundary_check=(1, 0)), axis=1)
        p = tl.advance(p, (0, BN))
    out = tl.make_block_ptr(Z, (M,), (1,), (pm * BM,), (BM,), (0,))
    tl.store(out, acc, boundary_check=(0,))


@spvjit.kernel
def row_sums_while(X, Z, M, N, BM: tl.constexpr, BN: tl.constexpr):
    pm = tl.program_id(0)
    p = tl.make_block_ptr(X, (M, N), (N, 1), (pm * BM, 0), (BM, BN), (1, 0))
    acc = tl.zeros((BM,), tl.float32)
    col = 0
    while col < N:
        acc += tl.sum(tl.load(p, boundary_check=(0, 1)), axis=1)
        p = tl.advance(p, (0, BN))
        col += BN
    out = tl.make_block_ptr(Z, (M,), (1,), (pm * BM,), (BM,), (0,))
    tl.store(out, acc, boundary_check=(0,))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kernel", [row_sums, row_sums_while])
def test_advance_in_loops(mode, kernel):
    M, N, BM, BN = 21, 70, 8, 16
    x = np.random.RandomState(2).standard_normal((M, N)).astype(np.float32)
    z = spvjit.zeros(M)
    _k(kernel, mode)[(-(-M // BM),)](spvjit.tensor(x), z, M, N, BM=BM, BN=BN)
    # f32 sums of 70 values of size ~1 in another order: a few ulps of the row's magnitude
    np.testing.assert_allclose(z.numpy(), x.sum(axis=1), rtol=1e-5, atol=1e-5)


@spvjit.kernel
def batched_block(X, Z, B, M, N, BB: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr):
    """A 3-D block at a runtime offset, padded where it leaves the tensor."""
    p = tl.make_block_ptr(X, (B, M, N), (M * N, N, 1), (1, 2, 3), (BB, BM, BN), (2, 1, 0))
    x = tl.load(p, boundary_check=(0, 1, 2), padding_option="zero")
    q = tl.make_block_ptr(Z, (BB, BM, BN), (BM * BN, BN, 1), (0, 0, 0), (BB, BM, BN), (2, 1, 0))
    tl.store(q, x + 1.0)


@pytest.mark.parametrize("mode", MODES)
def test_three_dimensional_block(mode):
    B, M, N = 3, 5, 9
    x = np.arange(B * M * N, dtype=np.float32).reshape(B, M, N)
    z = spvjit.zeros((4, 4, 8))
    _k(batched_block, mode)[(1,)](spvjit.tensor(x), z, B, M, N, BB=4, BM=4, BN=8)
    want = np.zeros((4, 4, 8), np.float32)
    part = x[1:, 2:, 3:]
    want[:part.shape[0], :part.shape[1], :part.shape[2]] = part
    np.testing.assert_array_equal(z.numpy(), want + 1)


@spvjit.kernel
def advanced_in_if(X, Z, n, BLOCK: tl.constexpr):
    """A block pointer advanced in one branch of a runtime `if` (the `if` yields its fields)."""
    p = tl.make_block_ptr(X, (n,), (1,), (0,), (BLOCK,), (0,))
    if tl.program_id(0) == 1:
        p = tl.advance(p, (BLOCK // 2,))
    elif tl.program_id(0) == 2:
        p = tl.advance(p, (n - 3,))
    tl.store(Z + tl.program_id(0) * BLOCK + tl.arange(0, BLOCK), tl.load(p, boundary_check=(0,)))


@pytest.mark.parametrize("mode", MODES)
def test_advance_in_a_runtime_if(mode):
    n, block = 20, 8
    x = np.arange(1, n + 1, dtype=np.float32)
    z = spvjit.zeros(3 * block)
    _k(advanced_in_if, mode)[(3,)](spvjit.tensor(x), z, n, BLOCK=block)
    want = np.zeros((3, block), np.float32)
    for pid, start in enumerate([0, block // 2, n - 3]):
        part = x[start:start + block]
        want[pid, :len(part)] = part
    np.testing.assert_array_equal(z.numpy(), want.reshape(-1))


# ---- misuse -------------------------------------------------------------------------------
@spvjit.kernel
def with_mask(X):
    p = tl.make_block_ptr(X, (4,), (1,), (0,), (4,), (0,))
    tl.load(p, mask=tl.arange(0, 4) < 2)


@spvjit.kernel
def plain_pointer_boundary(X):
    tl.load(X + tl.arange(0, 4), boundary_check=(0,))


@spvjit.kernel
def int_nan_padding(X):
    p = tl.make_block_ptr(X, (4,), (1,), (0,), (4,), (0,))
    tl.load(p, boundary_check=(0,), padding_option="nan")


@spvjit.kernel
def bad_dim(X):
    p = tl.make_block_ptr(X, (4,), (1,), (0,), (4,), (0,))
    tl.load(p, boundary_check=(1,))


@spvjit.kernel
def bad_rank(X):
    tl.make_block_ptr(X, (4, 4), (4, 1), (0,), (4, 4), (1, 0))


@spvjit.kernel
def advance_plain(X):
    tl.advance(X, (1,))


@spvjit.kernel
def mixed_in_if(X, n):
    p = tl.make_block_ptr(X, (4,), (1,), (0,), (4,), (0,))
    if n > 1:
        p = tl.make_block_ptr(X, (4,), (1,), (0,), (2,), (0,))
    tl.store(p, 1, boundary_check=(0,))


@pytest.mark.parametrize("kernel, line, match", [
    (with_mask, "tl.load(p, mask=", "takes no `mask` or `other`"),
    (plain_pointer_boundary, "boundary_check=(0,))", "apply to loads through block pointers"),
    (int_nan_padding, 'padding_option="nan"', "padding_option='nan' needs a floating-point tensor"),
    (bad_dim, "boundary_check=(1,)", "names dimension 1, but the block pointer has 1 dimensions"),
    (bad_rank, "tl.make_block_ptr(X, (4, 4)", "offsets has 1 entries but the block has 2 dimensions"),
    (advance_plain, "tl.advance(X", "advance takes a block pointer"),
    (mixed_in_if, "if n > 1:", "both branches must leave a block pointer of one element type and block shape"),
])
def test_misuse_is_one_clear_error_naming_the_line(kernel, line, match):
    x = spvjit.zeros(4, np.int32)
    args = (x, 2) if kernel is mixed_in_if else (x,)
    with pytest.raises(CompilationError, match=match) as e:
        kernel[(1,)](*args)
    assert "test_block_pointers.py:" in str(e.value) and line in str(e.value)
