"""`dot` on big tiles as a loop over k (codegen/block_loops.py, dot_operands.py): results against
numpy on the device and in the interpreter, the staged fallbacks, the loop budget, and the
SPIR-V size that no longer grows with K."""
import dataclasses

import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit.codegen import dot_loop_plan
from spvjit.codegen.compiler import compile_kernel
from spvjit.codegen.spirv.tools import disassemble
from spvjit.codegen.target import Target
from spvjit.compiler import _build_ir
from spvjit.runtime import get_device

pytestmark = pytest.mark.usefixtures("one_subgroup")     # their notes are one subgroup's

MODES = ["device", "interpreter"]


def launch(kernel, mode):
    return spvjit.interpret(kernel) if mode == "interpreter" else kernel


@spvjit.kernel
def tile_dot(a_ptr, b_ptr, c_ptr, M: sl.constexpr, N: sl.constexpr, K: sl.constexpr, OUT: sl.constexpr):
    rm = sl.arange(0, M)
    rn = sl.arange(0, N)
    rk = sl.arange(0, K)
    a = sl.load(a_ptr + rm[:, None] * K + rk[None, :])
    b = sl.load(b_ptr + rk[:, None] * N + rn[None, :])
    sl.store(c_ptr + rm[:, None] * N + rn[None, :], sl.dot(a, b, out_dtype=OUT))


def _operands(M, N, K, dt, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dt).kind == "i":
        return rng.integers(-100, 100, (M, K)).astype(dt), rng.integers(-100, 100, (K, N)).astype(dt)
    return rng.standard_normal((M, K)).astype(dt), rng.standard_normal((K, N)).astype(dt)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("M,N,K", [(64, 64, 64), (128, 64, 32)])
def test_big_f32_dot_matches_numpy(mode, M, N, K):
    a, b = _operands(M, N, K, np.float32)
    c = spvjit.empty((M, N), np.float32)
    launch(tile_dot, mode)[(1,)](spvjit.tensor(a), spvjit.tensor(b), c, M=M, N=N, K=K, OUT=sl.float32)
    # K <= 64 f32 products of N(0,1) terms, summed in another order than numpy: |err| < 1e-4
    np.testing.assert_allclose(c.numpy(), a.astype(np.float64) @ b, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dt,out,np_out", [(np.float16, sl.float32, np.float32), (np.int8, sl.int32, np.int32)])
def test_looped_dot_in_other_types(mode, dt, out, np_out, always_loop):
    M, N, K = 32, 64, 32
    a, b = _operands(M, N, K, dt, seed=3)
    c = spvjit.empty((M, N), np_out)
    launch(tile_dot, mode)[(1,)](spvjit.tensor(a), spvjit.tensor(b), c, M=M, N=N, K=K, OUT=out)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    if np_out == np.int32:
        np.testing.assert_array_equal(c.numpy(), ref.astype(np.int32))     # integer sums are exact
    else:
        # f16 products are exact in f32; 32 f32 adds of terms ~1: well within 1e-4
        np.testing.assert_allclose(c.numpy(), ref, atol=1e-4, rtol=1e-4)


@spvjit.kernel
def kloop_dot(a_ptr, b_ptr, c_ptr, M, N, K, BM: sl.constexpr, BN: sl.constexpr, BK: sl.constexpr,
              VARIANT: sl.constexpr):
    """Triton's tutorial form (wrapped rows, carried pointers, masked K tail) and variants that
    keep the dot from reading its operands itself."""
    rm = (sl.program_id(0) * BM + sl.arange(0, BM)) % M
    rn = (sl.program_id(1) * BN + sl.arange(0, BN)) % N
    rk = sl.arange(0, BK)
    a_ptrs = a_ptr + rm[:, None] * K + rk[None, :]
    b_ptrs = b_ptr + rk[:, None] * N + rn[None, :]
    acc = sl.zeros((BM, BN), dtype=sl.float32)
    extra = sl.zeros((BM, BK), dtype=sl.float32)
    for k in range(0, sl.cdiv(K, BK)):
        a = sl.load(a_ptrs, mask=rk[None, :] < K - k * BK, other=0.0)
        if VARIANT == "b_not_affine":
            # rows of B read in a permuted order: not affine along k, so B is staged
            perm = (rk * 5) % BK
            b = sl.load(b_ptr + (k * BK + perm)[:, None] * N + rn[None, :],
                        mask=(k * BK + perm)[:, None] < K, other=0.0)
            a = sl.load(a_ptr + rm[:, None] * K + (k * BK + perm)[None, :],
                        mask=(k * BK + perm)[None, :] < K, other=0.0)
        else:
            b = sl.load(b_ptrs, mask=rk[:, None] < K - k * BK, other=0.0)
        if VARIANT == "a_used_twice":
            extra += a              # A has a second user: it keeps its registers and is staged
        acc = sl.dot(a, b, acc)
        a_ptrs += BK
        b_ptrs += BK * N
    rows = sl.program_id(0) * BM + sl.arange(0, BM)
    cols = sl.program_id(1) * BN + sl.arange(0, BN)
    mask = (rows[:, None] < M) & (cols[None, :] < N)
    sl.store(c_ptr + rows[:, None] * N + cols[None, :], acc + sl.sum(extra, axis=1)[:, None] * 0.0, mask=mask)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", ["tutorial", "a_used_twice", "b_not_affine"])
def test_kloop_matmul_with_masked_tail(mode, variant, always_loop):
    # partial tiles everywhere and a K tail of 8; 40 f32 products of N(0,1) terms: |err| < 1e-4
    _kloop_matches_numpy(mode, variant, (32, 32, 16), (45, 70, 40), seed=7)


def _kloop_matches_numpy(mode, variant, blocks, sizes, seed):
    """kloop_dot over an M x N x K problem against numpy: at most 72 f32 products of N(0,1)
    terms per element, summed in another order than numpy: |err| < 1e-4."""
    (BM, BN, BK), (M, N, K) = blocks, sizes
    a, b = _operands(M, N, K, np.float32, seed=seed)
    c = spvjit.zeros((M, N), np.float32)
    grid = (spvjit.cdiv(M, BM), spvjit.cdiv(N, BN))
    launch(kloop_dot, mode)[grid](spvjit.tensor(a), spvjit.tensor(b), c, M, N, K, BM=BM, BN=BN, BK=BK,
                                  VARIANT=variant)
    np.testing.assert_allclose(c.numpy(), a.astype(np.float64) @ b, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("K,BK,want", [
    (40, 16, "A read as vec4 in the loop"),             # rows of A 4-aligned along k: one fetch per 4 k
    (37, 16, "A read by lane and broadcast"),           # row stride 37: no vec4; U = W = 8 copies
    (37, 4, "A loaded in the loop"),                    # U = 4 < W: one uniform load per element
])
def test_each_way_of_reading_a_matches_numpy(needs_device, always_loop, K, BK, want):
    BM, BN = 32, 32
    M, N = 45, 70
    a, b = _operands(M, N, K, np.float32, seed=11)
    ta, tb, c = spvjit.tensor(a), spvjit.tensor(b), spvjit.zeros((M, N), np.float32)
    target = dataclasses.replace(Target.of(get_device().kernel_caps), dot_unroll_limit=0)
    _, by_name, _ = _lowered_notes(kloop_dot, target, ta, tb, c, M, N, K, BM=BM, BN=BN, BK=BK,
                                   VARIANT="tutorial")
    assert want in by_name["dot"], by_name["dot"]
    grid = (spvjit.cdiv(M, BM), spvjit.cdiv(N, BN))
    kloop_dot[grid](ta, tb, c, M, N, K, BM=BM, BN=BN, BK=BK, VARIANT="tutorial")
    # <= 40 f32 products of N(0,1) terms, the K tail masked: |err| < 1e-4
    np.testing.assert_allclose(c.numpy(), a.astype(np.float64) @ b, atol=1e-4, rtol=1e-5)


def _lowered_notes(jitfn, target, *args, assume_nonneg=False, **kwargs):
    spec, _ = jitfn.specialize(list(args), dict(kwargs))
    notes = {}
    kernel = _build_ir(jitfn, spec, optimize=True)
    ck = compile_kernel(kernel, target, spec.num_warps, spec.divisibility or {}, notes,
                        assume_nonneg=assume_nonneg)
    return ck, {op.name: notes.get(id(op), "") for op in kernel.walk() if op.name in ("dot", "load")}, notes


def test_the_dot_reads_its_operands_only_where_they_are_affine_loads():
    target = dataclasses.replace(Target.of(get_device().kernel_caps), dot_unroll_limit=0)
    t = spvjit.tensor(np.zeros((64, 64), np.float32))
    for variant, want in [("tutorial", "A read as vec4 in the loop, B loaded in the loop"),
                          ("a_used_twice", "A in shared memory, B loaded in the loop"),
                          ("b_not_affine", "B in a Function array")]:
        _, by_name, _ = _lowered_notes(kloop_dot, target, t, t, t, 64, 64, 64, BM=32, BN=32, BK=16,
                                       VARIANT=variant)
        assert "loop over k" in by_name["dot"] and want in by_name["dot"], (variant, by_name["dot"])


@pytest.mark.parametrize("variant,steps", [("tutorial", 8), ("a_used_twice", 4)])
def test_a_staged_big_accumulator_takes_4_steps_per_trip(variant, steps):
    """64x64 accumulators (128 vec4 blocks per lane on 8 lanes): where A is staged in shared
    memory each copy of the k step is 64 per-lane shared loads, so a trip takes 4 steps, not W
    (dot_loop_plan.MAX_BODY_MULADDS); where the loop reads A itself the trip keeps W steps."""
    target = Target.of(get_device().kernel_caps)
    if not target.cpu or target.subgroup_size != 8:
        pytest.skip("the rule applies on CPU drivers; sized for 8-lane lavapipe")
    t = spvjit.tensor(np.zeros((64, 64), np.float32))
    target = dataclasses.replace(target, dot_unroll_limit=0)
    _, by_name, _ = _lowered_notes(kloop_dot, target, t, t, t, 64, 64, 64, BM=64, BN=64, BK=32,
                                   VARIANT=variant)
    assert f"loop over k ({32 // steps} trips of {steps} steps)" in by_name["dot"], by_name["dot"]
    spec, _ = kloop_dot.specialize([t, t, t, 64, 64, 64], dict(BM=64, BN=64, BK=32, VARIANT=variant))
    kernel = _build_ir(kloop_dot, spec, optimize=True)
    dot = next(op for op in kernel.walk() if op.name == "dot")
    gpu = dataclasses.replace(target, device_type="discrete")     # unmeasured there: W copies
    reads = dot_loop_plan.plan_dot_reads(kernel, 8, gpu)
    assert dot_loop_plan.dot_copies(dot, 8, gpu, reads) == 8
    reads.crowded = True          # as in a kernel of several big looped dots: 4 wherever A comes from
    assert dot_loop_plan.dot_copies(dot, 8, target, reads) == 4


@spvjit.kernel
def three_dots(a_ptr, b_ptr, c_ptr, M: sl.constexpr, N: sl.constexpr, K: sl.constexpr):
    """Three looped dots whose A the loops read (vec4 along k), summed: a kernel whose looped
    bodies together pass dot_loop_plan.MAX_KERNEL_MULADDS, as attention's backward does."""
    rm = sl.arange(0, M)
    rn = sl.arange(0, N)
    rk = sl.arange(0, K)
    acc = sl.zeros((M, N), dtype=sl.float32)
    for t in sl.static_range(3):
        a = sl.load(a_ptr + t * M * K + rm[:, None] * K + rk[None, :])
        b = sl.load(b_ptr + t * K * N + rk[:, None] * N + rn[None, :])
        acc += sl.dot(a, b)
    sl.store(c_ptr + rm[:, None] * N + rn[None, :], acc)


@pytest.mark.parametrize("mode", MODES)
def test_many_big_looped_dots_take_4_steps_and_match_numpy(mode, always_loop):
    """32x64 accumulators (64 vec4 blocks on 8 lanes, 512 multiply-adds per trip of 8 steps),
    three dots: 1536 > 1024, so each trip takes 4 steps although the loops read A."""
    M, N, K = 32, 64, 32
    rng = np.random.default_rng(11)
    a = rng.standard_normal((3, M, K)).astype(np.float32)
    b = rng.standard_normal((3, K, N)).astype(np.float32)
    c = spvjit.empty((M, N), np.float32)
    launch(three_dots, mode)[(1,)](spvjit.tensor(a), spvjit.tensor(b), c, M=M, N=N, K=K)
    # 3 x 32 f32 products of N(0,1) terms, summed in another order than numpy: |err| < 1e-4
    want = sum(a[t].astype(np.float64) @ b[t] for t in range(3))
    np.testing.assert_allclose(c.numpy(), want, atol=1e-4, rtol=1e-5)
    target = Target.of(get_device().kernel_caps)
    if mode == "device" and target.cpu and target.subgroup_size == 8:
        ta, tb = spvjit.tensor(a), spvjit.tensor(b)
        _, _, notes = _lowered_notes(three_dots, dataclasses.replace(target, dot_unroll_limit=0),
                                     ta, tb, c, M=M, N=N, K=K)
        dots = [n for n in notes.values() if "loop over k" in n]
        assert len(dots) == 3 and all("(8 trips of 4 steps)" in n and "A read as vec4" in n for n in dots), dots


@pytest.mark.parametrize("BM,BN,BK,variant,loops", [
    (32, 32, 32, "tutorial", True),         # 4096 per lane, both operands read by the loop: a loop
    (32, 32, 32, "a_used_twice", False),    # A would be staged: stays unrolled
    (32, 32, 32, "b_not_affine", False),    # B would be staged: stays unrolled
    (32, 64, 32, "a_used_twice", True),     # at the limit (8192), B read by the loop: a loop
    (32, 64, 32, "b_not_affine", False),    # at the limit, B staged: stays unrolled
    (16, 512, 8, "tutorial", False),        # one trip of the loop: stays unrolled (measured faster)
    (32, 128, 16, "tutorial", False),       # two trips: stays unrolled (measured faster in f32)
    (32, 32, 16, "tutorial", False),        # 2048 per lane: a quarter of the limit, not above it
])
def test_dots_below_the_limit_loop_where_the_loop_reads_both_operands(BM, BN, BK, variant, loops):
    """Below Target.dot_unroll_limit (8192 per lane, the default), a dot above a quarter of it
    still becomes a loop over k where both operands are loads the loop reads itself; the
    loop budget's visit counts (extra_visits) follow the same choice."""
    from spvjit.codegen import dot_forms
    target = Target.of(get_device().kernel_caps)
    if not target.cpu:
        pytest.skip("the operand-aware rule applies on CPU drivers (8-lane lavapipe here)")
    assert target.dot_unroll_limit == 8192
    t = spvjit.tensor(np.zeros((64, 512), np.float32))
    ck, by_name, _ = _lowered_notes(kloop_dot, target, t, t, t, 64, 512, 64, BM=BM, BN=BN, BK=BK,
                                    VARIANT=variant)
    assert ("loop over k" in by_name["dot"]) == loops, by_name["dot"]
    spec, _ = kloop_dot.specialize([t, t, t, 64, 512, 64], dict(BM=BM, BN=BN, BK=BK, VARIANT=variant))
    kernel = _build_ir(kloop_dot, spec, optimize=True)
    visits = dot_forms.extra_visits(ck.workgroup_size, target, kernel)
    dot = next(op for op in kernel.walk() if op.name == "dot")
    unrolled = 0 if "register blocks" in by_name["dot"] else BK + 1     # a staged dot loops over k
    W, a_staged = ck.workgroup_size, variant == "a_used_twice"     # the loop reads A unless used twice
    want = BK // dot_loop_plan.copies(BK, W, BM * BN // (4 * W), a_staged) + 1 if loops else unrolled     # one dot
    assert visits(dot) == want and (not loops or f"{want - 1} trips" in by_name["dot"]), by_name["dot"]
    # measured on CPU drivers only: a GPU target keeps the shape rule alone (same SPIR-V as before)
    gpu = dataclasses.replace(target, device_type="discrete")
    assert dot_loop_plan.looped_dots(kernel, ck.workgroup_size, gpu) == frozenset()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", ["tutorial", "a_used_twice"])
def test_32x32x32_matmul_at_the_default_limit_matches_numpy(mode, variant):
    _kloop_matches_numpy(mode, variant, (32, 32, 32), (45, 70, 72), seed=13)    # partial tiles, K tail of 8


def test_spirv_size_does_not_grow_with_k():
    """The unrolled lowering needs at least an OpFMul and an OpFAdd (5 words each) per
    multiply-add of a lane: 64*64*64/W of them, 327,680 words for W = 8.  The loop form stays
    far below that, and doubling K leaves its size about the same."""
    caps = get_device().caps
    target = Target.of(caps)
    t = spvjit.tensor(np.zeros((128, 128), np.float32))
    sizes = {}
    for K in (32, 64):
        spec, _ = tile_dot.specialize([t, t, t], dict(M=64, N=64, K=K, OUT=sl.float32))
        ck = compile_kernel(_build_ir(tile_dot, spec, optimize=True), target, spec.num_warps,
                            spec.divisibility or {})
        sizes[K] = len(ck.spirv) // 4
        assert "OpLoopMerge" in disassemble(ck.spirv)
    unrolled_floor = 10 * 64 * 64 * 64 // ck.workgroup_size
    assert sizes[64] < unrolled_floor // 4, sizes
    assert sizes[64] < 1.25 * sizes[32], sizes


@spvjit.kernel
def repeated_dot(a_ptr, b_ptr, c_ptr, trips):
    rm = sl.arange(0, 32)
    rn = sl.arange(0, 64)
    a = sl.load(a_ptr + rm[:, None] * 32 + rm[None, :])
    b = sl.load(b_ptr + rm[:, None] * 64 + rn[None, :])
    acc = sl.zeros((32, 64), dtype=sl.float32)
    for _ in range(0, trips):
        acc = sl.dot(a, b, acc)
    sl.store(c_ptr + rm[:, None] * 64 + rn[None, :], acc)


def test_dot_loops_count_against_the_loop_budget(always_loop):
    """Each looped dot adds K/U loop-header visits (here 32/8 = 4; the rotated loop makes no
    final check, and the counters allow one as a margin): 6,000 trips stay within lavapipe's
    65,535 and run right; 14,000 (70,001 visits) would not, and must be refused, never cut short."""
    from spvjit.codegen import dot_forms, loop_budget
    dev = get_device()
    a = np.eye(32, dtype=np.float32) * 0.5
    b = np.full((32, 64), 1.0 / 1024, np.float32)
    ta, tb = spvjit.tensor(a), spvjit.tensor(b)
    spec, _ = repeated_dot.specialize([ta, tb, tb, 6000], {})   # not 1: that compiles as a constant
    kernel = _build_ir(repeated_dot, spec, optimize=True)
    visits = loop_budget.header_visits(kernel, {"trips": 6000},
                                       dot_forms.extra_visits(8, Target(dot_unroll_limit=0), kernel))
    assert visits == 6000 * (1 + 32 // 8 + 1) + 1
    c = spvjit.empty((32, 64), np.float32)
    repeated_dot[(1,)](ta, tb, c, 6000)
    # each step adds 0.5/1024 = 2^-11 to a sum below 4: every partial sum is exact in f32
    np.testing.assert_array_equal(c.numpy(), np.full((32, 64), 6000 * 0.5 / 1024, np.float32))
    if spvjit.loop_limit.loop_iteration_limit(dev) is None:
        pytest.skip("this device does not limit loop-header visits")
    with pytest.raises(spvjit.DeviceError, match="repeated_dot"):
        repeated_dot[(1,)](ta, tb, c, 14000)


@pytest.mark.parametrize("dt", [np.float32, np.float16])
def test_a_read_as_vec4_through_storage_buffers(needs_device, dt):
    """GPUs read A's vec4 through a storage-buffer view (no texel buffers): a Target without
    them, dispatched on this device."""
    from spvjit.compiler import DeviceKernel
    from spvjit.launch import launch_on_device
    M = N = K = 64
    a, b = _operands(M, N, K, dt, seed=5)
    ta, tb, c = spvjit.tensor(a), spvjit.tensor(b), spvjit.empty((M, N), np.float32)
    target = dataclasses.replace(Target.of(get_device().kernel_caps), max_texel_buffer_elements=0)
    spec, _ = tile_dot.specialize([ta, tb, c], dict(M=M, N=N, K=K, OUT=sl.float32))
    notes = {}
    kernel = _build_ir(tile_dot, spec, optimize=True)
    ck = compile_kernel(kernel, target, spec.num_warps, spec.divisibility or {}, notes)
    dot = next(op for op in kernel.walk() if op.name == "dot")
    assert "A read as vec4" in notes[id(dot)] and all(bd.kind == "storage" for bd in ck.bindings)
    dev = get_device()
    pipe = dev.create_pipeline(ck.spirv, [bd.kind for bd in ck.bindings], ck.push_size)
    launch_on_device(DeviceKernel(ck, pipe), spec, (1, 1, 1), dev, "tile_dot")
    # 64 products of N(0,1) terms (f16 inputs: exact products in f32), another order: |err| < 1e-4
    np.testing.assert_allclose(c.numpy(), a.astype(np.float64) @ b.astype(np.float64), atol=1e-4, rtol=1e-5)


@spvjit.kernel
def outer_operand_dot(q_ptr, k_ptr, o_ptr, trips, WRITE: sl.constexpr):
    """Attention's pattern: A (q) loaded once before the loop, the dot inside it.  WRITE = 1
    stores into q's tensor inside the loop, WRITE = 2 into o's (which the test makes the same
    memory as q): the dot must use the values loaded before the loop either way."""
    rm = sl.arange(0, 32)
    rn = sl.arange(0, 64)
    q = sl.load(q_ptr + rm[:, None] * 32 + rm[None, :])
    acc = sl.zeros((32, 64), dtype=sl.float32)
    for t in range(0, trips):
        kt = sl.load(k_ptr + t * 32 * 64 + rm[:, None] * 64 + rn[None, :])
        acc = sl.dot(q, kt, acc)
        if WRITE == 1:
            sl.store(q_ptr + rm[:, None] * 32 + rm[None, :], sl.zeros((32, 32), dtype=sl.float32) + t + 1.0)
        if WRITE == 2:
            sl.store(o_ptr + rm[:, None] * 64 + rn[None, :], sl.zeros((32, 64), dtype=sl.float32) - 1.0)
    sl.store(o_ptr + rm[:, None] * 64 + rn[None, :], acc)


@pytest.mark.parametrize("write", [0, 1, 2])
def test_a_loaded_before_the_loop_is_read_by_the_dot_only_when_nothing_writes_in_between(write, always_loop):
    """An operand loaded before the loop is read again by the dot's k loop on every trip
    (instead of being staged in shared memory on every trip) only where no write can run
    between the load and the dot: with any store in the loop, whichever tensor it names (the
    arguments may be the same memory, as here for WRITE = 2), the dot keeps the loaded values."""
    rng = np.random.default_rng(5)
    q = rng.standard_normal((32, 32)).astype(np.float32)
    k = rng.standard_normal((3, 32, 64)).astype(np.float32)
    buf = np.zeros(32 * 64, np.float32)
    buf[:32 * 32] = q.ravel()                  # q's rows, then room for o when o is q's memory
    tq, tk = spvjit.tensor(buf), spvjit.tensor(k)
    o = tq if write == 2 else spvjit.zeros((32, 64), np.float32)
    target = dataclasses.replace(Target.of(get_device().kernel_caps), dot_unroll_limit=0)
    _, by_name, _ = _lowered_notes(outer_operand_dot, target, tq, tk, o, 3, WRITE=write)
    assert "loop over k" in by_name["dot"], by_name["dot"]
    assert ("A in shared memory" in by_name["dot"]) == bool(write), by_name["dot"]
    outer_operand_dot[(1,)](tq, tk, o, 3, WRITE=write)
    # 96 f32 products of N(0,1) terms: |err| < 1e-4
    np.testing.assert_allclose(o.numpy().reshape(32, 64), sum(q.astype(np.float64) @ k[t] for t in range(3)),
                               atol=1e-4, rtol=1e-5)


@spvjit.kernel
def shared_operand_dots(x_ptr, a_ptr, b_ptr, c1_ptr, c2_ptr, n_rows, trips, STORE_BETWEEN: sl.constexpr):
    """Attention backward's pattern: one loaded tile feeds two looped dots, one of them
    through `trans` (dot(q, kT) and dot(ds, trans(kT))), with a masked tail.  STORE_BETWEEN
    writes the loaded rows before the dots read them: the dots must use the loaded values."""
    r = sl.arange(0, 32)
    a = sl.load(a_ptr + r[:, None] * 32 + r[None, :])
    b = sl.load(b_ptr + r[:, None] * 32 + r[None, :])
    acc1 = sl.zeros((32, 32), dtype=sl.float32)
    acc2 = sl.zeros((32, 32), dtype=sl.float32)
    for t in range(0, trips):
        rows = t * 32 + r
        ptrs = x_ptr + rows[:, None] * 32 + r[None, :]
        x = sl.load(ptrs, mask=rows[:, None] < n_rows, other=0.0)
        if STORE_BETWEEN:
            sl.store(ptrs, sl.zeros((32, 32), dtype=sl.float32) - 1.0, mask=rows[:, None] < n_rows)
        acc1 = sl.dot(a, x, acc1)                  # B[k, n] = x[k, n]
        acc2 = sl.dot(b, sl.trans(x), acc2)        # B[k, n] = x[n, k]
    sl.store(c1_ptr + r[:, None] * 32 + r[None, :], acc1)
    sl.store(c2_ptr + r[:, None] * 32 + r[None, :], acc2)


@pytest.mark.parametrize("store_between", [False, True])
def test_one_load_read_by_two_dots_one_through_trans(store_between, always_loop):
    rng = np.random.default_rng(9)
    n_rows, trips = 80, 3                          # the last trip's rows 80..95 are masked off
    x = rng.standard_normal((trips * 32, 32)).astype(np.float32)
    a, b = (rng.standard_normal((32, 32)).astype(np.float32) for _ in range(2))
    tx, c1, c2 = spvjit.tensor(x), spvjit.zeros((32, 32), np.float32), spvjit.zeros((32, 32), np.float32)
    target = dataclasses.replace(Target.of(get_device().kernel_caps), dot_unroll_limit=0)
    _, _, notes = _lowered_notes(shared_operand_dots, target, tx, tx, tx, c1, c2, n_rows, trips,
                                 STORE_BETWEEN=store_between)
    text = "\n".join(notes.values())
    assert ("read transposed by the dot's k loop" in text) != store_between, text
    assert ("B loaded in the loop through trans" in text) != store_between, text
    shared_operand_dots[(1,)](tx, spvjit.tensor(a), spvjit.tensor(b), c1, c2, n_rows, trips,
                              STORE_BETWEEN=store_between)
    xs = np.where(np.arange(trips * 32)[:, None] < n_rows, x, 0.0).astype(np.float64)
    want1 = sum(a.astype(np.float64) @ xs[32 * t:32 * t + 32] for t in range(trips))
    want2 = sum(b.astype(np.float64) @ xs[32 * t:32 * t + 32].T for t in range(trips))
    # 96 f32 products of N(0,1) terms per element: |err| < 1e-4
    np.testing.assert_allclose(c1.numpy(), want1, atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(c2.numpy(), want2, atol=1e-4, rtol=1e-5)
