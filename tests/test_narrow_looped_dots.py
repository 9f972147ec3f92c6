"""Dots whose rows are narrower than the lanes' vec4 blocks (N < 4W: 16, 8 or 4 columns on
lavapipe's 8 lanes) as loops over k (codegen/block_loops.py, `_RowGroups`): each lane works on
its own row of a register block, reads A per lane and B from memory.  Results against numpy on
the device and in the interpreter, for each way of reading A, with B through trans, and the
fallback where B cannot be read by the loop."""
import dataclasses

import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit.codegen import block_loops
from spvjit.codegen.target import Target
from spvjit.runtime import get_device
from test_big_tiles import _kloop_matches_numpy, _lowered_notes, _operands, kloop_dot, launch

MODES = ["device", "interpreter"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("BN", [16, 8, 4])
@pytest.mark.parametrize("variant", ["tutorial", "a_used_twice", "b_not_affine"])
def test_narrow_looped_dot_matches_numpy(mode, BN, variant, always_loop):
    # partial tiles and a K tail of 8 (the masks recomputed per lane)
    _kloop_matches_numpy(mode, variant, (32, BN, 16), (45, 3 * BN + 1, 40), seed=BN)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("BN,BK", [(16, 32), (8, 16), (4, 8), (16, 64), (8, 64)])
def test_narrow_dot_of_a_computed_a_matches_numpy(mode, BN, BK, always_loop):
    """A kept in registers (a second user), so a narrow dot must move its elements between
    lanes: by subgroup shuffles on llvmpipe before Mesa 26 where K divides 4W (BK 8, 16, 32 on
    8 lanes: K = 4W, one and two A rows per block of 4W, and P = 2, 4, 8 rows per C block),
    else through shared memory (BK 64 always).  A wrong source lane or register gives another row's or
    step's product: off by far more than the tolerance."""
    _kloop_matches_numpy(mode, "a_used_twice", (32, BN, BK), (45, 3 * BN + 1, 2 * BK + 5), seed=BK + BN)
    if mode == "device":
        want = "A in shared memory" if BK == 64 else _exchange()
        assert want in _notes(BN, BK, 2 * BK + 5, "a_used_twice")


def _exchange() -> str:
    """How this device's narrow dots get a computed A (block_loops._shuffles_a: shuffles on
    llvmpipe before Mesa 26, shared memory on later ones)."""
    mesa = Target.of(get_device().kernel_caps).mesa_version
    return ("A exchanged by subgroup shuffles" if mesa is not None and mesa < block_loops.SHUFFLES_BEFORE_MESA
            else "A in shared memory")


def _notes(BN, BK, K, variant):
    target = dataclasses.replace(Target.of(get_device().kernel_caps), dot_unroll_limit=0)
    if not (target.cpu and target.subgroup_size == 8):
        pytest.skip("the notes below are those of lavapipe's 8-lane programs")
    t = spvjit.tensor(np.zeros((64, 64), np.float32))
    _, by_name, _ = _lowered_notes(kloop_dot, target, t, t, t, 64, 64, K, BM=32, BN=BN, BK=BK,
                                   VARIANT=variant)
    return by_name["dot"]


@pytest.mark.parametrize("BN,BK,K,variant,want", [
    (16, 16, 40, "tutorial", "A read as vec4 in the loop, B loaded in the loop"),
    (8, 16, 37, "tutorial", "A loaded in the loop"),          # rows not 4-aligned; no broadcasts
    (16, 16, 40, "a_used_twice", "EXCHANGE, B loaded in the loop"),
    (4, 16, 40, "a_used_twice", "EXCHANGE, B loaded in the loop"),
    (16, 64, 70, "a_used_twice", "A in shared memory, B loaded in the loop"),   # K = 64 > 4W
])
def test_narrow_dots_loop_over_k(needs_device, BN, BK, K, variant, want):
    note = _notes(BN, BK, K, variant)
    want = want.replace("EXCHANGE", _exchange())
    assert "loop over k" in note and want in note, note


def test_a_narrow_dot_whose_b_the_loop_cannot_read_stays_unrolled(needs_device):
    """A lane of a narrow dot does not hold the B rows it needs, so without B read from memory
    the dot keeps an unrolled form (its result is checked in test_narrow_looped_dot_matches_numpy)."""
    note = _notes(16, 16, 40, "b_not_affine")
    assert "loop over k" not in note, note


@spvjit.kernel
def narrow_attention_step(q_ptr, k_ptr, v_ptr, o_ptr, M: sl.constexpr, N: sl.constexpr, D: sl.constexpr):
    """P = Q K^T, O = P.to(f16) V: B through a trans, and a computed f16 A (attention's shapes,
    with N keys and D columns narrower than 4W)."""
    rm = sl.arange(0, M)
    rn = sl.arange(0, N)
    rd = sl.arange(0, D)
    q = sl.load(q_ptr + rm[:, None] * D + rd[None, :])
    k = sl.load(k_ptr + rn[:, None] * D + rd[None, :])
    v = sl.load(v_ptr + rn[:, None] * D + rd[None, :])
    p = sl.dot(q, sl.trans(k))
    o = sl.dot(p.to(sl.float16), v)
    sl.store(o_ptr + rm[:, None] * D + rd[None, :], o)


@pytest.mark.parametrize("mode", MODES)
def test_narrow_attention_step_matches_numpy(mode, always_loop):
    M, N, D = 32, 16, 16
    rng = np.random.default_rng(5)
    q, k, v = (rng.normal(0.0, 0.5, s).astype(np.float16) for s in ((M, D), (N, D), (N, D)))
    o = spvjit.empty((M, D), np.float32)
    launch(narrow_attention_step, mode)[(1,)](spvjit.tensor(q), spvjit.tensor(k), spvjit.tensor(v), o,
                                              M=M, N=N, D=D)
    p = q.astype(np.float64) @ k.astype(np.float64).T
    want = p.astype(np.float32).astype(np.float16).astype(np.float64) @ v.astype(np.float64)
    # P rounded to f16 on both sides (|P| < ~4, so 2^-11 relative is < 2e-3); a P element on the
    # other side of a rounding boundary moves O by at most one f16 ulp of P times |v| (< 2.5),
    # summed over 16 terms with random signs: 2e-2 leaves headroom, a wrong row is off by > 0.1
    np.testing.assert_allclose(o.numpy(), want, atol=2e-2, rtol=0)
    target = Target.of(get_device().kernel_caps) if mode == "device" else None
    if target is not None and target.cpu and target.subgroup_size == 8:
        args = [spvjit.tensor(q), spvjit.tensor(k), spvjit.tensor(v), o]
        _, _, notes = _lowered_notes(narrow_attention_step, dataclasses.replace(target, dot_unroll_limit=0),
                                     *args, M=M, N=N, D=D)
        dots = [n for n in notes.values() if "loop over k" in n]
        assert len(dots) == 2 and "through trans" in dots[0] and _exchange() in dots[1], dots


@pytest.mark.parametrize("mode", MODES)
def test_tutorial_attention_forward_at_32x32_blocks_loops_its_dots(mode):
    """Tutorial 06's forward at 32x32 blocks, HEAD_DIM 16: four dots of 2048 multiply-adds per
    lane, a quarter of the limit, none of them alone a reason to loop.  Together they make the
    kernel dot-heavy (dot_loop_plan.dot_heavy), so each is a loop over k: it compiled in 7.9 s
    instead of 40.5 s on lavapipe 22.3, and ran faster.  (The backward kernels at 32x32 loop
    the same way; their device compile, about 20 s, is left to the benchmark.)"""
    from test_triton_tutorials import _attention_reference, attn_fwd
    Z, H, N_CTX, HEAD_DIM = 1, 2, 64, 16
    rng = np.random.default_rng(17)
    q, k, v, do = (rng.normal(0.0, 0.5, (Z, H, N_CTX, HEAD_DIM)).astype(np.float16) for _ in range(4))
    tq, tk, tv = (spvjit.tensor(x) for x in (q, k, v))
    o = spvjit.empty_like(tq)
    lse = spvjit.empty((Z * H, N_CTX), np.float32)
    args = [tq, tk, tv, 0.5, lse, o, *[t.stride(i) for t in (tq, tk, tv, o) for i in range(4)], H, N_CTX]
    meta = dict(HEAD_DIM=HEAD_DIM, BLOCK_M=32, BLOCK_N=32, CAUSAL=True)
    launch(attn_fwd, mode)[(N_CTX // 32, Z * H)](*args, **meta)
    want = _attention_reference(q, k, v, do, 0.5, True)[0]
    # the tolerance of test_fused_attention_forward_and_backward, for the same reasons
    np.testing.assert_allclose(o.numpy().astype(np.float64), want, atol=1e-2, rtol=0)
    target = Target.of(get_device().kernel_caps) if mode == "device" else None
    if target is not None and target.cpu and target.subgroup_size == 8:
        _, _, notes = _lowered_notes(attn_fwd, target, *args, **meta)
        dots = [n for n in notes.values() if "loop over k" in n or "register blocks" in n or "staging" in n]
        assert len(dots) == 4 and all("loop over k" in n for n in dots), dots


def test_tutorial_dq_at_32x32_blocks_loops_its_three_dots(needs_device):
    """dQ at 32x32 blocks, HEAD_DIM 16: three dots of 2048 multiply-adds per lane (6144, three
    quarters of the limit) make it dot-heavy; looped it compiled in 10.7 s instead of 45-50 s
    on lavapipe 22.3 and the backward ran faster.  (Two such dots, as in the llama runner's
    prefill attention, stay unrolled: they ran 11% slower looped.)  The result is checked
    against numpy by benchmarks/attention_compile.py --speed-bwd 32x32,32x32."""
    from test_triton_tutorials import attn_bwd_dq
    target = Target.of(get_device().kernel_caps)
    if not (target.cpu and target.subgroup_size == 8):
        pytest.skip("the notes below are those of lavapipe's 8-lane programs")
    t = spvjit.tensor(np.zeros((1, 2, 64, 16), np.float16))
    m = spvjit.empty((2, 64), np.float32)
    _, _, notes = _lowered_notes(attn_bwd_dq, target, t, t, t, 0.5, t, t, m, m, *(t.stride(i) for i in range(4)), 2, 64,
                                 BLOCK_M=32, BLOCK_N=32, HEAD_DIM=16, CAUSAL=True)
    dots = [n for n in notes.values() if "loop over k" in n or "register blocks" in n or "staging" in n]
    assert len(dots) == 3 and all("loop over k" in n for n in dots), dots


@pytest.mark.parametrize("BN,variant", [(64, "tutorial"), (32, "a_used_twice"), (16, "tutorial")])
def test_narrow_looped_dot_in_gpu_layouts(needs_device, BN, variant):
    """The same lowering with a GPU's lanes: 4 warps are 128 invocations (16 subgroups of 8 on
    lavapipe, tests/test_gpu_layouts.py), so every row narrower than 512 is narrow (P = 8, 16
    or 32 rows per block); run on the real device against numpy."""
    from spvjit.codegen.compiler import compile_kernel
    from spvjit.compiler import DeviceKernel, _build_ir
    from spvjit.launch import launch_on_device
    from test_gpu_layouts import gpu_like_target
    BM, BK = 64, 32
    M, N, K = 70, 2 * BN + 3, 72
    a, b = _operands(M, N, K, np.float32, seed=BN)
    ta, tb, c = spvjit.tensor(a), spvjit.tensor(b), spvjit.zeros((M, N), np.float32)
    args, kwargs = [ta, tb, c, M, N, K], dict(BM=BM, BN=BN, BK=BK, VARIANT=variant)
    spec, _ = kloop_dot.specialize(args, kwargs)
    notes = {}
    kernel = _build_ir(kloop_dot, spec, optimize=True)
    ck = compile_kernel(kernel, dataclasses.replace(gpu_like_target(), dot_unroll_limit=0), spec.num_warps,
                        spec.divisibility or {}, notes)
    note = next(notes[id(op)] for op in kernel.walk() if op.name == "dot")
    assert ck.workgroup_size == 128 and "loop over k" in note, (ck.workgroup_size, note)
    dev = get_device()
    pipe = dev.create_pipeline(ck.spirv, [bd.kind for bd in ck.bindings], ck.push_size)
    grid = (spvjit.cdiv(M, BM), spvjit.cdiv(N, BN), 1)
    launch_on_device(DeviceKernel(ck, pipe), spec, grid, dev, "kloop_dot")
    # <= 72 f32 products of N(0,1) terms, summed in another order than numpy: |err| < 1e-4
    np.testing.assert_allclose(c.numpy(), a.astype(np.float64) @ b, atol=1e-4, rtol=1e-5)
