"""The shared scratch is an array of uvec4 (codegen/memory.py): a lane's 4 consecutive words
move as one access, single words through a component pointer.  These tests would catch a
driver (or a lowering) that turns a component store into a read-modify-write of the whole
uvec4: lanes of one subgroup write neighbouring components of the same uvec4 at once, and the
values are compared with numpy; and they pin the 4x drop in Workgroup accesses."""
import dataclasses

import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit.codegen.compiler import compile_kernel
from spvjit.codegen.spirv.disasm import workgroup_accesses
from spvjit.codegen.target import Target
from spvjit.compiler import _build_ir
from spvjit.runtime import get_device


@spvjit.kernel
def gather_rounds(x_ptr, i_ptr, y_ptr, N: sl.constexpr, ROUNDS: sl.constexpr):
    o = sl.arange(0, N)
    x = sl.load(x_ptr + o)
    idx = sl.load(i_ptr + o)
    for _ in sl.static_range(ROUNDS):
        x = sl.gather(x, idx, 0) + 1
    sl.store(y_ptr + o, x)


@spvjit.kernel
def histogram_of(x_ptr, y_ptr, N: sl.constexpr, B: sl.constexpr):
    x = sl.load(x_ptr + sl.arange(0, N))
    sl.store(y_ptr + sl.arange(0, B), sl.histogram(x, B))


@spvjit.kernel
def trans_twice(x_ptr, y_ptr, BM: sl.constexpr, BN: sl.constexpr):
    r = sl.arange(0, BM)[:, None] * BN + sl.arange(0, BN)[None, :]
    x = sl.load(x_ptr + r)
    sl.store(y_ptr + r, sl.trans(sl.trans(x) * 2))


@spvjit.kernel
def trans_store(x_ptr, y_ptr, BM: sl.constexpr, BN: sl.constexpr):
    x = sl.load(x_ptr + sl.arange(0, BM)[:, None] * BN + sl.arange(0, BN)[None, :])
    sl.store(y_ptr + sl.arange(0, BN)[:, None] * BM + sl.arange(0, BM)[None, :], sl.trans(x))


@pytest.mark.parametrize("n", [8, 16, 32, 64, 256])
def test_lanes_writing_components_of_one_uvec4_lose_nothing(needs_device, n):
    """8 and 16 elements on 8 lanes (layout v=1): lanes 0-3 store the 4 components of one uvec4
    in the same instruction; 64 and 256 (v=4): each lane stores whole uvec4s.  Exact integers:
    any lost or stale word shows."""
    rng = np.random.default_rng(n)
    for trial in range(5):
        xs = rng.integers(-1000, 1000, n).astype(np.int32)
        ix = rng.permutation(n).astype(np.int32)
        want = xs.copy()
        for _ in range(6):
            want = want[ix] + 1
        y = spvjit.empty((n,), np.int32)
        gather_rounds[(16,)](spvjit.tensor(xs), spvjit.tensor(ix), y, N=n, ROUNDS=6)
        np.testing.assert_array_equal(y.numpy(), want)


@pytest.mark.parametrize("n,bins", [(64, 16), (256, 8), (32, 32), (128, 4)])
def test_workgroup_atomics_on_component_pointers_count_every_element(needs_device, n, bins):
    xs = np.random.default_rng(bins).integers(0, bins, n).astype(np.int32)
    y = spvjit.empty((bins,), np.int32)
    histogram_of[(1,)](spvjit.tensor(xs), y, N=n, B=bins)
    np.testing.assert_array_equal(y.numpy(), np.bincount(xs, minlength=bins))


@pytest.mark.parametrize("shape,dt", [((64, 64), np.float32), ((32, 64), np.float16), ((64, 16), np.int32),
                                      ((32, 32), np.int64), ((16, 16), np.float32), ((8, 8), np.float32),
                                      ((4, 64), np.float32)])
def test_transposes_through_the_vec4_scratch_match_numpy(needs_device, shape, dt):
    if dt == np.int64 and not get_device().caps.int64:
        pytest.skip("no 64-bit integers on this device")
    rng = np.random.default_rng(1)
    xs = (rng.integers(-2**40, 2**40, shape) if dt == np.int64 else rng.standard_normal(shape)).astype(dt)
    x, y, t = spvjit.tensor(xs), spvjit.empty(shape, dt), spvjit.empty(shape[::-1], dt)
    trans_twice[(1,)](x, y, BM=shape[0], BN=shape[1])
    trans_store[(1,)](x, t, BM=shape[0], BN=shape[1])
    # doubling is exact in every type here (f16 values of N(0,1) stay far from overflow)
    np.testing.assert_array_equal(y.numpy(), xs * dt(2))
    np.testing.assert_array_equal(t.numpy(), xs.T)


def _compile(jitfn, target, *args, **kwargs):
    spec, _ = jitfn.specialize(list(args), dict(kwargs))
    notes = {}
    kernel = _build_ir(jitfn, spec, optimize=True)
    ck = compile_kernel(kernel, target, spec.num_warps, spec.divisibility or {}, notes)
    return ck, {op.name: notes.get(id(op), "") for op in kernel.walk()}


@pytest.mark.usefixtures("one_subgroup")      # whole 64x64 tiles, not slices of them
def test_a_64x64_transpose_takes_a_quarter_of_the_shared_accesses():
    """trans of a 64x64 f32 tile on 8 lanes: 512 registers per lane.  Word by word that was 512
    Workgroup stores and 512 loads per trans; as uvec4 (each lane's 4x4 blocks, stored in
    destination order) it is 128 of each."""
    target = Target.of(get_device().kernel_caps)
    if not target.cpu or target.subgroup_size != 8:
        pytest.skip("counts worked out for one 8-lane subgroup (lavapipe)")
    t = spvjit.tensor(np.zeros((64, 64), np.float32))
    ck, notes = _compile(trans_twice, target, t, t, BM=64, BN=64)
    assert "destination-ordered uvec4 scratch" in notes["trans"], notes["trans"]
    stores, loads = workgroup_accesses(ck.spirv)
    regs = 64 * 64 // 8
    assert stores <= 2 * regs // 4 + 4 and loads <= 2 * regs // 4 + 4, (stores, loads)


@pytest.mark.parametrize("BK", [16, 32])
def test_the_looped_dot_reads_staged_a_four_steps_per_uvec4(needs_device, monkeypatch, BK):
    """A with a second user is staged in the scratch (block_loops.py, a_mode "shared"); with K
    and the steps per trip multiples of 4 each row's A[i, k..k+3] is one uvec4 load at a
    uniform address.  Partial tiles and a K tail (K = 40) check the addressing."""
    from test_big_tiles import _operands, kloop_dot
    monkeypatch.setenv("SPVJIT_DOT_UNROLL_LIMIT", "0")
    M, N, K, BM, BN = 45, 70, 40, 32, 32
    a, b = _operands(M, N, K, np.float32, seed=3)
    ta, tb, c = spvjit.tensor(a), spvjit.tensor(b), spvjit.zeros((M, N), np.float32)
    target = dataclasses.replace(Target.of(get_device().kernel_caps), dot_unroll_limit=0)
    _, notes = _compile(kloop_dot, target, ta, tb, c, M, N, K, BM=BM, BN=BN, BK=BK, VARIANT="a_used_twice")
    assert "A in shared memory" in notes["dot"] and "4 steps per uvec4" in notes["dot"], notes["dot"]
    grid = (spvjit.cdiv(M, BM), spvjit.cdiv(N, BN))
    kloop_dot[grid](ta, tb, c, M, N, K, BM=BM, BN=BN, BK=BK, VARIANT="a_used_twice")
    # 40 f32 products of N(0,1) terms, summed in another order than numpy: |err| < 1e-4
    np.testing.assert_allclose(c.numpy(), a.astype(np.float64) @ b, atol=1e-4, rtol=1e-5)


@spvjit.kernel
def reduce_rows(x_ptr, y_ptr, M: sl.constexpr, N: sl.constexpr, KIND: sl.constexpr):
    x = sl.load(x_ptr + sl.arange(0, M)[:, None] * N + sl.arange(0, N)[None, :])
    if KIND == "sum":
        r = sl.sum(x, axis=1)
    elif KIND == "max":
        r = sl.max(x, axis=1)
    else:
        r = sl.argmax(x, axis=1)
    sl.store(y_ptr + sl.arange(0, M), r)


@pytest.mark.parametrize("M,N,dt,kind", [(512, 8, np.float32, "sum"), (1024, 4, np.int32, "max"),
                                         (512, 16, np.float32, "argmax"), (512, 8, np.int64, "sum"),
                                         (512, 2, np.float32, "sum")])
@pytest.mark.usefixtures("one_subgroup")      # whole tiles: slices of 128 rows would not stage
def test_staged_row_reductions_read_four_words_at_a_time(needs_device, M, N, dt, kind):
    """More rows than one subgroup reduces (256) stage the tile; each row's N words are
    consecutive and 4-aligned (N % 4 == 0), so they come back a uvec4 at a time (N = 2: word
    by word).  Integer-valued data: every sum is exact in any order."""
    if dt == np.int64 and not get_device().caps.int64:
        pytest.skip("no 64-bit integers on this device")
    rng = np.random.default_rng(M + N)
    xs = rng.integers(-2**20, 2**20, (M, N)).astype(dt)
    if dt == np.int64:
        xs = xs * (2**30)                         # the high words matter
    want = {"sum": lambda a: a.sum(axis=1), "max": lambda a: a.max(axis=1),
            "argmax": lambda a: a.argmax(axis=1).astype(np.int32)}[kind](xs)
    y = spvjit.empty((M,), want.dtype)
    target = Target.of(get_device().kernel_caps)
    ck, notes = _compile(reduce_rows, target, spvjit.tensor(xs), y, M=M, N=N, KIND=kind)
    if target.cpu and target.subgroup_size == 8:
        assert "shared memory" in notes["reduce"], notes["reduce"]
        words = M * N // 8 * (2 if dt == np.int64 else 1)         # per lane
        stores, loads = workgroup_accesses(ck.spirv)
        assert stores == words // 4, (stores, words)
        assert (loads == words // 4) if N % 4 == 0 else (loads == words), (loads, words)
    reduce_rows[(1,)](spvjit.tensor(xs), y, M=M, N=N, KIND=kind)
    np.testing.assert_array_equal(y.numpy(), want)
