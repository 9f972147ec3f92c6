"""VK_NV_cooperative_matrix2's reductions and per-element operations on matrix-layout values
(codegen/coopmat2_reduce.py, coopmat2_functions.py).

Compile-only tests use a stand-in for Mesa 26.1's lavapipe (8x8x8 KHR shapes and granules,
reductions and per-element operations, 8 lanes) and run on every machine: the SPIR-V holds
OpCooperativeMatrixReduceNV / OpCooperativeMatrixPerElementOpNV and fewer shared-memory moves
than with SPVJIT_DISABLE_COOPMAT2=1, which emits none of them.  The numeric tests run where the
device reports the features (Mesa 26.1 lavapipe through scripts/coopmat-env) and compare with
numpy and with the same kernel under SPVJIT_DISABLE_COOPMAT2=1 (blocked reductions).
"""
import dataclasses
import warnings

import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit.codegen.compiler import compile_kernel
from spvjit.codegen.spirv.disasm import workgroup_accesses
from spvjit.codegen.spirv.tools import disassemble, validate
from spvjit.runtime import CoopMatConfig, get_device
from spvjit.runtime.capabilities import CoopMat2, FlexConfig
from test_coopmat import kloop_acc

pytestmark = pytest.mark.coopmat

_TYPES = (("f16", "f16"), ("f16", "f32"), ("i8", "i32"), ("u8", "u32"))
LAVAPIPE_26_KHR = tuple(CoopMatConfig(8, 8, 8, a, a, c, c, False, "subgroup") for a, c in _TYPES)
LAVAPIPE_26_FLEX = tuple(FlexConfig(8, 8, 8, a, a, c, c, False, "subgroup", 0) for a, c in _TYPES)
CM2_FEATURES = ("flexible_dimensions", "reductions", "conversions", "per_element_operations")


def lavapipe26_target(features=CM2_FEATURES):
    """The capabilities Mesa 26.1's lavapipe reports, on any machine (for compile-only tests)."""
    return dataclasses.replace(get_device().caps, device_type="cpu", subgroup_size=8,
                               cooperative_matrix=LAVAPIPE_26_KHR,
                               cooperative_matrix2=CoopMat2(features, 0, 1024, 0, LAVAPIPE_26_FLEX),
                               max_shared_memory=32 * 1024)


@spvjit.kernel
def dot_reductions(a_ptr, b_ptr, r_ptr, c_ptr, K, BM: sl.constexpr, BN: sl.constexpr, BK: sl.constexpr,
                   AXIS: sl.constexpr, BCAST: sl.constexpr, ACC_F16: sl.constexpr = False):
    rm = sl.arange(0, BM)
    rn = sl.arange(0, BN)
    if ACC_F16:
        acc = kloop_acc(a_ptr, b_ptr, K, BM, BN, BK, sl.float16)
    else:
        acc = kloop_acc(a_ptr, b_ptr, K, BM, BN, BK, sl.float32)
    s = sl.sum(acc, AXIS)
    mx = sl.max(acc, AXIS)
    mn = sl.min(acc, AXIS)
    if AXIS == 1:
        sl.store(r_ptr + rm, s)
        sl.store(r_ptr + BM + rm, mx)
        sl.store(r_ptr + 2 * BM + rm, mn)
        if BCAST:       # each reduction broadcast back over the tile it came from
            c = (acc - mx[:, None]) + mn[:, None] - s[:, None]
            sl.store(c_ptr + rm[:, None] * BN + rn[None, :], c)
    else:
        sl.store(r_ptr + rn, s)
        sl.store(r_ptr + BN + rn, mx)
        sl.store(r_ptr + 2 * BN + rn, mn)
        if BCAST:
            c = (acc - mx[None, :]) + mn[None, :] - s[None, :]
            sl.store(c_ptr + rm[:, None] * BN + rn[None, :], c)


def _reductions_ir(BM, BN, K, axis, bcast=True, BK=8):
    a = spvjit.empty((BM, K), np.float16)
    b = spvjit.empty((K, BN), np.float16)
    return dot_reductions.ir_module(a, b, spvjit.empty((3 * max(BM, BN),), np.float32),
                                    spvjit.empty((BM, BN), np.float32), K, BM=BM, BN=BN, BK=BK,
                                    AXIS=axis, BCAST=bcast)


def _compile(ir, target, num_warps):
    """compile_kernel, then spirv-val (the suite's hook sees only modules launched on a device)."""
    ck = compile_kernel(ir, target, num_warps=num_warps)
    validate(ck.spirv, target_env="vulkan1.3")
    return ck


def _without_coopmat2(monkeypatch):
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    monkeypatch.setenv("SPVJIT_DISABLE_COOPMAT2", "1")


def _with_coopmat2(monkeypatch):
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT2", raising=False)


# ---- compile-only, on every machine -----------------------------------------------------------

@pytest.mark.parametrize("axis", [0, 1])
def test_reduce_nv_in_the_module_and_fewer_shared_moves(monkeypatch, axis):
    _with_coopmat2(monkeypatch)
    ck = _compile(_reductions_ir(16, 32, 24, axis), lavapipe26_target(), num_warps=1)
    text = disassemble(ck.spirv)
    # three reductions, each one Reduce per tile row (column): 16x32 in 8x8 tiles is 2 rows, 4 columns
    assert text.count("OpCooperativeMatrixReduceNV") == 3 * (2 if axis == 1 else 4), text
    assert ("Row" if axis == 1 else "Column") in text
    assert "OpCapability CooperativeMatrixReductionsNV" in text
    assert 'OpExtension "SPV_NV_cooperative_matrix2"' in text
    # max / min partials of a row's tiles combine element by element with the per-element op
    assert "OpCooperativeMatrixPerElementOpNV" in text
    nv_moves, nv_barriers = sum(workgroup_accesses(ck.spirv)), text.count("OpControlBarrier")

    _without_coopmat2(monkeypatch)
    ck = _compile(_reductions_ir(16, 32, 24, axis), lavapipe26_target(), num_warps=1)
    text = disassemble(ck.spirv)
    assert "OpCooperativeMatrixReduceNV" not in text and "PerElementOpNV" not in text
    assert "SPV_NV_cooperative_matrix2" not in text
    # the blocked path converts the accumulator to the blocked layout, reduces there and stages
    # each 1-D result again for the broadcasts; the NV path moves only the three 1-D results
    assert nv_moves < sum(workgroup_accesses(ck.spirv)), (nv_moves, workgroup_accesses(ck.spirv))
    assert nv_barriers < text.count("OpControlBarrier")


def test_broadcast_of_a_reduction_moves_nothing(monkeypatch):
    """`exp2(acc - m[:, None])` with m used nowhere else: after the loop, no more shared memory
    and no more barriers than storing `acc` itself."""
    _with_coopmat2(monkeypatch)

    def module(plain):
        ir = max_sub_exp2.ir_module(spvjit.empty((16, 16), np.float16), spvjit.empty((16, 16), np.float16),
                                    spvjit.empty((16, 16), np.float32), 16, BM=16, BN=16, BK=8, PLAIN=plain)
        # a program of one subgroup, on 8x8 tiles (the granule: a reduction asks for it)
        ck = _compile(ir, lavapipe26_target(), num_warps=1)
        return ck.spirv, disassemble(ck.spirv)
    spirv, text = module(False)
    plain_spirv, plain_text = module(True)
    assert workgroup_accesses(spirv) == workgroup_accesses(plain_spirv), text
    assert text.count("OpControlBarrier") == plain_text.count("OpControlBarrier")
    assert text.count("OpCooperativeMatrixReduceNV") == 2            # one per 8-row tile row
    assert text.count("OpCooperativeMatrixPerElementOpNV") == 2 + 4  # row maxima of 2 tiles; exp2 of 4


def test_without_the_features_nothing_changes(monkeypatch):
    """A device with flexible dimensions only (no reductions, no per-element operations) keeps
    the flexible tile and the blocked reductions."""
    _with_coopmat2(monkeypatch)
    ck = _compile(_reductions_ir(16, 32, 24, 1), lavapipe26_target(("flexible_dimensions",)),
                        num_warps=1)
    text = disassemble(ck.spirv)
    assert "OpCooperativeMatrixReduceNV" not in text and "PerElementOpNV" not in text
    assert "%uint_16 %uint_32 %uint_2" in text          # the 16x32 flexible accumulator


def test_reductions_without_per_element_operations_merge_tiles_component_by_component(monkeypatch):
    """Reductions reported but not per-element operations: the max/min of a row of two 8x8
    tiles merges them over the invocation's components (coopmat_values.by_components), then
    reduces on the matrices; sum merges them with OpFAdd on matrices."""
    _with_coopmat2(monkeypatch)
    ck = _compile(_reductions_ir(8, 16, 8, 1), lavapipe26_target(("flexible_dimensions", "reductions")),
                  num_warps=1)
    text = disassemble(ck.spirv)
    assert text.count("OpCooperativeMatrixReduceNV") == 3            # sum, max, min of the one tile row
    assert "OpCooperativeMatrixPerElementOpNV" not in text
    assert text.count("OpCooperativeMatrixLengthKHR") >= 2           # the max and the min merges


@spvjit.kernel
def max_sub_exp2(a_ptr, b_ptr, c_ptr, K, BM: sl.constexpr, BN: sl.constexpr, BK: sl.constexpr,
                 PLAIN: sl.constexpr):
    rm = sl.arange(0, BM)
    rn = sl.arange(0, BN)
    acc = kloop_acc(a_ptr, b_ptr, K, BM, BN, BK, sl.float32)
    if PLAIN:
        sl.store(c_ptr + rm[:, None] * BN + rn[None, :], acc)
    else:
        sl.store(c_ptr + rm[:, None] * BN + rn[None, :], sl.exp2(acc - sl.max(acc, 1)[:, None]))


# ---- on a device that reports the features (Mesa 26.1 lavapipe) ------------------------------

def _device_or_skip(*features):
    caps = get_device().kernel_caps          # (a CPU driver's only with SPVJIT_CPU_COOPMAT=1)
    cm2 = caps.cooperative_matrix2
    missing = [f for f in features if cm2 is None or not cm2.has(f)]
    if missing:
        if spvjit.knobs.get("SPVJIT_REQUIRE_COOPMAT") and caps.cooperative_matrix:
            # a coopmat device in the CI stage is Mesa 26.1's lavapipe, which reports them
            pytest.fail(f"{caps.name} has cooperative matrices but no VK_NV_cooperative_matrix2 {missing}")
        pytest.skip(f"kernels for {caps.name} get no VK_NV_cooperative_matrix2 {', '.join(missing)} "
                    "(none reported, or a CPU driver's without SPVJIT_CPU_COOPMAT=1)")
    return caps


def _both_ways(monkeypatch, run):
    """run() with the NV instructions and with SPVJIT_DISABLE_COOPMAT2=1."""
    _with_coopmat2(monkeypatch)
    nv = run()
    _without_coopmat2(monkeypatch)
    blocked = run()
    _with_coopmat2(monkeypatch)
    return nv, blocked


@pytest.mark.parametrize("BM,BN,K", [(8, 8, 8), (16, 32, 24), (32, 16, 40)])
@pytest.mark.parametrize("axis", [0, 1])
def test_reductions_match_numpy_and_the_blocked_path(monkeypatch, BM, BN, K, axis):
    _device_or_skip("reductions")
    rng = np.random.default_rng(BM * 100 + BN + K + axis)
    a = rng.standard_normal((BM, K)).astype(np.float16)
    b = rng.standard_normal((K, BN)).astype(np.float16)

    def run():
        r = spvjit.zeros((3 * max(BM, BN),), np.float32)
        c = spvjit.zeros((BM, BN), np.float32)
        dot_reductions[(1,)](spvjit.tensor(a), spvjit.tensor(b), r, c, K, BM=BM, BN=BN, BK=8,
                             AXIS=axis, BCAST=True)
        n = BM if axis == 1 else BN
        return r.numpy()[:3 * n].reshape(3, n), c.numpy()
    (r_nv, c_nv), (r_bl, c_bl) = _both_ways(monkeypatch, run)
    acc = a.astype(np.float64) @ b.astype(np.float64)
    ref = np.stack([acc.sum(axis), acc.max(axis), acc.min(axis)])
    ex = (lambda v: v[:, None]) if axis == 1 else (lambda v: v[None, :])
    c_ref = acc - ex(ref[1]) + ex(ref[2]) - ex(ref[0])
    # f16 products are exact in f32; the K-term dots and the <= 32-term sums round in f32 at
    # 2^-24 relative to partial sums below ~100: 1e-4 absolute bounds both, in any order
    np.testing.assert_allclose(r_nv, ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(c_nv, c_ref, rtol=1e-5, atol=2e-4)
    # max and min pick one of the same f32 accumulator values as the blocked path: exact
    np.testing.assert_array_equal(r_nv[1:], r_bl[1:])
    np.testing.assert_allclose(r_nv[0], r_bl[0], rtol=1e-5, atol=1e-4)    # sum: another order
    np.testing.assert_allclose(c_nv, c_bl, rtol=1e-5, atol=2e-4)


def test_reductions_of_an_f16_accumulator(monkeypatch):
    _device_or_skip("reductions")
    BM, BN, K = 16, 32, 24
    rng = np.random.default_rng(7)
    a = (rng.standard_normal((BM, K)) * 0.5).astype(np.float16)
    b = (rng.standard_normal((K, BN)) * 0.5).astype(np.float16)

    def run():
        r = spvjit.zeros((3 * BM,), np.float16)
        c = spvjit.zeros((BM, BN), np.float16)
        dot_reductions[(1,)](spvjit.tensor(a), spvjit.tensor(b), r, c, K, BM=BM, BN=BN, BK=8,
                             AXIS=1, BCAST=True, ACC_F16=True)
        return r.numpy().astype(np.float64).reshape(3, BM), c.numpy().astype(np.float64)
    (r_nv, c_nv), (r_bl, c_bl) = _both_ways(monkeypatch, run)
    acc = a.astype(np.float64) @ b.astype(np.float64)
    ref = np.stack([acc.sum(1), acc.max(1), acc.min(1)])
    # f16 accumulation: each of the 24 + 32 adds rounds at 2^-11 relative to partial sums
    # below ~16 (|acc| <= ~3, row sums of 32): 56 * 16 * 2^-11 ~ 0.44 bounds the sum, the
    # max / min (24 adds) within 24 * 3 * 2^-11 ~ 0.04
    np.testing.assert_allclose(r_nv[0], ref[0], atol=0.5)
    np.testing.assert_allclose(r_nv[1:], ref[1:], atol=0.05)
    np.testing.assert_array_equal(r_nv[1:], r_bl[1:])       # the same f16 values picked
    np.testing.assert_allclose(c_nv, c_bl, atol=0.5)


@pytest.mark.parametrize("n_sub,rows,cols,axis,want", [
    (1, 2, 4, 1, [[0, 1, 2, 3], [4, 5, 6, 7]]),      # one subgroup owns everything
    (1, 2, 4, 0, [[0, 4], [1, 5], [2, 6], [3, 7]]),
    (4, 4, 1, 1, [[0]]),                              # tiles as wide as the value: a row each
    (2, 2, 4, 0, [[0, 2], [1, 3]]),                   # subgroup s owns columns s and s + 2
    (4, 2, 4, 1, None),                               # a tile row spans subgroups
    (4, 2, 2, 0, None),
])
def test_tile_groups(n_sub, rows, cols, axis, want):
    from spvjit.codegen.coopmat2_reduce import tile_groups
    assert tile_groups(n_sub, rows, cols, axis) == want


def test_max_ignores_nans_and_keeps_infinities(monkeypatch):
    """NaN / inf rows: max and min (NMax / NMin combines) ignore NaNs like Triton's tl.max and
    the blocked path; a row of only NaNs is NaN (np.nanmax's answer; the blocked path gives its
    identity there, -inf for max, +inf for min); infinities are kept.  Sums propagate both."""
    _device_or_skip("reductions")
    BM = BN = K = 8
    rng = np.random.default_rng(5)
    a = rng.standard_normal((BM, K)).astype(np.float16)
    b = np.abs(rng.standard_normal((K, BN))).astype(np.float16) + np.float16(0.5)
    b[0, 3] = 0.0
    a[1, 0] = np.inf             # row 1: +inf, except column 3 where inf * 0 is NaN
    a[2, 0] = -np.inf            # row 2: -inf, NaN in column 3
    a[3, 0] = np.nan             # row 3: all NaN

    def run():
        r = spvjit.zeros((3 * BM,), np.float32)
        c = spvjit.zeros((BM, BN), np.float32)
        dot_reductions[(1,)](spvjit.tensor(a), spvjit.tensor(b), r, c, K, BM=BM, BN=BN, BK=8,
                             AXIS=1, BCAST=False)
        return r.numpy().reshape(3, BM)
    nv, blocked = _both_ways(monkeypatch, run)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # inf * 0, and nanmax of the all-NaN row
        acc = a.astype(np.float64) @ b.astype(np.float64)
        want_max, want_min = np.nanmax(acc, 1), np.nanmin(acc, 1)
    # finite values: f32 sums of 8 exact products against f64 ones; NaN and inf exactly
    np.testing.assert_allclose(nv[1], want_max, rtol=1e-6)
    np.testing.assert_allclose(nv[2], want_min, rtol=1e-6)
    assert nv[1, 1] == np.inf and nv[2, 1] == np.inf and nv[1, 2] == -np.inf and nv[2, 2] == -np.inf
    assert np.isnan(nv[1, 3]) and np.isnan(nv[2, 3]) and np.isnan(nv[0, 1:4]).all()
    # rows with at least one number agree with the blocked path exactly (NaNs ignored there too)
    np.testing.assert_array_equal(nv[1:, [0, 1, 2, 4, 5, 6, 7]], blocked[1:, [0, 1, 2, 4, 5, 6, 7]])


@spvjit.kernel
def dot_per_element(a_ptr, b_ptr, c_ptr, r_ptr, K, alpha, BM: sl.constexpr, BN: sl.constexpr,
                    BK: sl.constexpr, EPI: sl.constexpr):
    rm = sl.arange(0, BM)
    rn = sl.arange(0, BN)
    acc = kloop_acc(a_ptr, b_ptr, K, BM, BN, BK, sl.float32)
    if EPI == "exp":
        e = sl.exp(acc * 0.25)
    elif EPI == "exp2":
        e = sl.exp2(acc * 0.25)
    elif EPI == "log":
        e = sl.log(sl.abs(acc) + 1.0)
    elif EPI == "max_scalar":
        e = sl.maximum(acc, alpha)
    elif EPI == "min_matrix":
        e = sl.minimum(acc, acc * alpha)
    elif EPI == "sigmoid_sqrt":
        e = sl.sigmoid(acc) + sl.sqrt(sl.abs(acc))
    elif EPI == "where_tril":       # a condition from the element's position and a scalar
        e = sl.where(rm[:, None] + K // 8 >= rn[None, :], acc, alpha)
    elif EPI == "add_index":        # an index tile operand, computed per element
        e = acc + (rm[:, None] * BN + rn[None, :]).to(sl.float32) * alpha
    sl.store(c_ptr + rm[:, None] * BN + rn[None, :], e)
    sl.store(r_ptr + rm, sl.sum(e, 1))      # a reduction keeps the tiles at the 8x8 granule


_NUMPY_EPI = {
    "exp": lambda x, al: np.exp(x * 0.25),
    "exp2": lambda x, al: np.exp2(x * 0.25),
    "log": lambda x, al: np.log(np.abs(x) + 1.0),
    "max_scalar": lambda x, al: np.maximum(x, al),
    "min_matrix": lambda x, al: np.minimum(x, x * al),
    "sigmoid_sqrt": lambda x, al: 1.0 / (1.0 + np.exp(-x)) + np.sqrt(np.abs(x)),
    "where_tril": lambda x, al: np.where(np.arange(16)[:, None] + 3 >= np.arange(16)[None, :], x, al),
    "add_index": lambda x, al: x + np.arange(256).reshape(16, 16) * al,
}


@pytest.mark.parametrize("epi", sorted(_NUMPY_EPI))
def test_per_element_operations(monkeypatch, epi):
    _device_or_skip("reductions", "per_element_operations")
    BM, BN, K, alpha = 16, 16, 24, 0.5
    rng = np.random.default_rng(len(epi))
    a = rng.standard_normal((BM, K)).astype(np.float16)
    b = rng.standard_normal((K, BN)).astype(np.float16)

    def run():
        c = spvjit.zeros((BM, BN), np.float32)
        r = spvjit.zeros((BM,), np.float32)
        dot_per_element[(1,)](spvjit.tensor(a), spvjit.tensor(b), c, r, K, alpha, BM=BM, BN=BN, BK=8, EPI=epi)
        return c.numpy(), r.numpy()
    (c_nv, r_nv), (c_bl, r_bl) = _both_ways(monkeypatch, run)
    ref = _NUMPY_EPI[epi](a.astype(np.float64) @ b.astype(np.float64), alpha)
    # Vulkan's exp/exp2/log are 3 + 2|x| ulp (or 2^-21 absolute for log near 1) in f32: 1e-5
    # relative covers them for |x| <= 10; the row sums add 16 terms at 2^-24
    np.testing.assert_allclose(c_nv, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(r_nv, ref.sum(1), rtol=1e-5, atol=1e-4)
    # the same GLSL.std.450 instruction per element on both paths: bit-identical elements
    np.testing.assert_array_equal(c_nv, c_bl)
    np.testing.assert_allclose(r_nv, r_bl, rtol=1e-5, atol=1e-4)


@spvjit.kernel
def attention_step(q_ptr, k_ptr, v_ptr, o_ptr, N_CTX, qk_scale, BM: sl.constexpr, BN: sl.constexpr,
                   D: sl.constexpr, CAUSAL: sl.constexpr = 0):
    """Flash attention's forward inner step, as Triton's tutorial writes it; CAUSAL 1 masks
    with tl.where(mask, qk, -inf), 2 as the tutorial does, qk + tl.where(mask, 0, -1e6)."""
    rm = sl.program_id(0) * BM + sl.arange(0, BM)
    rn = sl.arange(0, BN)
    rd = sl.arange(0, D)
    q = sl.load(q_ptr + rm[:, None] * D + rd[None, :])
    m_i = sl.full((BM,), float("-inf"), dtype=sl.float32)
    l_i = sl.zeros((BM,), dtype=sl.float32)
    acc = sl.zeros((BM, D), dtype=sl.float32)
    for start in range(0, N_CTX, BN):
        k = sl.load(k_ptr + rd[:, None] + (start + rn)[None, :] * D)      # K^T block [D, BN]
        qk = sl.dot(q, k) * qk_scale
        if CAUSAL == 1:
            qk = sl.where(rm[:, None] >= (start + rn)[None, :], qk, float("-inf"))
        elif CAUSAL == 2:
            qk = qk + sl.where(rm[:, None] >= (start + rn)[None, :], 0.0, -1.0e6)
        m_ij = sl.maximum(m_i, sl.max(qk, 1))
        p = sl.exp2(qk - m_ij[:, None])
        l_ij = sl.sum(p, 1)
        alpha = sl.exp2(m_i - m_ij)
        l_i = l_i * alpha + l_ij
        acc = acc * alpha[:, None]
        v = sl.load(v_ptr + (start + rn)[:, None] * D + rd[None, :])
        acc = sl.dot(p.to(sl.float16), v, acc)
        m_i = m_ij
    acc = acc / l_i[:, None]
    sl.store(o_ptr + rm[:, None] * D + rd[None, :], acc)


def _attention_inputs(N_CTX, D, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((N_CTX, D)).astype(np.float16) for _ in range(3)]


def _attention_module(N_CTX, D, BM, BN, causal=0):
    q, k, v = (spvjit.empty((N_CTX, D), np.float16) for _ in range(3))
    ir = attention_step.ir_module(q, k, v, spvjit.empty((N_CTX, D), np.float32), N_CTX, 0.25, BM=BM, BN=BN, D=D,
                                  CAUSAL=causal)
    ck = _compile(ir, lavapipe26_target(), num_warps=1)
    return ck.spirv, disassemble(ck.spirv)


@pytest.mark.parametrize("causal", [0, 1, 2])
def test_attention_step_module(monkeypatch, causal):
    """qk's row max and p's row sum are Reduce instructions, exp2 a per-element op, p.to(f16)
    an A matrix by OpCooperativeMatrixConvertNV; only the 1-D m / l / alpha vectors (blocked)
    cross shared memory.  A causal mask is evaluated inside a per-element function from each
    element's row and column (no mask tile, no trip of qk through the blocked layout)."""
    _with_coopmat2(monkeypatch)
    spirv, text = _attention_module(64, 16, 16, 16, causal)
    assert text.count("OpCooperativeMatrixReduceNV") == 4          # max and sum, 2 tile rows each
    assert "OpCooperativeMatrixPerElementOpNV" in text
    assert text.count("OpCooperativeMatrixConvertNV") == 4         # p's four 8x8 tiles
    assert "OpCapability CooperativeMatrixConversionsNV" in text
    if causal:      # the mask is a per-element function of (row, column, element, tile corner, scalars)
        assert f"%element_{'select' if causal == 1 else 'add'}_f32 = OpFunction" in text
        plain_spirv, _ = _attention_module(64, 16, 16, 16, 0)
        assert workgroup_accesses(spirv) == workgroup_accesses(plain_spirv)
    _without_coopmat2(monkeypatch)
    spirv_khr, text_khr = _attention_module(64, 16, 16, 16, causal)
    assert "NV" not in "".join(line for line in text_khr.splitlines() if "Cooperative" in line)
    assert sum(workgroup_accesses(spirv)) < sum(workgroup_accesses(spirv_khr))
    if not causal:  # (a masked qk is all blocked there: fewer barriers, many more moves)
        assert text.count("OpControlBarrier") < text_khr.count("OpControlBarrier")


@pytest.mark.parametrize("causal", [0, 2])
def test_attention_step_matches_numpy(monkeypatch, causal):
    """Three key blocks per program, three programs (16x16 blocks, head dim 16: lavapipe compiles
    both paths in about 9 s on this 2-core host; 16x32 blocks at head dim 32 took 55-70 s each)."""
    _device_or_skip("reductions", "per_element_operations", "conversions")
    N_CTX, D, BM, BN = 48, 16, 16, 16
    q, k, v = _attention_inputs(N_CTX, D, seed=1)
    scale = 1.4426950408889634 / np.sqrt(D)     # log2(e) / sqrt(D): exp2 of it is softmax's exp

    def run():
        o = spvjit.zeros((N_CTX, D), np.float32)
        attention_step[(N_CTX // BM,)](spvjit.tensor(q), spvjit.tensor(k), spvjit.tensor(v), o, N_CTX, scale,
                                       BM=BM, BN=BN, D=D, CAUSAL=causal)
        return o.numpy()
    nv, blocked = _both_ways(monkeypatch, run)
    s = (q.astype(np.float64) @ k.astype(np.float64).T) / np.sqrt(D)
    if causal:          # -1e6 * log2(e) / sqrt(D) underflows exp2 to 0 exactly, like -inf
        s = np.where(np.arange(N_CTX)[:, None] >= np.arange(N_CTX)[None, :], s, -np.inf)
    p = np.exp(s - s.max(1, keepdims=True))
    ref = (p / p.sum(1, keepdims=True)) @ v.astype(np.float64)
    # p is rounded to f16 (2^-11 relative, p <= 1) before P V: outputs, weighted means of
    # |v| <= ~4, move by <= 4 * 2^-11 = 2e-3; everything else is f32
    np.testing.assert_allclose(nv, ref, rtol=0, atol=2e-3)
    np.testing.assert_allclose(blocked, ref, rtol=0, atol=2e-3)
    np.testing.assert_allclose(nv, blocked, rtol=0, atol=2e-3)


def test_side_function_sets_the_open_function_aside():
    """ModuleBuilder.side_function: a callee is built while the entry point is open, and the
    entry point resumes where it was; a callee left open is an error, not a broken module."""
    from spvjit.codegen.spirv.builder import ModuleBuilder
    b = ModuleBuilder()
    f32 = b.type_float(32)
    b.begin_function(b.type_void(), b.type_function(b.type_void(), []))
    b.label()
    with b.side_function():
        fid = b.begin_function(f32, b.type_function(f32, [f32]))
        x = b.function_parameter(f32)
        b.label()
        b.emit("OpReturnValue", None, x)
        b.end_function()
    b.emit("OpFunctionCall", f32, fid, b.const(f32, 1.0))     # appended to the entry point again
    b.emit("OpReturn", None)
    b.end_function()
    assert len(b.words()) > 5
    b.begin_function(b.type_void(), b.type_function(b.type_void(), []))
    with pytest.raises(ValueError, match="was not ended"):
        with b.side_function():
            b.begin_function(f32, b.type_function(f32, [f32]))
    b.label()                                   # the outer function is open again


def nvidia_like_cm2():
    """A GPU-like stand-in: 32 lanes, 16x16x16 KHR shapes and granules, all of the features
    (compile-only: several subgroups per program, which lavapipe never uses)."""
    khr = (CoopMatConfig(16, 16, 16, "f16", "f16", "f32", "f32", False, "subgroup"),)
    flex = (FlexConfig(16, 16, 16, "f16", "f16", "f32", "f32", False, "subgroup", 0),)
    return dataclasses.replace(get_device().caps, device_type="discrete", subgroup_size=32,
                               cooperative_matrix=khr, max_shared_memory=48 * 1024,
                               cooperative_matrix2=CoopMat2(CM2_FEATURES, 0, 256, 0, flex))


@pytest.mark.parametrize("axis,on_matrices", [(0, True), (1, False)])
def test_several_subgroups(monkeypatch, axis, on_matrices):
    """64x64 over 4 subgroups in 16x16 tiles: subgroup s owns tiles s, s+4, ... of the 4x4 grid,
    so whole tile columns (axis 0) but no whole tile row (axis 1): the row reductions stay on
    the blocked path, the column ones run on the matrices and are read out for every subgroup."""
    _with_coopmat2(monkeypatch)
    ck = _compile(_reductions_ir(64, 64, 32, axis, BK=16), nvidia_like_cm2(), num_warps=4)
    text = disassemble(ck.spirv)                # (validated by _compile)
    assert ck.workgroup_size == 128 and "OpCooperativeMatrixMulAddKHR" in text
    assert ("OpCooperativeMatrixReduceNV" in text) == on_matrices
    if on_matrices:       # each subgroup: its 4 tiles are 1 tile column -> 1 Reduce per kind
        assert text.count("OpCooperativeMatrixReduceNV") == 3


def test_row_max_attention_fits_on_the_matrices(monkeypatch):
    """test_coopmat_shared_fallback's 32x64 attention step with a row-max softmax needs 37 KiB of
    lavapipe's 32 when the row max goes through the blocked layout (so it is built without
    cooperative matrices); with the NV reduction and p converted to A it fits and stays on them."""
    from test_coopmat_shared_fallback import BN, D, L, M, attention_rows
    q = spvjit.empty((L, D), np.float16)
    ir = attention_rows.ir_module(q, q, q, spvjit.empty((M, D), np.float32), L, M=M, BN=BN, D=D, SOFTMAX=True)
    _with_coopmat2(monkeypatch)
    notes = {}
    ck = compile_kernel(ir, lavapipe26_target(), num_warps=1, notes=notes)
    validate(ck.spirv, target_env="vulkan1.3")
    text = disassemble(ck.spirv)
    assert "OpCooperativeMatrixMulAddKHR" in text and "OpCooperativeMatrixReduceNV" in text
    assert "OpCooperativeMatrixConvertNV" in text
    assert not any("not on cooperative matrices" in notes.get(id(op), "") for op in ir.walk() if op.name == "dot")
