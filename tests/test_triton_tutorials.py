"""Triton tutorials 06 (fused attention, forward and backward) and 09 (persistent matmul,
the plain variant without TMA or warp specialization), written in Triton's language from
the algorithms (not Triton's text) with the features those tutorials use: constexpr block
sizes, block pointers with tl.advance, tl.dot with tl.trans, tl.range (flatten=True),
tl.where, tl.math.exp2/log2, tl.multiple_of/max_contiguous.  Only the host glue is spvjit's
(numpy instead of torch).  Each runs on the device and in the interpreter against numpy.
"""
import numpy as np
import pytest

import spvjit as triton
import spvjit.language as tl
from spvjit import knobs

MODES = ["device", "interpreter"]
LOG2E = 1.4426950408889634


def launch(kernel, mode):
    return triton.interpret(kernel) if mode == "interpreter" else kernel


# =========================================================================================
# 06: fused attention (FlashAttention-2: online softmax in base 2, causal masking)
# =========================================================================================
@triton.jit
def _online_softmax_blocks(acc, l_i, m_i, q, kT_blocks, v_blocks, lo, hi, offs_m, qk_scale,
                           BLOCK_N: tl.constexpr, ON_DIAGONAL: tl.constexpr):
    """Fold key/value blocks [lo, hi) into the running (acc, row sum l_i, row max m_i)."""
    kT_blocks = tl.advance(kT_blocks, (0, lo))
    v_blocks = tl.advance(v_blocks, (lo, 0))
    for start_n in tl.range(lo, hi, BLOCK_N):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        logits = tl.dot(q, tl.load(kT_blocks)) * qk_scale          # base-2 logits
        if ON_DIAGONAL:
            keys = start_n + tl.arange(0, BLOCK_N)
            logits = tl.where(offs_m[:, None] >= keys[None, :], logits, -1.0e6)
        m_new = tl.maximum(m_i, tl.max(logits, 1))
        p = tl.math.exp2(logits - m_new[:, None])
        rescale = tl.math.exp2(m_i - m_new)
        l_i = l_i * rescale + tl.sum(p, 1)
        acc = tl.dot(p.to(tl.float16), tl.load(v_blocks), acc * rescale[:, None])
        m_i = m_new
        kT_blocks = tl.advance(kT_blocks, (0, BLOCK_N))
        v_blocks = tl.advance(v_blocks, (BLOCK_N, 0))
    return acc, l_i, m_i


@triton.jit
def attn_fwd(Q, K, V, sm_scale, M, Out,
             stride_qz, stride_qh, stride_qm, stride_qk,
             stride_kz, stride_kh, stride_kn, stride_kk,
             stride_vz, stride_vh, stride_vk, stride_vn,
             stride_oz, stride_oh, stride_om, stride_on,
             H, N_CTX,
             HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr):
    tl.static_assert(BLOCK_M % BLOCK_N == 0)
    start_m = tl.program_id(0)
    off_hz = tl.program_id(1)
    z, h = off_hz // H, off_hz % H
    q_blocks = tl.make_block_ptr(Q + z * stride_qz + h * stride_qh, shape=(N_CTX, HEAD_DIM),
                                 strides=(stride_qm, stride_qk), offsets=(start_m * BLOCK_M, 0),
                                 block_shape=(BLOCK_M, HEAD_DIM), order=(1, 0))
    # K read transposed: a [HEAD_DIM, BLOCK_N] block of K^T
    kT_blocks = tl.make_block_ptr(K + z * stride_kz + h * stride_kh, shape=(HEAD_DIM, N_CTX),
                                  strides=(stride_kk, stride_kn), offsets=(0, 0),
                                  block_shape=(HEAD_DIM, BLOCK_N), order=(0, 1))
    v_blocks = tl.make_block_ptr(V + z * stride_vz + h * stride_vh, shape=(N_CTX, HEAD_DIM),
                                 strides=(stride_vk, stride_vn), offsets=(0, 0),
                                 block_shape=(BLOCK_N, HEAD_DIM), order=(1, 0))
    o_blocks = tl.make_block_ptr(Out + z * stride_oz + h * stride_oh, shape=(N_CTX, HEAD_DIM),
                                 strides=(stride_om, stride_on), offsets=(start_m * BLOCK_M, 0),
                                 block_shape=(BLOCK_M, HEAD_DIM), order=(1, 0))
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    qk_scale = sm_scale * 1.44269504        # exp(x) = exp2(x * log2(e))
    q = tl.load(q_blocks)
    if CAUSAL:
        # key blocks wholly left of the diagonal need no mask; the diagonal ones do
        acc, l_i, m_i = _online_softmax_blocks(acc, l_i, m_i, q, kT_blocks, v_blocks, 0, start_m * BLOCK_M,
                                               offs_m, qk_scale, BLOCK_N, False)
        acc, l_i, m_i = _online_softmax_blocks(acc, l_i, m_i, q, kT_blocks, v_blocks, start_m * BLOCK_M,
                                               (start_m + 1) * BLOCK_M, offs_m, qk_scale, BLOCK_N, True)
    else:
        acc, l_i, m_i = _online_softmax_blocks(acc, l_i, m_i, q, kT_blocks, v_blocks, 0, N_CTX,
                                               offs_m, qk_scale, BLOCK_N, False)
    # the backward pass needs each row's log-sum-exp (base 2) of the scaled logits
    tl.store(M + off_hz * N_CTX + offs_m, m_i + tl.math.log2(l_i))
    tl.store(o_blocks, (acc / l_i[:, None]).to(tl.float16))


@triton.jit
def attn_bwd_preprocess(O, DO, Delta, N_CTX, BLOCK_M: tl.constexpr, HEAD_DIM: tl.constexpr):
    """Delta_i = sum_d O_id * dO_id, the row term of the softmax gradient."""
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    off_hz = tl.program_id(1)
    offs_d = tl.arange(0, HEAD_DIM)
    rows = off_hz * N_CTX * HEAD_DIM + offs_m[:, None] * HEAD_DIM + offs_d[None, :]
    o = tl.load(O + rows).to(tl.float32)
    do = tl.load(DO + rows).to(tl.float32)
    tl.store(Delta + off_hz * N_CTX + offs_m, tl.sum(o * do, axis=1))


@triton.jit
def attn_bwd_dkdv(Q, K, V, sm_scale, DO, DK, DV, M, Delta,
                  stride_z, stride_h, stride_tok, stride_d, H, N_CTX,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr):
    """dK and dV of one block of keys: a loop over the query blocks that see them."""
    start_n = tl.program_id(0) * BLOCK_N
    off_hz = tl.program_id(1)
    base = (off_hz // H) * stride_z + (off_hz % H) * stride_h
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    kv = base + offs_n[:, None] * stride_tok + offs_d[None, :] * stride_d
    k = tl.load(K + kv)
    v = tl.load(V + kv)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    qk_scale = sm_scale * 1.44269504
    first = start_n if CAUSAL else 0           # earlier queries see none of these keys
    for start_m in tl.range(first, N_CTX, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        rows = base + offs_m[:, None] * stride_tok + offs_d[None, :] * stride_d
        q = tl.load(Q + rows)
        do = tl.load(DO + rows)
        lse = tl.load(M + off_hz * N_CTX + offs_m)
        pT = tl.math.exp2(tl.dot(k, tl.trans(q)) * qk_scale - lse[None, :])     # P^T: [keys, queries]
        if CAUSAL:
            pT = tl.where(offs_m[None, :] >= offs_n[:, None], pT, 0.0)
        dv = tl.dot(pT.to(tl.float16), do, dv)
        delta = tl.load(Delta + off_hz * N_CTX + offs_m)
        dpT = tl.dot(v, tl.trans(do))
        dsT = pT * (dpT - delta[None, :])
        dk = tl.dot(dsT.to(tl.float16), q, dk)
    tl.store(DV + kv, dv.to(tl.float16))
    tl.store(DK + kv, (dk * sm_scale).to(tl.float16))


@triton.jit
def attn_bwd_dq(Q, K, V, sm_scale, DO, DQ, M, Delta,
                stride_z, stride_h, stride_tok, stride_d, H, N_CTX,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr):
    """dQ of one block of queries: a loop over the key blocks they see."""
    start_m = tl.program_id(0) * BLOCK_M
    off_hz = tl.program_id(1)
    base = (off_hz // H) * stride_z + (off_hz % H) * stride_h
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    rows = base + offs_m[:, None] * stride_tok + offs_d[None, :] * stride_d
    q = tl.load(Q + rows)
    do = tl.load(DO + rows)
    lse = tl.load(M + off_hz * N_CTX + offs_m)[:, None]
    delta = tl.load(Delta + off_hz * N_CTX + offs_m)[:, None]
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    qk_scale = sm_scale * 1.44269504
    last = start_m + BLOCK_M if CAUSAL else N_CTX     # later keys are masked out entirely
    for start_n in tl.range(0, last, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        cols = base + offs_n[None, :] * stride_tok + offs_d[:, None] * stride_d      # [HEAD_DIM, BLOCK_N]
        kT = tl.load(K + cols)
        vT = tl.load(V + cols)
        p = tl.math.exp2(tl.dot(q, kT) * qk_scale - lse)
        if CAUSAL:
            p = tl.where(offs_m[:, None] >= offs_n[None, :], p, 0.0)
        ds = p * (tl.dot(do, vT) - delta)
        dq = tl.dot(ds.to(tl.float16), tl.trans(kT), dq)
    tl.store(DQ + rows, (dq * sm_scale).to(tl.float16))


def _attention_reference(q, k, v, do, sm_scale, causal):
    """softmax(Q K^T * scale) V and its gradients, in float64 from the same f16 inputs."""
    q, k, v, do = (x.astype(np.float64) for x in (q, k, v, do))
    s = np.einsum("zhmd,zhnd->zhmn", q, k) * sm_scale
    if causal:
        n = s.shape[-1]
        s = np.where(np.tril(np.ones((n, n), bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    o = p @ v
    dv = np.swapaxes(p, -1, -2) @ do
    dp = do @ np.swapaxes(v, -1, -2)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True))
    dq = ds @ k * sm_scale
    dk = np.swapaxes(ds, -1, -2) @ q * sm_scale
    return o, dq, dk, dv


def attention(q, k, v, do, sm_scale, causal, mode, BLOCK_M=16, BLOCK_N=16, bwd_blocks=None):
    """Host glue: forward, then the backward kernels, as the tutorial's autograd function runs them
    (`bwd_blocks`: ((BLOCK_M1, BLOCK_N1), (BLOCK_M2, BLOCK_N2)) of dK/dV and dQ, as the
    tutorial's own; the forward's blocks by default)."""
    (m1, n1), (m2, n2) = bwd_blocks or ((BLOCK_M, BLOCK_N), (BLOCK_M, BLOCK_N))
    Z, H, N_CTX, HEAD_DIM = q.shape
    tq, tk, tv, tdo = (triton.tensor(x) for x in (q, k, v, do))
    o = triton.empty_like(tq)
    lse = triton.empty((Z * H, N_CTX), np.float32)
    strides = [t.stride(i) for t in (tq, tk, tv, o) for i in range(4)]
    grid = (triton.cdiv(N_CTX, BLOCK_M), Z * H)
    launch(attn_fwd, mode)[grid](tq, tk, tv, sm_scale, lse, o, *strides, H, N_CTX,
                                 HEAD_DIM=HEAD_DIM, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, CAUSAL=causal)
    delta = triton.empty_like(lse)
    launch(attn_bwd_preprocess, mode)[grid](o, tdo, delta, N_CTX, BLOCK_M=BLOCK_M, HEAD_DIM=HEAD_DIM)
    dq, dk, dv = triton.empty_like(tq), triton.empty_like(tk), triton.empty_like(tv)
    common = (tq.stride(0), tq.stride(1), tq.stride(2), tq.stride(3), H, N_CTX)
    launch(attn_bwd_dkdv, mode)[(triton.cdiv(N_CTX, n1), Z * H)](
        tq, tk, tv, sm_scale, tdo, dk, dv, lse, delta, *common,
        BLOCK_M=m1, BLOCK_N=n1, HEAD_DIM=HEAD_DIM, CAUSAL=causal)
    launch(attn_bwd_dq, mode)[(triton.cdiv(N_CTX, m2), Z * H)](
        tq, tk, tv, sm_scale, tdo, dq, lse, delta, *common,
        BLOCK_M=m2, BLOCK_N=n2, HEAD_DIM=HEAD_DIM, CAUSAL=causal)
    return o.numpy(), dq.numpy(), dk.numpy(), dv.numpy()


# Both specializations on the device: at 16x16 blocks each kernel compiles on lavapipe in a
# few seconds (benchmarks/attention_compile.py; it took minutes before the lowering stopped
# shuffling transposes and index tiles).
@pytest.mark.parametrize("mode, causal", [("interpreter", False), ("interpreter", True), ("device", False),
                                          ("device", True)])
def test_fused_attention_forward_and_backward(mode, causal):
    Z, H, N_CTX, HEAD_DIM = 1, 2, 64, 16
    rng = np.random.default_rng(6 + causal)
    q, k, v, do = (rng.normal(0.0, 0.5, (Z, H, N_CTX, HEAD_DIM)).astype(np.float16) for _ in range(4))
    sm_scale = 0.5
    got = attention(q, k, v, do, sm_scale, causal, mode)
    want = _attention_reference(q, k, v, do, sm_scale, causal)
    # f16 inputs, f32 accumulation; the error comes from the roundings to f16 the algorithm
    # makes: P (and dS) before their dots and every output, each 2^-11 relative.  With
    # |v|, |do| < ~2.5 that is a few 1e-3 absolute at most, so 1e-2 (Triton's own test's
    # tolerance for this tutorial) has headroom while a wrong mask or scale is off by >0.05.
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
        np.testing.assert_allclose(g.astype(np.float64), w, atol=1e-2, rtol=0, err_msg=name)


def backward_ir(name: str, block_m: int, block_n: int, head_dim: int, n_ctx: int):
    """(optimized tile IR, specialization) of the backward kernel `name` (attn_bwd_dkdv or
    attn_bwd_dq) at these blocks, causal, for one head of n_ctx tokens."""
    from spvjit.compiler import _build_ir
    t = triton.tensor(np.zeros((1, 1, n_ctx, head_dim), np.float16))
    f = triton.tensor(np.zeros((1, n_ctx), np.float32))
    outs = [t, t] if name == "attn_bwd_dq" else [t, t, t]      # DO, DQ or DO, DK, DV
    args = [t, t, t, 0.5] + outs + [f, f, t.stride(0), t.stride(1), t.stride(2), t.stride(3), 1, n_ctx]
    jf = globals()[name]
    spec, _ = jf.specialize(args, dict(BLOCK_M=block_m, BLOCK_N=block_n, HEAD_DIM=head_dim, CAUSAL=True))
    return _build_ir(jf, spec, optimize=True), spec


def _compiles_in_seconds(name: str, block_m: int, block_n: int) -> bool:
    """Whether the device compiles tutorial 06's `name` at these blocks (HEAD_DIM 16) without
    minutes of driver time: its big tiles spread over several subgroups (llvmpipe from Mesa 26,
    codegen/layout.spread_over_warps), are cut into slices (before it, codegen/chunking.py), or
    the device is not llvmpipe."""
    from spvjit.codegen.chunking import max_numel
    from spvjit.codegen.compiler import rewrite_for_target
    from spvjit.codegen.target import Target
    target = Target.of(triton.get_device().kernel_caps)
    if not target.cpu:
        return True
    kernel, spec = backward_ir(name, block_m, block_n, 16, 256)
    whole = max_numel(kernel)
    _, w = rewrite_for_target(kernel, target, spec.num_warps)
    return w > target.subgroup_size or max_numel(kernel) < whole


@pytest.mark.parametrize("mode", ["interpreter", "device"])
def test_backward_at_the_tutorials_own_blocks(mode, request):
    """The tutorial runs its backward at BLOCK_M1=32 x BLOCK_N1=128 (dK/dV) and BLOCK_M2=128 x
    BLOCK_N2=32 (dQ).  At HEAD_DIM 16 half of those dots have 16-wide rows, narrower than
    lavapipe's 8 lanes x vec4: they run as loops over k with each lane on its own row of C
    (block_loops._RowGroups); unrolled, dK/dV took lavapipe 489 s and 10.8 GB to compile.
    On lavapipe 22.3 the kernels run as loops over eight slices of their 128 rows, their dots
    as loops over k (codegen/chunking.py, dot_loop_plan.slice_repeats), and compile in about
    13 s together on a 2-core machine; from Mesa
    26 they spread over 128 lanes (codegen/layout.spread_over_warps) and compile in seconds.
    Where a CPU driver does neither (its emulated cooperative matrices) the device run takes
    minutes of compile, and runs with the whole Triton port (SPVJIT_TRITON_FULL=1)."""
    if mode == "device":
        request.getfixturevalue("needs_device")
    if mode == "device" and not knobs.get("SPVJIT_TRITON_FULL") and not (
            _compiles_in_seconds("attn_bwd_dkdv", 32, 128) and _compiles_in_seconds("attn_bwd_dq", 128, 32)):
        pytest.skip("minutes of lavapipe compile: runs with SPVJIT_TRITON_FULL=1")
    Z, H, N_CTX, HEAD_DIM = 1, 2, 256, 16
    rng = np.random.default_rng(9)
    q, k, v, do = (rng.normal(0.0, 0.5, (Z, H, N_CTX, HEAD_DIM)).astype(np.float16) for _ in range(4))
    got = attention(q, k, v, do, 0.5, True, mode, 32, 32, bwd_blocks=((32, 128), (128, 32)))
    want = _attention_reference(q, k, v, do, 0.5, True)
    # the tolerance of test_fused_attention_forward_and_backward, for the same reasons
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
        np.testing.assert_allclose(g.astype(np.float64), w, atol=1e-2, rtol=0, err_msg=name)


@pytest.mark.parametrize("kernel_name,block_m,block_n", [("attn_bwd_dq", 128, 32), ("attn_bwd_dkdv", 32, 128)])
def test_triton_backward_blocks_fit_32k_of_shared_memory(kernel_name, block_m, block_n):
    """Triton's own backward blocks at HEAD_DIM 64 (BLOCK_M2=128 x BLOCK_N2=32 for dQ,
    BLOCK_M1=32 x BLOCK_N1=128 for dK/dV) on lavapipe's 8-lane workgroups: the looped dots
    read q, k, v, do, kT, vT themselves, so only the computed operands (dS, or P^T and dS^T)
    are staged: 128 x 32 words, 16 KiB, where staging every operand asked for 40-48 KiB and
    the kernels were refused.  spvjit's side only: the driver needs minutes for these sizes.
    Whole tiles (chunk_big_tiles=False, as SPVJIT_WHOLE_TILES=1): at these sizes the target's
    tiles would otherwise be cut into slices of 8 rows (codegen/chunking.py), each staging
    8 x 32 words."""
    from spvjit.codegen.compiler import compile_kernel
    from spvjit.codegen.target import Target
    kernel, spec = backward_ir(kernel_name, block_m, block_n, 64, 128)
    target = Target(name="8-lane CPU", device_type="cpu", subgroup_size=8,
                    subgroup_ops=("basic", "vote", "arithmetic", "ballot", "shuffle"),
                    max_shared_memory=32768, max_workgroup_invocations=1024, max_texel_buffer_elements=1 << 27,
                    chunk_big_tiles=False)
    ck = compile_kernel(kernel, target, spec.num_warps, spec.divisibility or {})
    assert ck.workgroup_size == 8
    assert ck.scratch_bytes == 128 * 32 * 4, ck.scratch_bytes


# =========================================================================================
# 09: persistent matmul (a fixed number of programs walks the output tiles in grouped order)
# =========================================================================================
@triton.jit
def _tile_coords(tile_id, num_pid_in_group, num_pid_m, GROUP_SIZE_M: tl.constexpr):
    """Grouped ordering: GROUP_SIZE_M row blocks share the column blocks, for reuse in cache."""
    group_id = tile_id // num_pid_in_group
    first_pid_m = group_id * GROUP_SIZE_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_SIZE_M)
    pid_m = first_pid_m + (tile_id % group_size_m)
    pid_n = (tile_id % num_pid_in_group) // group_size_m
    return pid_m, pid_n


@triton.jit
def matmul_kernel_persistent(a_ptr, b_ptr, c_ptr, M, N, K,
                             stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
                             BLOCK_SIZE_M: tl.constexpr, BLOCK_SIZE_N: tl.constexpr,
                             BLOCK_SIZE_K: tl.constexpr, GROUP_SIZE_M: tl.constexpr, NUM_SMS: tl.constexpr):
    start_pid = tl.program_id(axis=0)
    tl.assume(start_pid >= 0)                # optimizer hints, as the tutorial gives them
    tl.assume(stride_am > 0)
    tl.assume(stride_bn > 0)
    num_pid_m = tl.cdiv(M, BLOCK_SIZE_M)
    num_pid_n = tl.cdiv(N, BLOCK_SIZE_N)
    k_tiles = tl.cdiv(K, BLOCK_SIZE_K)
    num_tiles = num_pid_m * num_pid_n
    num_pid_in_group = GROUP_SIZE_M * num_pid_n
    offs_k_for_mask = tl.arange(0, BLOCK_SIZE_K)
    for tile_id in tl.range(start_pid, num_tiles, NUM_SMS, flatten=True):
        pid_m, pid_n = _tile_coords(tile_id, num_pid_in_group, num_pid_m, GROUP_SIZE_M)
        offs_am = pid_m * BLOCK_SIZE_M + tl.arange(0, BLOCK_SIZE_M)
        offs_bn = pid_n * BLOCK_SIZE_N + tl.arange(0, BLOCK_SIZE_N)
        # rows/columns past the edge read row/column 0 instead (their results are not stored)
        offs_am = tl.where(offs_am < M, offs_am, 0)
        offs_bn = tl.where(offs_bn < N, offs_bn, 0)
        offs_am = tl.max_contiguous(tl.multiple_of(offs_am, BLOCK_SIZE_M), BLOCK_SIZE_M)
        offs_bn = tl.max_contiguous(tl.multiple_of(offs_bn, BLOCK_SIZE_N), BLOCK_SIZE_N)
        accumulator = tl.zeros((BLOCK_SIZE_M, BLOCK_SIZE_N), dtype=tl.float32)
        for ki in range(k_tiles):
            offs_k = ki * BLOCK_SIZE_K + tl.arange(0, BLOCK_SIZE_K)
            a = tl.load(a_ptr + offs_am[:, None] * stride_am + offs_k[None, :] * stride_ak,
                        mask=offs_k_for_mask[None, :] < K - ki * BLOCK_SIZE_K, other=0.0)
            b = tl.load(b_ptr + offs_k[:, None] * stride_bk + offs_bn[None, :] * stride_bn,
                        mask=offs_k_for_mask[:, None] < K - ki * BLOCK_SIZE_K, other=0.0)
            accumulator = tl.dot(a, b, accumulator)
        offs_cm = pid_m * BLOCK_SIZE_M + tl.arange(0, BLOCK_SIZE_M)
        offs_cn = pid_n * BLOCK_SIZE_N + tl.arange(0, BLOCK_SIZE_N)
        c_mask = (offs_cm[:, None] < M) & (offs_cn[None, :] < N)
        tl.store(c_ptr + stride_cm * offs_cm[:, None] + stride_cn * offs_cn[None, :],
                 accumulator.to(tl.float16), mask=c_mask)


def matmul_persistent(a, b, mode, NUM_SMS=3, BM=16, BN=16, BK=16, GROUP=2):
    """Host glue: as many programs as 'SMs' (fewer than the tiles, so each walks several)."""
    M, K = a.shape
    N = b.shape[1]
    ta, tb = triton.tensor(a), triton.tensor(b)
    c = triton.empty((M, N), np.float16)
    grid = lambda META: (min(NUM_SMS, triton.cdiv(M, META["BLOCK_SIZE_M"]) * triton.cdiv(N, META["BLOCK_SIZE_N"])),)
    launch(matmul_kernel_persistent, mode)[grid](
        ta, tb, c, M, N, K, ta.stride(0), ta.stride(1), tb.stride(0), tb.stride(1), c.stride(0), c.stride(1),
        BLOCK_SIZE_M=BM, BLOCK_SIZE_N=BN, BLOCK_SIZE_K=BK, GROUP_SIZE_M=GROUP, NUM_SMS=NUM_SMS,
        num_stages=3, num_warps=4)
    return c.numpy()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("M,N,K", [(40, 48, 40), (64, 32, 16)])
def test_persistent_matmul(mode, M, N, K):
    rng = np.random.default_rng(M + N + K)
    a = rng.standard_normal((M, K)).astype(np.float16)
    b = rng.standard_normal((K, N)).astype(np.float16)
    got = matmul_persistent(a, b, mode)
    want = a.astype(np.float64) @ b.astype(np.float64)
    # exact f16 products summed in f32 (K <= 40 terms of size ~1: error ~1e-6), then one
    # rounding to f16: half an ulp, 2^-11 relative, plus f16's absolute spacing near zero
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=2 ** -10, atol=2 ** -14)
