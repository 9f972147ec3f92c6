"""A looped dot's computed f16 A staged as packed halves (codegen/staged_pairs.py): results
against numpy on the device and in the interpreter, which dots take the form, and the shared
loads it saves."""
import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit.codegen.compiler import compile_kernel
from spvjit.codegen.spirv.disasm import workgroup_accesses
from spvjit.codegen.target import Target
from spvjit.compiler import _build_ir
from spvjit.runtime import get_device

MODES = ["device", "interpreter"]


def launch(kernel, mode):
    return spvjit.interpret(kernel) if mode == "interpreter" else kernel


@spvjit.kernel
def computed_a_dot(x_ptr, b_ptr, c_ptr, mask_cols, M: sl.constexpr, N: sl.constexpr, K: sl.constexpr,
                   DT: sl.constexpr):
    """C = exp2(x - 1) (masked, as attention's P) cast to DT, times B: A is computed, so a looped
    dot stages it; B is a load the loop reads."""
    rm = sl.arange(0, M)
    rn = sl.arange(0, N)
    rk = sl.arange(0, K)
    x = sl.load(x_ptr + rm[:, None] * K + rk[None, :])
    p = sl.math.exp2(x - 1.0)
    p = sl.where(rk[None, :] < mask_cols, p, 0.0)
    b = sl.load(b_ptr + rk[:, None] * N + rn[None, :])
    sl.store(c_ptr + rm[:, None] * N + rn[None, :], sl.dot(p.to(DT), b.to(DT)))


def _run(mode, M, N, K, dt, mask_cols, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, (M, K)).astype(np.float32)
    b = rng.standard_normal((K, N)).astype(np.float32)
    c = spvjit.empty((M, N), np.float32)
    launch(computed_a_dot, mode)[(1,)](spvjit.tensor(x), spvjit.tensor(b), c, mask_cols,
                                        M=M, N=N, K=K, DT=dt)
    np_dt = {sl.float16: np.float16, sl.float32: np.float32}[dt]
    p = np.where(np.arange(K)[None, :] < mask_cols, np.exp2(x.astype(np.float64) - 1.0), 0.0)
    want = p.astype(np_dt).astype(np.float64) @ b.astype(np_dt).astype(np.float64)
    return c.numpy(), want


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("M,N,K,mask_cols", [
    (16, 32, 32, 32),        # the smallest packed case on 8 lanes: K = 4W
    (64, 64, 32, 20),        # attention dK/dV's second dot at 32x64 blocks, masked columns
    (2, 32, 32, 32),         # a single row pair
    (32, 32, 64, 64),        # two column blocks per row in each lane
    (32, 64, 128, 77),       # K = 16 W: four column blocks per row, ragged mask
])
def test_packed_f16_a_matches_numpy(mode, M, N, K, mask_cols, always_loop):
    got, want = _run(mode, M, N, K, sl.float16, mask_cols)
    # A and B rounded to f16 exactly as numpy's casts do (the halves travel unrounded), then
    # f32 accumulation of K <= 128 products |p| < 2, |b| ~ N(0,1) in another order than numpy's:
    # partial sums stay below 32, so each add errs by <= 2^-24 * 32 and 128 of them by < 3e-4
    # (the worst case; seen: 2.9e-4 in the interpreter); a misplaced row or step is off by > 0.1
    np.testing.assert_allclose(got, want, atol=5e-4, rtol=1e-4)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("M,N", [(16, 32), (64, 64)])     # 8 and (a big body) 4 steps per trip
def test_f32_a_keeps_word_staging(mode, M, N, always_loop):
    got, want = _run(mode, M, N, 32, sl.float32, 25)
    # f32 A and B: K = 32 products of f32 values, another order of additions than numpy's
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)


def _notes_and_loads(M, N, K, dt, limit):
    import dataclasses
    t = spvjit.tensor(np.zeros((M * max(N, K),), np.float32))
    spec, _ = computed_a_dot.specialize([t, t, t, K], dict(M=M, N=N, K=K, DT=dt))
    kernel = _build_ir(computed_a_dot, spec, optimize=True)
    target = dataclasses.replace(Target.of(get_device().kernel_caps), dot_unroll_limit=limit)
    notes = {}
    ck = compile_kernel(kernel, target, spec.num_warps, spec.divisibility or {}, notes)
    dot = next(op for op in kernel.walk() if op.name == "dot")
    return notes[id(dot)], workgroup_accesses(ck.spirv), ck


@pytest.mark.usefixtures("one_subgroup")      # a whole 64x64 C, not slices of it
@pytest.mark.parametrize("dt,packed", [(sl.float16, True), (sl.float32, False)])
def test_the_packed_form_is_chosen_for_f16_and_halves_the_shared_accesses(dt, packed):
    """64x64 C, K = 32 on 8 lanes: with f16 A each lane stores 32 quads (two rows each) and
    each trip of 4 steps loads 32, where f32 words need 64 of each; only the f16 dot takes
    the packed form."""
    if get_device().caps.subgroup_size != 8:
        pytest.skip("sized for lavapipe's 8-lane subgroups")
    note, (stores, loads), _ = _notes_and_loads(64, 64, 32, dt, 0)
    assert ("as f16 pairs" in note) == packed, note
    assert "loop over k (8 trips of 4 steps)" in note, note
    assert (stores, loads) == ((32, 32) if packed else (64, 64)), (stores, loads)
