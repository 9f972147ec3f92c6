"""Launch facts (spvjit/launch_facts.py): a `%`'s runs where the launch shows its scalars >= 0.

The reference for every result is numpy with C's remainder (np.fmod), the semantics of Triton
and of the interpreter; the grids include ones where a program's offset is negative, so a
vec4 read where the runs break would give wrong numbers.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import spvjit
import spvjit.language as tl
from spvjit import launch_facts
from spvjit.codegen import axis_info
from spvjit.codegen.target import Target
from spvjit.compiler import _build_ir
from spvjit.runtime import get_device

from test_big_tiles import _lowered_notes
from tutorial_kernels import matmul_kernel

pytestmark = pytest.mark.usefixtures("one_subgroup")     # their notes are one subgroup's


@spvjit.jit
def wrapped_rows(x_ptr, out_ptr, shift, N, BLOCK: tl.constexpr):
    """Program p copies x[N + ((p - shift) * BLOCK + j) % N] for j < BLOCK: x holds 2N
    elements, so a negative remainder (C's) still reads inside x."""
    pid = tl.program_id(0)
    offs = ((pid - shift) * BLOCK + tl.arange(0, BLOCK)) % N
    tl.store(out_ptr + pid * BLOCK + tl.arange(0, BLOCK), tl.load(x_ptr + N + offs))


def _wrapped_reference(x, programs, shift, n, block):
    j = np.arange(block)
    return np.concatenate([x[n + np.fmod((p - shift) * block + j, n)] for p in range(programs)])


def _assumed(jitfn) -> list[bool]:
    """Per compiled specialization of `jitfn`: whether it assumed its scalars >= 0."""
    return [("assume_nonneg",) in key for key in jitfn._compiled]


def _load_note(assume: bool, n: int) -> str:
    x, out = spvjit.tensor(np.zeros(2 * n, np.float32)), spvjit.empty((8 * 32,), np.float32)
    _, by_name, _ = _lowered_notes(wrapped_rows, Target.of(get_device().kernel_caps), x, out, 3, n,
                                   BLOCK=32, assume_nonneg=assume)
    return by_name["load"]


def test_the_wanted_scalar_is_the_programs_offset(needs_device):
    """(pid - shift) * BLOCK, the scalar the tile is built on, is the one whose sign decides;
    with it assumed >= 0 the load reads vec4."""
    x, out = spvjit.tensor(np.zeros(128, np.float32)), spvjit.empty((256,), np.float32)
    spec, _ = wrapped_rows.specialize([x, out, 3, 64], dict(BLOCK=32))
    kernel = _build_ir(wrapped_rows, spec, optimize=True)
    wanted = axis_info.nonneg_wanted(kernel, axis_info.analyze(kernel, spec.divisibility))
    assert [v.owner.name for v in wanted] == ["mul"]
    assert "scalar" in _load_note(False, 64)
    assert "vec4" in _load_note(True, 64)


@pytest.mark.parametrize("shift, programs, assumed", [(0, 8, True), (2, 8, False), (-3, 4, True)])
def test_results_match_numpy_with_or_without_the_fact(needs_device, shift, programs, assumed):
    """shift 2 with N = 64 = 2 * BLOCK makes program 0's offsets -64..-33: C's remainder is
    0, -63, -62, ..., which no vec4 read gives, so this launch must not assume the fact."""
    n, block = 64, 32
    rng = np.random.default_rng(shift + 10)
    x = rng.standard_normal(2 * n).astype(np.float32)
    out = spvjit.empty((programs * block,), np.float32)
    wrapped_rows._compiled.clear()
    wrapped_rows[(programs,)](spvjit.tensor(x), out, shift, n, BLOCK=block)
    np.testing.assert_array_equal(out.numpy(), _wrapped_reference(x, programs, shift, n, block))
    assert _assumed(wrapped_rows) == [assumed]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shift=st.integers(-8, 8), programs=st.integers(1, 9), n=st.sampled_from([64, 96, 128, 192]))
def test_any_shift_and_grid_reads_what_numpy_reads(needs_device, shift, programs, n):
    """Blocks of 32 (4 elements per lane on 8 lanes: vec4 where the fact holds); a shift of
    n/32 or more puts some program's offsets at exactly -n, whose remainders are no run.
    (needs_device only skips where there is no device: nothing to reset between inputs.)"""
    block = 32
    x = np.arange(2 * n, dtype=np.float32)
    out = spvjit.empty((programs * block,), np.float32)
    wrapped_rows[(programs,)](spvjit.tensor(x), out, shift, n, BLOCK=block)
    np.testing.assert_array_equal(out.numpy(), _wrapped_reference(x, programs, shift, n, block))


def _matmul_facts(m, n, k, bm=64, bn=64, bk=32):
    ta, tb = spvjit.tensor(np.zeros((m, k), np.float32)), spvjit.tensor(np.zeros((k, n), np.float32))
    tc = spvjit.empty((m, n), np.float16)
    spec, _ = matmul_kernel.specialize([ta, tb, tc, m, n, k, k, 1, n, 1, n, 1],
                                       dict(BLOCK_SIZE_M=bm, BLOCK_SIZE_N=bn, BLOCK_SIZE_K=bk,
                                            GROUP_SIZE_M=8, ACTIVATION=""))
    return launch_facts.NonnegFacts.of(matmul_kernel, spec), spec


def test_the_tutorials_pid_n_holds_in_its_own_grid_only(needs_device):
    """The tutorial's grouped pid_n, (pid % num_pid_in_group) // group_size_m, is >= 0 in its
    own grid, cdiv(M, BM) * cdiv(N, BN), and in any grid within the first group of
    GROUP_SIZE_M * num_pid_n programs.  Past it, group_size_m = num_pid_m - first_pid_m is 0
    (a division by zero, undefined on the device) or negative: no fact then."""
    facts, spec = _matmul_facts(256, 192, 64)      # 4 x 3 tiles, a group of 8 * 3 = 24 programs
    assert facts is not None
    args = dict(spec.runtime)
    assert facts.hold((4 * 3, 1, 1), args)
    assert facts.hold((1, 1, 1), args)
    assert facts.hold((24, 1, 1), args)            # pid 23: pid_n = 23 // 4 = 5, unused but >= 0
    assert not facts.hold((29, 1, 1), args)        # pid 28: group_size_m = 4 - 8, pid_n = 4 // -4
    assert not facts.hold((0, 1, 1), args)
    facts, spec = _matmul_facts(512, 192, 64)      # 8 x 3 tiles: pid 24 starts group 1 at m = 8
    assert facts.hold((24, 1, 1), dict(spec.runtime))
    assert not facts.hold((25, 1, 1), dict(spec.runtime))     # group_size_m = 8 - 8 = 0


def test_grids_past_the_checked_size_launch_the_plain_specialization(needs_device, monkeypatch):
    facts, spec = _matmul_facts(256, 192, 64)
    monkeypatch.setattr(launch_facts, "MAX_PROGRAMS", 8)
    assert not facts.hold((12, 1, 1), dict(spec.runtime))


@spvjit.jit
def offset_from_memory(x_ptr, out_ptr, start_ptr, N, BLOCK: tl.constexpr):
    start = tl.load(start_ptr)
    offs = (start + tl.arange(0, BLOCK)) % N
    tl.store(out_ptr + tl.arange(0, BLOCK), tl.load(x_ptr + N + offs))


def test_a_scalar_the_host_cannot_compute_is_never_assumed(needs_device):
    """A start loaded from memory could be anything: the launch keeps the plain reads."""
    n, block = 64, 16
    x = np.arange(2 * n, dtype=np.float32)
    for start in (-n, 5):
        out = spvjit.empty((block,), np.float32)
        offset_from_memory[(1,)](spvjit.tensor(x), out, spvjit.tensor(np.array([start], np.int32)), n,
                                 BLOCK=block)
        np.testing.assert_array_equal(out.numpy(), x[n + np.fmod(start + np.arange(block), n)])
    assert _assumed(offset_from_memory) == [False]


def test_the_tutorial_matmul_reads_b_as_vec4_and_matches_numpy(needs_device):
    m = n = k = 128
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    c = spvjit.empty((m, n), np.float16)
    matmul_kernel._compiled.clear()
    matmul_kernel[(2 * 2,)](spvjit.tensor(a), spvjit.tensor(b), c, m, n, k, k, 1, n, 1, n, 1,
                            BLOCK_SIZE_M=64, BLOCK_SIZE_N=64, BLOCK_SIZE_K=32, GROUP_SIZE_M=8,
                            ACTIVATION="")
    # f16 output: a relative error of 2^-11 per element, on sums of 128 products
    np.testing.assert_allclose(c.numpy().astype(np.float32), a @ b, rtol=2e-3, atol=2e-2)
    assert _assumed(matmul_kernel) == [True]
    ta, tb = spvjit.tensor(a), spvjit.tensor(b)
    for assume in (False, True):
        _, by_name, _ = _lowered_notes(matmul_kernel, Target.of(get_device().kernel_caps),
                                       ta, tb, c, m, n, k, k, 1, n, 1, n, 1, BLOCK_SIZE_M=64,
                                       BLOCK_SIZE_N=64, BLOCK_SIZE_K=32, GROUP_SIZE_M=8,
                                       ACTIVATION="", assume_nonneg=assume)
        assert ("B read as vec4" in by_name["dot"]) == assume, by_name["dot"]
