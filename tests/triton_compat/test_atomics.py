"""Triton-compatibility: atomics, histogram, gather and topk, as Triton's `test_core.py` and
`test_standard.py` exercise them (kernels in Triton's spelling; numpy references).

Atomics are checked two ways: the final memory against a numpy fold of the lanes' updates
(exact: the data are small integers, so float sums do not round), and the old values each
lane gets back.  Where lanes share an address the device orders them its own way, so the
old values are checked as a chain: the values an address held, {init} + {each lane's new
value}, equal {each lane's old value} + {final} as multisets, whatever the order.
"""
from __future__ import annotations

import numpy as np
import pytest

import spvjit as triton
import spvjit.language as tl
from spvjit import loop_limit
from spvjit.frontend.errors import CompilationError
from spvjit.runtime import get_device

from compat import empty_device, launch, make_kernel, numpy_random, to_device

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

NP = {"bfloat16": np.float32}        # bf16 values are held as float32 on the host


def _np(dtype: str):
    return NP[dtype] if dtype in NP else np.dtype(dtype)


def _round_bf16(x):
    """float32 -> nearest bf16 (ties to even), kept as float32: numpy bit arithmetic."""
    bits = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(np.float32)


def _update(op: str, old, x, dtype: str):
    """One lane's new value, written with numpy independently of spvjit."""
    dt = _np(dtype)
    old, x = np.asarray(old, dt), np.asarray(x, dt)
    if op == "add":
        return _round_bf16(old + x) if dtype == "bfloat16" else (old + x).astype(dt)
    if op == "max":
        return np.maximum(old, x)
    if op == "min":
        return np.minimum(old, x)
    if op == "xchg":
        return x
    return {"and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor}[op](old, x)


def _check_chain(op, dtype, init, lane_x, lane_old, final):
    new = [_update(op, o, x, dtype) for o, x in zip(lane_old, lane_x)]
    have = sorted(np.asarray([init] + new, _np(dtype)).tolist())
    want = sorted(np.asarray(list(lane_old) + [final], _np(dtype)).tolist())
    assert have == want, f"old values {lane_old} are no ordering of the updates {lane_x} from {init}"


# ---------------------------------------------------------------------------------------
# scalar atomics from several programs (Triton's test_atomic_rmw, with the bitwise kinds)
# ---------------------------------------------------------------------------------------
RMW_TYPES = {       # Triton's lists, 64-bit types included (they need shaderBufferInt64Atomics)
    "add": ["bfloat16", "float16", "uint32", "int32", "float32", "uint64", "int64", "float64"],
    "max": ["uint32", "int32", "float32", "uint64", "int64", "float64"],
    "min": ["uint32", "int32", "float32", "uint64", "int64", "float64"],
    "and": ["uint32", "int32", "uint64", "int64"], "or": ["uint32", "int32", "uint64", "int64"],
    "xor": ["uint32", "int32", "uint64", "int64"],
    "xchg": ["uint32", "int32", "float32", "uint64", "int64", "float64"],
}
RMW_CASES = [(op, dt) for op, dts in RMW_TYPES.items() for dt in dts]


def _neutral(op, dtype):
    dt = _np(dtype)
    if op == "max":
        return -np.inf if "float" in dtype else np.iinfo(dt).min
    if op == "min":
        return np.inf if "float" in dtype else np.iinfo(dt).max
    if op == "and":
        return np.iinfo(dt).max if dtype.startswith("u") else -1
    return 0


@pytest.mark.parametrize("op, dtype_x_str", RMW_CASES)
@pytest.mark.parametrize("x_mode", ["all_neg", "all_pos", "min_neg", "max_pos"])
@pytest.mark.parametrize("sem", [None, "acquire", "release", "acq_rel", "relaxed"])
def test_atomic_rmw(mode, op, dtype_x_str, x_mode, sem):
    n_programs = 5
    sem_arg = sem if sem is None else f'"{sem}"'
    kernel = launch(make_kernel('''
@triton.jit
def kernel(X, Z, OLD):
    pid = tl.program_id(0)
    x = tl.load(X + pid)
    old = GENERATE_TEST_HERE
    tl.static_assert(old.dtype == x.dtype)
    tl.store(OLD + pid, old)
''', GENERATE_TEST_HERE=f"tl.atomic_{op}(Z, x, sem={sem_arg})"), mode)
    dt = _np(dtype_x_str)
    rs = np.random.RandomState(17)
    x = np.array([2 ** i for i in range(n_programs)], dtype=dt)
    if x_mode == "all_neg":
        x = -np.abs(x)
    if x_mode == "all_pos":
        x = np.abs(x)
    if x_mode == "min_neg":
        x[rs.randint(n_programs, size=(1,)).item()] = -np.max(np.abs(x)) - 1
    if x_mode == "max_pos":
        x[rs.randint(n_programs, size=(1,)).item()] = np.max(np.abs(x)) + 1
    init = np.array(_neutral(op, dtype_x_str)).astype(dt)
    z = to_device(np.array([init], dt), dtype_x_str)
    old = empty_device(n_programs, dtype_x_str)
    kernel[(n_programs,)](to_device(x, dtype_x_str), z, old)
    final = z.numpy()[0]
    if op == "xchg":
        assert final in x
    else:
        ref = init
        for v in x:
            ref = _update(op, ref, v, dtype_x_str)
        assert final == ref
    _check_chain(op, dtype_x_str, init, x, old.numpy(), final)


# ---------------------------------------------------------------------------------------
# tile atomics: distinct addresses, shared addresses, one address; with and without a mask
# ---------------------------------------------------------------------------------------
ADDRESSES = {"unique": "off", "shared": "off % 4", "one": "off * 0"}


@pytest.mark.parametrize("op, dtype", RMW_CASES)
@pytest.mark.parametrize("addresses", list(ADDRESSES))
@pytest.mark.parametrize("masked", [False, True])
def test_tensor_atomic_rmw_patterns(mode, op, dtype, addresses, masked):
    BLOCK, n_programs = 32, 2
    kernel = launch(make_kernel('''
@triton.jit
def kernel(Z, X, OLD, BLOCK: tl.constexpr):
    off = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(X + off)
    old = tl.atomic_OP(Z + ADDR, x, mask=MASK)
    tl.store(OLD + off, old)
''', OP=op, ADDR=ADDRESSES[addresses], MASK="off % 3 != 0" if masked else "None"), mode)
    n = BLOCK * n_programs
    rs = np.random.RandomState(5)
    if op in ("max", "min") and not dtype.startswith("u"):
        x = rs.randint(-50, 50, n)
    else:
        x = rs.randint(0, 4, n)       # small: sums of 64 stay exact in bf16 and f16
    x = x.astype(_np(dtype))
    z0 = rs.randint(0, 8, n).astype(_np(dtype))
    z, old = to_device(z0, dtype), empty_device(n, dtype)
    kernel[(n_programs,)](z, to_device(x, dtype), old, BLOCK=BLOCK)
    lanes = np.arange(n)
    addr = {"unique": lanes, "shared": lanes % 4, "one": lanes * 0}[addresses]
    live = lanes % 3 != 0 if masked else np.ones(n, bool)
    final, olds = z.numpy(), old.numpy()
    for a in np.unique(addr):
        hits = np.nonzero((addr == a) & live)[0]
        if op == "xchg":
            assert final[a] in np.concatenate([x[hits], z0[a:a + 1]])
        else:
            ref = z0[a]
            for i in hits:
                ref = _update(op, ref, x[i], dtype)
            assert final[a] == ref, f"address {a}"
        _check_chain(op, dtype, z0[a], x[hits], olds[hits], final[a])
    untouched = np.setdiff1d(np.arange(n), addr[live])
    np.testing.assert_array_equal(final[untouched], z0[untouched])


# ---------------------------------------------------------------------------------------
# Triton's tile atomic tests (host glue in numpy)
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 2), (2, 8), (8, 2), (8, 8), (32, 32), (64, 64)])
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("dtype_x_str", ["bfloat16", "float16", "float32"])
def test_tensor_atomic_rmw(mode, shape, axis, dtype_x_str):
    shape0, shape1 = shape
    kernel = launch(make_kernel('''
@triton.jit
def kernel(Z, X, OLD, AXIS: tl.constexpr, SHAPE0: tl.constexpr, SHAPE1: tl.constexpr, DTYPE: tl.constexpr):
    off0 = tl.arange(0, SHAPE0)
    off1 = tl.arange(0, SHAPE1)
    x = tl.load(X + off0[:, None] * SHAPE1 + off1[None, :])
    if DTYPE == tl.float16:
        # sum can have bad numerics when accumulating in float16.
        x = x.to(tl.float32)
    z = tl.sum(x, axis=AXIS)
    if DTYPE == tl.float16:
        z = z.to(DTYPE)
    if AXIS == 1:
        old = tl.atomic_add(Z + off0, z)
        tl.store(OLD + off0, old)
    else:
        old = tl.atomic_add(Z + off1, z)
        tl.store(OLD + off1, old)
'''), mode)
    rs = np.random.RandomState(17)
    x = numpy_random((shape0, shape1), dtype_x_str, rs)
    z_shape = (shape0,) if axis == 1 else (shape1,)
    z = numpy_random(z_shape, dtype_x_str, rs)
    s = np.sum(x.astype(np.float64), axis=axis)
    z_ref = z.astype(np.float64) + s
    z_tri, old_tri = to_device(z, dtype_x_str), empty_device(z_shape, dtype_x_str)
    kernel[(1,)](z_tri, to_device(x, dtype_x_str), old_tri, axis, shape0, shape1,
                 tl.float16 if dtype_x_str == "float16" else None)
    # the sum rounds to the element type, then z + sum rounds again: half an ulp of the
    # operands' size each (bf16 keeps 8 bits, f16 11).  The sum itself runs in f32, except
    # bf16's, whose partial sums may each round to bf16 (at most one rounding per term)
    ulp = {"bfloat16": 2.0 ** -8, "float16": 2.0 ** -11, "float32": 2.0 ** -24}[dtype_x_str]
    n_terms = x.shape[axis]
    sum_ulp = ulp if dtype_x_str == "bfloat16" else 2.0 ** -24
    tol = ulp * (np.abs(z) + 2 * np.abs(s)) + n_terms * sum_ulp * np.sum(np.abs(x), axis=axis)
    assert np.all(np.abs(z_tri.numpy() - z_ref) <= tol + 1e-30), (z_tri.numpy(), z_ref)
    np.testing.assert_equal(z, old_tri.numpy())


# size 64 and 128 (4096 and 16384 lanes) wait for the big-tile lowering (another issue's part)
@pytest.mark.parametrize("size", [2, 4, 8, 32])
@pytest.mark.parametrize("dtype_x_str", ["bfloat16", "float16", "float32"])
def test_tensor_atomic_add_non_exclusive_offset(mode, size, dtype_x_str):
    kernel = launch(make_kernel('''
@triton.jit
def kernel(X, val, NUM: tl.constexpr):
    off = tl.arange(0, NUM)
    offset = off[:, None] * NUM + off[None, :]
    val = tl.load(val + offset)
    tl.atomic_add(X + offset // 2, val)
'''), mode)
    shape = (size // 2, size)
    x = to_device(np.zeros(shape, _np(dtype_x_str)), dtype_x_str)
    val = numpy_random(size ** 2, dtype_x_str, np.random.RandomState(3))
    kernel[(1,)](x, to_device(val, dtype_x_str), size, num_warps=1)
    # each pair adds once onto zero: one rounding, the same as numpy's in the element type
    ref = (val[0::2] + val[1::2]).astype(_np(dtype_x_str))
    if dtype_x_str == "bfloat16":
        ref = _round_bf16(ref)
    np.testing.assert_array_equal(ref, x.numpy().reshape(-1))


@pytest.mark.parametrize("shape", [(2, 2), (4, 4), (5, 5), (6, 6), (8, 8)])
@pytest.mark.parametrize("idx_order", ["increase", "decrease", "random_no_duplication", "random"])
@pytest.mark.parametrize("mask_step", range(1, 5))
@pytest.mark.parametrize("dtype_x_str", ["bfloat16", "float16", "float32"])
def test_tensor_atomic_add_access_patterns(mode, shape, idx_order, mask_step, dtype_x_str):
    kernel = launch(make_kernel('''
@triton.jit
def kernel(in_ptr, idx_ptr, out_ptr, shape0, shape1, mask_step, XBLOCK: tl.constexpr):
    xoffset = tl.program_id(0) * XBLOCK
    x_idx = xoffset + tl.arange(0, XBLOCK)[:]
    mask = x_idx < shape0 * shape1
    mask = mask and (x_idx % mask_step != 0)
    idx_base = shape1 * (x_idx // shape1)
    idx_offset = tl.load(idx_ptr + x_idx, mask)
    in_elem = tl.load(in_ptr + x_idx, mask)
    tl.atomic_add(out_ptr + (idx_offset + idx_base), in_elem, mask, sem='relaxed')
'''), mode)
    shape0, shape1 = shape
    rs = np.random.RandomState(23)
    row = np.arange(shape1)
    if idx_order == "increase":
        idx = np.stack([np.repeat(row, i + 1)[:shape1] for i in range(shape0)])
    elif idx_order == "decrease":
        idx = np.stack([np.repeat(row[::-1], i + 1)[:shape1] for i in range(shape0)])
    elif idx_order == "random_no_duplication":
        idx = np.stack([rs.permutation(shape1) for _ in range(shape0)])
    else:
        idx = rs.randint(0, shape1, size=(shape0, shape1))
    idx = idx.astype(np.int32)
    val = numpy_random(shape, dtype_x_str, rs)
    dst = numpy_random(shape, dtype_x_str, rs)
    ref = dst.astype(np.float64)
    cnt = 0
    for i, r in enumerate(idx):
        for j, elem in enumerate(r):
            if cnt % mask_step != 0:
                ref[i][elem] += val[i][j]
            cnt += 1
    out = to_device(dst, dtype_x_str)
    kernel[(1,)](to_device(val, dtype_x_str), to_device(idx), out, shape0, shape1, mask_step, 64)
    # each step rounds to the element type (up to 4 steps onto values of about 1): bf16 keeps
    # 8 bits (about 4e-3 of up to ~6 per step), f16 11 bits
    atol = 0.07 if dtype_x_str == "bfloat16" else 1e-2
    np.testing.assert_allclose(ref, out.numpy(), atol=atol)


def test_tensor_atomic_rmw_block(mode):
    kernel = launch(make_kernel('''
@triton.jit
def kernel(X, SHAPE0: tl.constexpr, SHAPE1: tl.constexpr):
    off0 = tl.arange(0, SHAPE0)
    off1 = tl.arange(0, SHAPE1)
    offs = off0[:, None] * SHAPE1 + off1[None, :]
    val = offs.to(tl.float32)
    x = X + offs
    tl.atomic_min(x, val)
'''), mode)
    x = to_device(np.ones((8, 8), np.float32))
    kernel[(2,)](x, 8, 8)
    ref = np.minimum(np.ones(64, np.float32), np.arange(64, dtype=np.float32)).reshape(8, 8)
    np.testing.assert_array_equal(x.numpy(), ref)


def test_atomic_rmw_predicate(mode):
    kernel = launch(make_kernel('''
@triton.jit
def kernel(X):
    val = tl.program_id(0)
    if val < 64:
        tl.atomic_max(X, val)
'''), mode)
    x = to_device(np.zeros(1, np.int32))
    kernel[(4096 if mode == "device" else 256,)](x)
    assert x.numpy()[0] == 63


# ---------------------------------------------------------------------------------------
# compare-and-swap
# ---------------------------------------------------------------------------------------
def test_atomic_cas_changes_the_value(mode):
    change_value = launch(make_kernel('''
@triton.jit
def kernel(Lock):
    tl.atomic_cas(Lock, 0, 1)
'''), mode)
    lock = to_device(np.zeros(1, np.int32))
    change_value[(1,)](lock)
    assert lock.numpy()[0] == 1


@pytest.mark.parametrize("sem", [None, "acquire", "release", "acq_rel", "relaxed"])
def test_atomic_cas_spin_lock(mode, sem):
    """Triton's serialized_add: only one program at a time in the critical section."""
    serialized_add = launch(make_kernel('''
@triton.jit
def kernel(data, Lock, SEM: tl.constexpr):
    ptrs = data + tl.arange(0, 128)
    while tl.atomic_cas(Lock, 0, 1, SEM) == 1:
        pass
    tl.store(ptrs, tl.load(ptrs) + 1.0)
    # insert barrier to set a fence between tl.store and tl.atomic_xchg in a block.
    tl.debug_barrier()
    # release lock
    tl.atomic_xchg(Lock, 0)
'''), mode)
    lock, data = to_device(np.zeros(1, np.int32)), to_device(np.zeros(128, np.float32))
    if mode == "device" and loop_limit.loop_iteration_limit(get_device()) is not None:
        # a program may spin past the 65,535 loop iterations lavapipe < 26 allows while another
        # holds the lock: then the launch must fail, never return a short count
        try:
            serialized_add[(2000,)](data, lock, SEM=sem)
        except triton.DeviceError as e:
            assert "65535" in str(e)
            return
    else:
        serialized_add[(2000,)](data, lock, SEM=sem)
    np.testing.assert_array_equal(data.numpy(), np.full(128, 2000.0, np.float32))
    assert lock.numpy()[0] == 0


CAS_TYPES = ["int16", "uint16", "float16", "bfloat16", "int32", "uint32", "float32", "int64", "uint64", "float64"]


@pytest.mark.parametrize("dtype", CAS_TYPES)
@pytest.mark.parametrize("sem", [None, "acquire", "release", "acq_rel", "relaxed"])
def test_tensor_atomic_cas(mode, dtype, sem):
    """Triton's test_tensor_atomic_cas over 16-, 32- and 64-bit types (Triton's uses int64)."""
    change_value = launch(make_kernel('''
@triton.jit
def kernel(X, BLOCK_SIZE: tl.constexpr, sem: tl.constexpr, DTYPE: tl.constexpr):
    pid = tl.program_id(axis=0)
    block_start = pid * BLOCK_SIZE
    offsets = block_start + tl.arange(0, BLOCK_SIZE)
    t1 = tl.full((BLOCK_SIZE, ), 0, dtype=DTYPE)
    t2 = tl.full((BLOCK_SIZE, ), 2, dtype=DTYPE)
    tl.atomic_cas(X + offsets, t1, t2, sem=sem)
'''), mode)
    x = to_device(np.array([0, 1, 0, 1, 0, 1, 0, 1], _np(dtype)), dtype)
    change_value[(2,)](x, 4, sem, tl.bfloat16 if dtype == "bfloat16" else getattr(tl, dtype))
    np.testing.assert_array_equal(x.numpy(), np.array([2, 1, 2, 1, 2, 1, 2, 1], _np(dtype)))


@pytest.mark.parametrize("dtype", CAS_TYPES)
def test_atomic_cas_old_values_and_neighbours(mode, dtype):
    """Distinct addresses: each lane gets its element's old value back, swaps only where it
    matched (floats compared bit for bit: -0.0 does not match 0.0), and 16-bit elements
    leave the other half of their 32-bit word alone."""
    kernel = launch(make_kernel('''
@triton.jit
def kernel(X, CMP, VAL, OLD, N: tl.constexpr):
    off = tl.arange(0, N)
    old = tl.atomic_cas(X + off * 2, tl.load(CMP + off), tl.load(VAL + off))
    tl.store(OLD + off, old)
'''), mode)
    n = 32
    rs = np.random.RandomState(9)
    x0 = rs.randint(0, 100, 2 * n).astype(_np(dtype))
    cmp = np.where(rs.rand(n) < 0.5, x0[0::2], x0[0::2] + 1).astype(_np(dtype))
    if "float" in dtype:
        x0[0], cmp[0] = 0.0, -0.0       # equal as numbers, not as bits: no swap
    val = rs.randint(100, 200, n).astype(_np(dtype))
    x, old = to_device(x0, dtype), empty_device(n, dtype)
    kernel[(1,)](x, to_device(cmp, dtype), to_device(val, dtype), old, N=n)
    bits = {2: np.uint16, 4: np.uint32, 8: np.uint64}    # bf16 values are float32 on the host
    hit = np.ascontiguousarray(x0[0::2]).view(bits[x0.itemsize]) == cmp.view(bits[cmp.itemsize])
    want = x0.copy()
    want[0::2] = np.where(hit, val, x0[0::2])
    np.testing.assert_array_equal(x.numpy(), want)
    np.testing.assert_array_equal(old.numpy(), x0[0::2])


@pytest.mark.parametrize("dtype", CAS_TYPES)
def test_atomic_cas_counter(mode, dtype):
    """The compare-and-swap retry pattern: every program increments one counter by trying
    cas(C, guess, guess + 1) until its guess was the value there."""
    kernel = launch(make_kernel('''
@triton.jit
def kernel(C, DONE, TRIES: tl.constexpr):
    guess = tl.load(C)
    done = 0
    for _ in range(TRIES):
        if done == 0:
            old = tl.atomic_cas(C, guess, guess + 1)
            if old == guess:
                done = 1
            guess = old
    tl.store(DONE + tl.program_id(0), done)
'''), mode)
    programs = 64
    c, done = to_device(np.zeros(1, _np(dtype)), dtype), to_device(np.zeros(programs, np.int32))
    kernel[(programs,)](c, done, TRIES=1000)
    np.testing.assert_array_equal(done.numpy(), np.ones(programs, np.int32))
    assert c.numpy()[0] == programs


# ---------------------------------------------------------------------------------------
# what Triton refuses, refused the same way (one line naming the problem)
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("expr, dtype, message", [
    ("tl.atomic_max(Z, 1.0)", "float16", "atomic_max does not support f16"),
    ("tl.atomic_xchg(Z, 1.0)", "bfloat16", "atomic_xchg does not support bf16"),
    ("tl.atomic_and(Z, 1.0)", "float32", "atomic_and does not support f32"),
    ("tl.atomic_add(Z, 1)", "int16", "atomic_add does not support i16"),
    ("tl.atomic_cas(Z, 0, 1)", "int8", "atomic_cas does not support i8"),
    ("tl.atomic_add(Z, 1, sem='seq_cst')", "int32", "sem must be one of"),
    ("tl.atomic_add(Z, 1, scope='grid')", "int32", "scope must be one of"),
])
def test_atomic_refusals(mode, expr, dtype, message):
    kernel = launch(make_kernel(f'''
@triton.jit
def kernel(Z):
    {expr}
'''), mode)
    with pytest.raises(CompilationError, match=message):
        kernel[(1,)](empty_device(4, dtype))


def test_retry_loops_past_the_drivers_loop_limit_are_an_error_or_right(mode):
    """70,000 f16 atomic adds in one program: each is a compare-and-swap loop, so on a driver
    that cuts loops after 65,535 header visits (lavapipe before Mesa 26) the launch must fail
    with an error, never leave a short count; elsewhere every count is exact (under 2048)."""
    kernel = launch(make_kernel('''
@triton.jit
def kernel(Z, n):
    for i in range(n):
        tl.atomic_add(Z + i % 64, 1.0)
'''), mode)
    z = to_device(np.zeros(64, np.float16))
    n = 70_000
    limited = mode == "device" and loop_limit.loop_iteration_limit(get_device()) is not None
    if limited:
        with pytest.raises(triton.DeviceError, match="65535"):
            kernel[(1,)](z, n)
        return
    kernel[(1,)](z, n)
    np.testing.assert_array_equal(z.numpy(), np.bincount(np.arange(n) % 64, minlength=64).astype(np.float16))


# ---------------------------------------------------------------------------------------
# histogram, gather, topk
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("M, N", [[2048, 2], [1024, 8], [1024, 128], [256, 512], [32, 512], [8, 512], [8, 2]])
def test_histogram(mode, M, N):
    histogram_kernel = launch(make_kernel('''
@triton.jit
def kernel(x_ptr, z_ptr, M: tl.constexpr, N: tl.constexpr):
    offset1 = tl.arange(0, M)
    offset2 = tl.arange(0, N)
    x = tl.load(x_ptr + offset1)
    z = tl.histogram(x, N)
    bias = tl.full([M, N], 1, dtype=tl.int32)
    # check that histogram produces object compatible with broadcasting
    biased = z + bias
    tl.store(z_ptr + offset2, z)
'''), mode)
    x = np.random.RandomState(17).randint(0, N, M).astype(np.int32)
    z = empty_device(N, "int32")
    histogram_kernel[(1,)](to_device(x), z, M=M, N=N)
    np.testing.assert_array_equal(z.numpy(), np.histogram(x, bins=N, range=(0, N))[0])


@pytest.mark.parametrize("M, N", [[1, 1], [2, 4], [8, 16], [32, 32]])
@pytest.mark.parametrize("dtype", ["int32", "uint8", "int16"])
def test_histogram_mask_and_out_of_range(mode, M, N, dtype):
    """Masked-off elements and values outside [0, N) (negative ones too) are not counted."""
    kernel = launch(make_kernel('''
@triton.jit
def kernel(x_ptr, z_ptr, M: tl.constexpr, N: tl.constexpr):
    offset1 = tl.arange(0, 2 * M)
    offset2 = tl.arange(0, N)
    mask = offset1 < M
    x = tl.load(x_ptr + offset1)
    z = tl.histogram(x, N, mask)
    tl.store(z_ptr + offset2, z)
'''), mode)
    rs = np.random.RandomState(M + N)
    low = -3 if dtype.startswith("int") else 0
    x1 = rs.randint(low, N + 3, M)
    x = np.concatenate([x1, rs.randint(0, N, M)]).astype(dtype)
    z = empty_device(N, "int32")
    kernel[(1,)](to_device(x), z, M=M, N=N)
    keep = x1[(x1 >= 0) & (x1 < N)]
    np.testing.assert_array_equal(z.numpy(), np.bincount(keep, minlength=N)[:N])


GATHER_CASES = [([4, 4], [8, 4], 0), ([64, 32], [128, 32], 0), ([64, 32], [64, 64], 1), ([32], [64], 0),
                ([16, 8], [16, 2], 1), ([8, 16], [4, 16], 0)]


@pytest.mark.parametrize("src_shape, indices_shape, axis", GATHER_CASES)
@pytest.mark.parametrize("dtype", ["float32", "float16", "int32", "int8", "bfloat16"])
def test_gather(mode, src_shape, indices_shape, axis, dtype):
    if len(src_shape) == 1:
        src_shape, indices_shape = [1] + src_shape, [1] + indices_shape
        axis = 1
    kernel = launch(make_kernel('''
@triton.jit
def kernel(src_ptr, idx_ptr, out_ptr, axis: tl.constexpr, S0: tl.constexpr, S1: tl.constexpr,
           I0: tl.constexpr, I1: tl.constexpr):
    src_offs = tl.arange(0, S0)[:, None] * S1 + tl.arange(0, S1)[None, :]
    src = tl.load(src_ptr + src_offs)
    idx_offs = tl.arange(0, I0)[:, None] * I1 + tl.arange(0, I1)[None, :]
    idx = tl.load(idx_ptr + idx_offs)
    out = tl.gather(src, idx, axis)
    tl.store(out_ptr + idx_offs, out)
'''), mode)
    rs = np.random.RandomState(1)
    src = numpy_random(src_shape, dtype, rs)
    idx = rs.randint(0, src_shape[axis], indices_shape).astype(np.int32)
    out = empty_device(indices_shape, dtype)
    kernel[(1,)](to_device(src, dtype), to_device(idx), out, axis, *src_shape, *indices_shape)
    np.testing.assert_array_equal(out.numpy(), np.take_along_axis(src, idx, axis))


def test_gather_method_and_index_types(mode):
    kernel = launch(make_kernel('''
@triton.jit
def kernel(src_ptr, idx_ptr, out_ptr, N: tl.constexpr):
    offs = tl.arange(0, N)
    src = tl.load(src_ptr + offs)
    idx = tl.load(idx_ptr + offs)
    tl.store(out_ptr + offs, src.gather(idx, 0))
'''), mode)
    src = np.arange(16, dtype=np.float32) * 1.5
    idx = np.random.RandomState(4).randint(0, 16, 16).astype(np.uint8)
    out = empty_device(16, "float32")
    kernel[(1,)](to_device(src), to_device(idx), out, N=16)
    np.testing.assert_array_equal(out.numpy(), src[idx])


def test_gather_refusals(mode):
    kernel = launch(make_kernel('''
@triton.jit
def kernel(src_ptr, out_ptr):
    src = tl.load(src_ptr + tl.arange(0, 8)[:, None] * 4 + tl.arange(0, 4)[None, :])
    idx = tl.zeros([8, 2], dtype=tl.int32)
    tl.store(out_ptr + tl.arange(0, 8)[:, None] * 2 + tl.arange(0, 2)[None, :], tl.gather(src, idx, 0))
'''), mode)
    with pytest.raises(CompilationError, match="index dim 1 is 2 but the source's is 4"):
        kernel[(1,)](empty_device(32, "float32"), empty_device(16, "float32"))


# small tiles, as test_core_lang's test_sort: topk is a bitonic sort, log2(n)^2/2 stages that
# the lowering unrolls in full today (a [4, 64] tile took lavapipe past 8 GB)
@pytest.mark.parametrize("M, N, k", [(1, 16, 1), (1, 16, 4), (2, 16, 8), (1, 32, 32), (4, 8, 2)])
@pytest.mark.parametrize("dtype", ["float32", "float16", "int32", "uint8"])
def test_topk(mode, M, N, k, dtype):
    kernel = launch(make_kernel('''
@triton.jit
def kernel(X, Z, M: tl.constexpr, N: tl.constexpr, k: tl.constexpr):
    offs_m = tl.arange(0, M)
    offs_x_n = tl.arange(0, N)
    offs_z_n = tl.arange(0, k)
    offs_x = offs_m[:, None] * N + offs_x_n[None, :]
    x = tl.load(X + offs_x)
    z = tl.topk(x, k)
    offs_z = offs_m[:, None] * k + offs_z_n[None, :]
    tl.store(Z + offs_z, z)
'''), mode)
    x = numpy_random((M, N), dtype, np.random.RandomState(M * N + k))
    z = empty_device((M, k), dtype)
    kernel[(1,)](to_device(x), z, M=M, N=N, k=k)
    np.testing.assert_array_equal(z.numpy(), -np.sort(-x.astype(np.float64), axis=1)[:, :k].astype(dtype))


def test_topk_refusals(mode):
    kernel = launch(make_kernel('''
@triton.jit
def kernel(X, Z):
    x = tl.load(X + tl.arange(0, 16))
    y = tl.topk(x, 3)
    tl.store(Z, tl.sum(y))
'''), mode)
    with pytest.raises(CompilationError, match="topk needs k a power of two"):
        kernel[(1,)](empty_device(16, "float32"), empty_device(3, "float32"))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_plain_and_atomic_access_to_one_16bit_buffer(mode, dtype):
    """Plain 16-bit stores and loads and word-wide atomics on one buffer see each other, in
    program order (the two declarations of the buffer are Aliased), and the sum rounds to
    nearest even: 1 + 2^-11 + 2^-11 is 1 + 2^-10 in f16, where truncation would give 1."""
    kernel = launch(make_kernel('''
@triton.jit
def kernel(Z, X, OUT, N: tl.constexpr):
    off = tl.arange(0, N)
    x = tl.load(X + off)
    tl.store(Z + off, x)
    old = tl.atomic_add(Z + off, x * 0.5)
    tl.store(OUT + off, tl.load(Z + off) - old)
'''), mode)
    n = 16
    x = np.full(n, 1 + 2.0 ** -10, np.float32) if dtype == "float16" else \
        np.arange(n, dtype=np.float32) + 1
    z, out = empty_device(n, dtype), empty_device(n, dtype)
    kernel[(1,)](z, to_device(x, dtype), out, N=n)
    rnd = _round_bf16 if dtype == "bfloat16" else lambda v: v.astype(np.float16)
    xd = rnd(x)
    want = rnd(xd.astype(np.float32) + rnd(xd.astype(np.float32) * np.float32(0.5)).astype(np.float32))
    np.testing.assert_array_equal(z.numpy(), want)


@pytest.mark.parametrize("native", [True, False])
def test_float_add_is_native_where_the_device_has_it(native):
    """With shaderBufferFloat32AtomicAdd an f32 add is one OpAtomicFAddEXT and a loop-limited
    CPU driver keeps its program loop; without it, a retry loop, the hidden status buffer and
    one program per workgroup (the retry count has no bound)."""
    from spvjit.codegen.compiler import compile_kernel
    from spvjit.codegen.loop_budget import STATUS_PARAM
    from spvjit.codegen.spirv.tools import disassemble, validate
    from spvjit.codegen.target import Target
    kernel = make_kernel('''
@triton.jit
def kernel(Z, X, N: tl.constexpr):
    off = tl.arange(0, N)
    tl.atomic_add(Z + off % 4, tl.load(X + off))
''')
    z, x = to_device(np.zeros(4, np.float32)), to_device(np.ones(16, np.float32))
    target = Target(device_type="cpu", subgroup_size=8, loop_iteration_limit=65535,
                    float32_atomic_add=native, max_texel_buffer_elements=1 << 20)
    ck = compile_kernel(kernel.ir_module(z, x, N=16), target)
    validate(ck.spirv, target_env="vulkan1.3")
    asm = disassemble(ck.spirv)
    assert ("OpAtomicFAddEXT" in asm) == native
    assert ("OpAtomicCompareExchange" in asm) != native
    assert ck.program_loop == native
    assert any(bd.name == STATUS_PARAM for bd in ck.bindings) != native


def test_64_bit_atomics_need_the_device_feature():
    """Without shaderBufferInt64Atomics a 64-bit atomic is one DeviceError naming the feature."""
    import dataclasses
    from spvjit.compiler import check_device_support
    from spvjit.codegen.compiler import compile_kernel
    from spvjit.codegen.target import Target
    from spvjit.runtime import get_device
    kernel = make_kernel('''
@triton.jit
def kernel(Z):
    tl.atomic_add(Z, 1)
''')
    z = to_device(np.zeros(1, np.int64), "int64")
    spec, _ = kernel.specialize([z], {})
    caps = dataclasses.replace(get_device().caps, int64_atomics=False)
    ck = compile_kernel(kernel.ir_module(z), Target.of(caps), spec.num_warps, {})
    assert "Int64Atomics" in ck.capabilities
    with pytest.raises(triton.DeviceError, match=r"64-bit atomics \(shaderBufferInt64Atomics\)"):
        check_device_support(ck, caps)
