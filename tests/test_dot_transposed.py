"""`dot` of transposed operands (codegen/dot_trans.py): a `trans` whose only uses are dots that
stage or broadcast their operands is not lowered at all; the dot reads its source transposed.
Results against numpy on the device (one subgroup, and a GPU-like program of several
subgroups) and in the interpreter; the lowering's choice is checked from its notes, so a
change that quietly moves the data again shows up here."""
import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit.codegen.compiler import compile_kernel
from spvjit.codegen.target import Target
from spvjit.compiler import _build_ir
from spvjit.runtime import get_device
from test_gpu_layouts import run_as_gpu

TRANSPOSED = "read transposed by the dot"


@spvjit.kernel
def dot_of_trans(a_ptr, b_ptr, c_ptr, t_ptr, M: sl.constexpr, N: sl.constexpr, K: sl.constexpr,
                 FORM: sl.constexpr):
    """C = A @ B with A and/or B stored transposed (a_ptr holds A^T [K, M], b_ptr B^T [N, K])
    where FORM says so; 'extra_use' also stores trans(b) itself, 'loop' transposes outside a
    loop whose body holds the dot."""
    rm, rn, rk = sl.arange(0, M), sl.arange(0, N), sl.arange(0, K)
    if FORM == "a_t" or FORM == "both_t":
        a = sl.trans(sl.load(a_ptr + rk[:, None] * M + rm[None, :]))
    else:
        a = sl.load(a_ptr + rm[:, None] * K + rk[None, :])
    if FORM == "a_t":
        b = sl.load(b_ptr + rk[:, None] * N + rn[None, :])
    else:
        b = sl.trans(sl.load(b_ptr + rn[:, None] * K + rk[None, :]))
    c_ptrs = c_ptr + rm[:, None] * N + rn[None, :]
    if FORM == "loop":
        acc = sl.zeros([M, N], dtype=sl.float32)
        for _ in range(2):
            acc = sl.dot(a, b, acc)
        sl.store(c_ptrs, acc * 0.5)
    else:
        sl.store(c_ptrs, sl.dot(a, b))
    if FORM == "extra_use":
        sl.store(t_ptr + rk[:, None] * N + rn[None, :], b)


def _args(M, N, K, form, dt):
    rng = np.random.default_rng(M + 3 * N + 7 * K)
    a = rng.standard_normal((M, K)).astype(dt)
    b = rng.standard_normal((K, N)).astype(dt)
    a_in = a.T.copy() if form in ("a_t", "both_t") else a
    b_in = b if form == "a_t" else b.T.copy()
    return a, b, a_in, b_in


FORMS = ["b_t", "a_t", "both_t", "extra_use", "loop"]
# 16x16x16: the staged form on lavapipe (C rows span two lanes); 8x64x16: the subgroup form
# (a C row per register), which reads a transposed A by broadcast and moves a transposed B
SHAPES = [(16, 16, 16), (8, 64, 16), (4, 8, 8)]


def _check(got, a, b, t, form):
    # f16 products are exact in f32 and K <= 16 sums of terms ~1 differ from float64 by < 1e-5
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, atol=1e-4, rtol=1e-5)
    if form == "extra_use":
        np.testing.assert_array_equal(t, b)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("M,N,K", SHAPES)
def test_dot_of_transposed_operands(mode, form, M, N, K):
    a, b, a_in, b_in = _args(M, N, K, form, np.float16)
    c, t = spvjit.empty((M, N), np.float32), spvjit.empty((K, N), np.float16)
    kern = spvjit.interpret(dot_of_trans) if mode == "interpreter" else dot_of_trans
    kern[(1,)](spvjit.tensor(a_in), spvjit.tensor(b_in), c, t, M=M, N=N, K=K, FORM=form)
    _check(c.numpy(), a, b, t.numpy(), form)


@pytest.mark.parametrize("form", ["b_t", "both_t", "extra_use"])
def test_dot_of_transposed_operands_on_several_subgroups(needs_device, form):
    M = N = K = 16
    a, b, a_in, b_in = _args(M, N, K, form, np.float16)
    c, t = spvjit.empty((M, N), np.float32), spvjit.empty((K, N), np.float16)
    run_as_gpu(dot_of_trans, (1,), spvjit.tensor(a_in), spvjit.tensor(b_in), c, t, M=M, N=N, K=K,
               FORM=form, num_warps=1)
    _check(c.numpy(), a, b, t.numpy(), form)


def _trans_notes(form, M, N, K):
    dev = get_device()
    args = [spvjit.empty((max(M, K), max(N, K)), np.float16) for _ in range(2)] + \
        [spvjit.empty((M, N), np.float32), spvjit.empty((K, N), np.float16)]
    spec, _ = dot_of_trans.specialize(args, dict(M=M, N=N, K=K, FORM=form))
    kernel = _build_ir(dot_of_trans, spec, optimize=True)
    notes = {}
    compile_kernel(kernel, Target.of(dev.kernel_caps), spec.num_warps, spec.divisibility or {}, notes)
    return [notes.get(id(op), "") for op in kernel.walk() if op.name == "trans"]


@pytest.mark.parametrize("form,M,N,K,fused", [
    ("b_t", 16, 16, 16, [True]), ("both_t", 16, 16, 16, [True, True]),
    ("extra_use", 16, 16, 16, [False]),        # also stored: its registers are needed
    ("loop", 16, 16, 16, [False]),             # the dot sits in another block (the loop body)
    ("a_t", 8, 64, 16, [True]),                # the subgroup form broadcasts from A's source
    ("b_t", 8, 64, 16, [False]),               # ... but needs B's registers where they are
])
def test_which_transposes_the_dot_reads(needs_device, form, M, N, K, fused):
    if get_device().caps.subgroup_size != 8 or get_device().caps.device_type != "cpu":
        pytest.skip("the forms chosen are lavapipe's (one subgroup of 8 lanes per program)")
    notes = _trans_notes(form, M, N, K)
    assert [TRANSPOSED in n for n in notes] == fused, notes
