"""Strip-mining a program along a row-parallel axis (ir/passes/strip_mine.py) and the rule that
applies it to big tiles on one subgroup of a CPU driver (codegen/chunking.py): the axes found
and refused, the interpreter's results on the cut IR against numpy, the rule's choices per
target, and cut kernels run on the device against numpy."""
import dataclasses

import numpy as np
import pytest

import spvjit
import spvjit as triton
import spvjit.language as sl
import spvjit.language as tl
from spvjit.codegen import chunking
from spvjit.codegen.compiler import rewrite_for_target
from spvjit.codegen.target import Target
from spvjit.compiler import _build_ir
from spvjit.interpreter import run_interpreted
from spvjit.ir import parse, print_kernel, verify
from spvjit.ir.passes.strip_mine import row_axes, strip_mine
from spvjit.runtime.capabilities import CoopMatConfig

import test_triton_tutorials as tut
from tutorial_kernels import matmul_kernel


def _ir(jitfn, *args, **meta):
    spec, _ = jitfn.specialize(list(args), meta)
    return _build_ir(jitfn, spec, optimize=True), spec


def _interpret(kernel, spec, grid):
    run_interpreted(kernel, spec.runtime, tuple(grid) + (1,) * (3 - len(grid)))


def _cut(kernel, axis_size, chunks):
    """`kernel` with its axis of `axis_size` cut into `chunks`, checked valid and printable."""
    axis = next(a for a in row_axes(kernel) if a.size == axis_size)
    strip_mine(kernel, axis, chunks)
    verify(kernel)
    parse(print_kernel(kernel))
    return kernel


# ---------------------------------------------------------------------------------------------
# the axes found
# ---------------------------------------------------------------------------------------------
def _matmul_ir(M, N, K, bm, bn, bk, seed=0):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((M, K)).astype(np.float32), rng.standard_normal((K, N)).astype(np.float32)
    ta, tb, tc = spvjit.tensor(a), spvjit.tensor(b), spvjit.zeros((M, N), np.float16)
    kernel, spec = _ir(matmul_kernel, ta, tb, tc, M, N, K, K, 1, N, 1, N, 1, BLOCK_SIZE_M=bm,
                       BLOCK_SIZE_N=bn, BLOCK_SIZE_K=bk, GROUP_SIZE_M=2, ACTIVATION="")
    return kernel, spec, a, b, tc


def test_the_matmul_has_its_rows_and_columns_but_not_k():
    kernel, *_ = _matmul_ir(64, 64, 64, 64, 32, 16)
    axes = row_axes(kernel)
    assert sorted(a.size for a in axes) == [32, 64]      # one arange(0, 16) for K: not an axis
    rows = next(a for a in axes if a.size == 64)
    acc = next(op for op in kernel.walk() if op.name == "dot").results[0]
    assert rows.dims[id(acc)] == 0


def _attention_ir(name, bm, bn):
    return tut.backward_ir(name, bm, bn, 16, 256)[0]


@pytest.mark.parametrize("name,bm,bn,rows", [("attn_bwd_dkdv", 32, 128, 128), ("attn_bwd_dq", 128, 32, 128)])
def test_the_tutorial_backward_has_one_axis_its_own_rows(name, bm, bn, rows):
    """dK/dV keeps BLOCK_N1 rows of K and V and loops over the queries: its one axis is those
    rows (the loop's BLOCK_M1 are a dot's K); dQ the mirror image.  HEAD_DIM is a dot's K or
    the axis of a reduction in each kernel."""
    axes = row_axes(_attention_ir(name, bm, bn))
    assert [a.size for a in axes] == [rows]


@spvjit.kernel
def refused(x_ptr, out_ptr, S: sl.constexpr, CASE: sl.constexpr):
    r = sl.arange(0, S)
    x = sl.load(x_ptr + r[:, None] * S + r[None, :])
    if CASE == "reduce":
        sl.store(out_ptr + r, sl.sum(x, axis=0))        # axis 0 reduced, axis 1 is the sum's
        sl.store(out_ptr + S + r, sl.sum(x, axis=1))
    elif CASE == "atomic":
        sl.atomic_add(out_ptr + r[:, None] * S + r[None, :], x)
    elif CASE == "load_after_store":
        sl.store(out_ptr + r[:, None] * S + r[None, :], x)
        sl.store(out_ptr + S * S + r[:, None] * S + r[None, :], sl.load(out_ptr + r[None, :] * S + r[:, None]))
    elif CASE == "diagonal":
        sl.store(out_ptr + r[:, None] * S + r[None, :], x + sl.trans(x))
    elif CASE == "early_return":
        if sl.program_id(0) > 0:
            return
        sl.store(out_ptr + r[:, None] * S + r[None, :], x)
    else:
        sl.store(out_ptr + r[:, None] * S + r[None, :], x)


@pytest.mark.parametrize("case,want", [
    ("plain", [16, 16]),            # one arange, two uses: rows and columns are axes of their own
    ("reduce", []),
    ("atomic", []),                 # a slice's atomics would run again in the next
    ("load_after_store", []),       # slice c + 1 would read what slice c stored
    ("diagonal", []),               # x + x^T ties the rows to the columns
    ("early_return", []),
])
def test_axes_found_and_refused(case, want):
    t = spvjit.tensor(np.zeros(16 * 16 * 2, np.float32))
    kernel, _ = _ir(refused, t, t, S=16, CASE=case)
    assert [a.size for a in row_axes(kernel)] == want


def test_strip_mine_refuses_a_count_that_does_not_divide():
    t = spvjit.tensor(np.zeros(16 * 16, np.float32))
    kernel, _ = _ir(refused, t, t, S=16, CASE="plain")
    with pytest.raises(ValueError, match="16 into 3"):
        strip_mine(kernel, row_axes(kernel)[0], 3)


# ---------------------------------------------------------------------------------------------
# the cut IR in the interpreter against numpy
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size,chunks", [(32, 4), (32, 8), (16, 2)])
def test_cut_matmul_matches_numpy(size, chunks):
    """40x24x40 at 32x16x16 blocks: masked edges on every axis, the rows or the columns cut."""
    M, N, K = 40, 24, 40
    kernel, spec, a, b, tc = _matmul_ir(M, N, K, 32, 16, 16, seed=1)
    _cut(kernel, size, chunks)
    assert sum(op.name == "for" for op in kernel.body.ops) == 1     # the slices' loop
    assert row_axes(kernel) == []       # it loads and stores: a cut kernel is not cut again
    _interpret(kernel, spec, (spvjit.cdiv(M, 32) * spvjit.cdiv(N, 16),))
    # <= 40 f32 products of N(0,1) terms, stored as f16 (2^-11 relative of |c| < ~25): 0.02
    np.testing.assert_allclose(tc.numpy().astype(np.float64), a.astype(np.float64) @ b, atol=0.02, rtol=0)


@spvjit.kernel
def store_off_the_axis(x_ptr, y_ptr, out_ptr, side_ptr, S: sl.constexpr, C: sl.constexpr):
    r = sl.arange(4, S + 4) - 4                              # a slice of arange(4, ...) starts at 4 + first row
    c = sl.arange(0, C)
    y = sl.load(y_ptr + c)                                   # off the rows: read by every slice
    x = sl.load(x_ptr + r[:, None] * C + c[None, :])
    sl.store(out_ptr + r[:, None] * C + c[None, :], x * 2.0 + y[None, :])
    sl.store(side_ptr + c, y + 1.0)                          # stored again by every slice, same values


def test_cut_keeps_what_is_off_the_axis():
    S, C = 64, 4
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((S, C)).astype(np.float32), rng.standard_normal(C).astype(np.float32)
    out, side = spvjit.zeros((S, C), np.float32), spvjit.zeros(C, np.float32)
    kernel, spec = _ir(store_off_the_axis, spvjit.tensor(x), spvjit.tensor(y), out, side, S=S, C=C)
    _cut(kernel, S, 8)
    _interpret(kernel, spec, (1,))
    # one f32 multiply-add per element, exact in f32 arithmetic either way
    np.testing.assert_array_equal(out.numpy(), x * np.float32(2) + y)
    np.testing.assert_array_equal(side.numpy(), y + np.float32(1))


@pytest.mark.parametrize("name", ["attn_bwd_dkdv", "attn_bwd_dq"])
def test_cut_attention_backward_matches_numpy(name, monkeypatch):
    """The tutorial's backward at 16x32 (dK/dV) and 32x16 (dQ) blocks with the kernel's axis cut
    in 4, in the interpreter, through test_triton_tutorials' host glue."""
    blocks = {"attn_bwd_dkdv": (16, 32), "attn_bwd_dq": (32, 16)}[name]
    jitfn = getattr(tut, name)

    class CutInInterpreter:
        def __getitem__(self, grid):
            def launch(*args, **meta):
                kernel, spec = _ir(jitfn, *args, **meta)
                _cut(kernel, 32, 4)
                _interpret(kernel, spec, grid)
            return launch

    cut = CutInInterpreter()
    monkeypatch.setattr(tut, name, cut)
    monkeypatch.setattr(tut, "launch", lambda k, mode: k if k is cut else spvjit.interpret(k))
    Z, H, N_CTX, HEAD_DIM = 1, 1, 64, 16
    rng = np.random.default_rng(4)
    q, k, v, do = (rng.normal(0.0, 0.5, (Z, H, N_CTX, HEAD_DIM)).astype(np.float16) for _ in range(4))
    bwd = (blocks, (32, 16)) if name == "attn_bwd_dkdv" else ((16, 32), blocks)
    got = tut.attention(q, k, v, do, 0.5, True, "interpreter", 16, 16, bwd_blocks=bwd)
    want = tut._attention_reference(q, k, v, do, 0.5, True)
    # test_fused_attention_forward_and_backward's tolerance, for its reasons
    for label, g, w in zip(("out", "dq", "dk", "dv"), got, want):
        np.testing.assert_allclose(g.astype(np.float64), w, atol=1e-2, rtol=0, err_msg=label)


# ---------------------------------------------------------------------------------------------
# the rule: where big tiles are cut, and into how many slices
# ---------------------------------------------------------------------------------------------
MESA_22 = Target(device_type="cpu", subgroup_size=8, driver_info="Mesa 22.3.6",
                 subgroup_ops=("basic", "vote", "arithmetic", "ballot", "shuffle"))
F16_8X8 = CoopMatConfig(8, 8, 8, "float16", "float16", "float16", "float16", False, "subgroup")


def _plan(kernel, target, num_warps=4):
    from spvjit.codegen.layout import choose_workgroup
    w = choose_workgroup(chunking.max_numel(kernel), num_warps, target)
    plan = chunking.plan_chunks(kernel, w, target)
    return None if plan is None else (plan[0].size, plan[1])


@pytest.mark.parametrize("target,want", [
    (MESA_22, (128, 8)),                                         # four dots: 512 -> 64 registers per lane
    (dataclasses.replace(MESA_22, driver_info="Mesa 26.1.6"), None),       # spread over 128 lanes instead
    (dataclasses.replace(MESA_22, cooperative_matrix=(F16_8X8,)), None),   # sized for one subgroup
    (Target(device_type="discrete", subgroup_size=32), None),              # a GPU: num_warps lanes
    (dataclasses.replace(MESA_22, chunk_big_tiles=False), None),           # SPVJIT_WHOLE_TILES=1
])
def test_the_rule_on_the_tutorial_backward(target, want):
    assert _plan(_attention_ir("attn_bwd_dkdv", 32, 128), target) == want


def test_the_rule_leaves_small_tiles_and_cuts_the_matmul_on_the_axis_with_fewest_slices():
    assert _plan(_matmul_ir(64, 64, 64, 32, 32, 32)[0], MESA_22) is None   # 128 registers per lane
    # 64x64 f32 accumulator: 512 per lane; B (32x64) stays 256, A's and C's 64 rows go to 16
    assert _plan(_matmul_ir(64, 64, 64, 64, 64, 32)[0], MESA_22) == (64, 4)
    # 128x128: B off any axis holds 512 per lane, over the bound: no plan
    assert _plan(_matmul_ir(128, 128, 32, 128, 128, 32)[0], MESA_22) is None


def test_whole_tiles_knob_reaches_the_target(needs_device, monkeypatch):
    from spvjit.compiler import device_target, target_key
    dev = spvjit.get_device()
    cut_key = target_key(dev)
    assert device_target(dev).chunk_big_tiles
    monkeypatch.setenv("SPVJIT_WHOLE_TILES", "1")
    assert not device_target(dev).chunk_big_tiles and target_key(dev) != cut_key


def test_rewrite_for_target_cuts_on_mesa_22_only():
    kernel = _attention_ir("attn_bwd_dkdv", 32, 128)
    _, w = rewrite_for_target(kernel, MESA_22, 4)
    loop = [op for op in kernel.body.ops if op.name == "for"]
    assert w == 8 and len(loop) == 1 and chunking.max_numel(kernel) == 16 * 32
    assert loop[0].attrs["slices"] == 8
    kernel = _attention_ir("attn_bwd_dkdv", 32, 128)
    _, w = rewrite_for_target(kernel, dataclasses.replace(MESA_22, driver_info="Mesa 26.1.6"), 4)
    assert w == 128 and chunking.max_numel(kernel) == 128 * 32


def test_a_slice_s_dots_are_sized_as_the_whole_program_s():
    """dot_loop_plan counts a sliced dot as the work of all its slices: the cut dK/dV's four
    dots (1024 multiply-adds per lane each, 16-row slices) are loops over k as the whole
    program's would be; counted as one slice they fall below the window and unroll."""
    from spvjit.codegen.dot_loop_plan import looped_dots, slice_repeats
    kernel = _attention_ir("attn_bwd_dkdv", 32, 128)
    _, w = rewrite_for_target(kernel, MESA_22, 4)
    dots = [op for op in kernel.walk() if op.name == "dot"]
    assert len(dots) == 4 and set(slice_repeats(kernel).values()) == {8}
    assert looped_dots(kernel, w, MESA_22) == {id(op) for op in dots}
    next(op for op in kernel.body.ops if op.name == "for").attrs["slices"] = 1
    assert not looped_dots(kernel, w, MESA_22)


def test_the_rule_cuts_a_lone_dot_to_128_registers():
    """A kernel with one dot is cut to CHUNK_TO_REGS (the matmul ran slower in thinner
    slices), one with several to CHUNK_TO_REGS_DOTS."""
    assert chunking.CHUNK_TO_REGS_DOTS < chunking.CHUNK_TO_REGS
    assert _plan(_matmul_ir(64, 64, 64, 64, 64, 32)[0], MESA_22) == (64, 4)
    assert _plan(_attention_ir("attn_bwd_dq", 128, 32), MESA_22) == (128, 8)


def test_the_launch_counts_the_slices_loop_headers():
    """On a loop-limited driver the launch counts a program's loop-header visits from the IR as
    lowered (loop_budget.VisitCounter): four slices make four times the k loop's and the dot
    loops' visits, plus the slice loop's own five (four trips and the failing check)."""
    from spvjit.codegen.dot_forms import extra_visits
    from spvjit.codegen.loop_budget import VisitCounter
    limited = dataclasses.replace(MESA_22, loop_iteration_limit=65535)
    counts = []
    for target in (limited, dataclasses.replace(limited, chunk_big_tiles=False)):
        kernel, spec, *_ = _matmul_ir(64, 64, 4096, 64, 64, 32)
        kernel, w = rewrite_for_target(kernel, target, spec.num_warps)
        counts.append(VisitCounter(kernel, extra_visits(w, target, kernel))(dict(spec.runtime)))
    cut, whole = counts
    assert whole > 4096 // 32 and cut == 4 * whole + 5, counts


# ---------------------------------------------------------------------------------------------
# on the device: the rule made to apply to small tiles, results against numpy
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def cut_small_tiles(needs_device, monkeypatch, tmp_path):
    """Tiles above 64 registers per lane cut to 32 on one subgroup of a CPU driver: the real
    pipeline on tiles that compile in a second.  Modules go to a cache directory of their own."""
    target = Target.of(spvjit.get_device().kernel_caps)
    if not target.cpu or target.cooperative_matrix:
        pytest.skip("the rule is for one subgroup of a CPU driver without cooperative matrices")
    monkeypatch.setattr(chunking, "CHUNK_ABOVE_REGS", 64)
    monkeypatch.setattr(chunking, "CHUNK_TO_REGS", 32)
    monkeypatch.setattr(chunking, "CHUNK_TO_REGS_DOTS", 32)
    monkeypatch.setenv("SPVJIT_CACHE_DIR", str(tmp_path))
    from spvjit.codegen import layout
    monkeypatch.setattr(layout, "SPREAD_FROM_MESA", (1 << 30, 0))     # one subgroup on Mesa 26 too
    cut = []
    original = chunking.strip_mine
    monkeypatch.setattr(chunking, "strip_mine", lambda k, axis, n: cut.append((axis.size, n)) or original(k, axis, n))
    return cut


def test_cut_matmul_on_the_device(cut_small_tiles):
    M, N, K = 72, 40, 48
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((M, K)).astype(np.float32), rng.standard_normal((K, N)).astype(np.float32)
    c = spvjit.zeros((M, N), np.float16)
    k = spvjit.JITFunction(matmul_kernel.fn)
    k[(spvjit.cdiv(M, 32) * spvjit.cdiv(N, 32),)](spvjit.tensor(a), spvjit.tensor(b), c, M, N, K, K, 1, N, 1,
                                                  N, 1, BLOCK_SIZE_M=32, BLOCK_SIZE_N=32, BLOCK_SIZE_K=16,
                                                  GROUP_SIZE_M=2, ACTIVATION="")
    assert cut_small_tiles, "the rule did not apply"
    # test_cut_matmul_matches_numpy's tolerance: <= 48 products, stored as f16
    np.testing.assert_allclose(c.numpy().astype(np.float64), a.astype(np.float64) @ b, atol=0.02, rtol=0)


def test_cut_attention_backward_on_the_device(cut_small_tiles, monkeypatch):
    monkeypatch.setattr(tut, "attn_bwd_dkdv", triton.JITFunction(tut.attn_bwd_dkdv.fn))
    monkeypatch.setattr(tut, "attn_bwd_dq", triton.JITFunction(tut.attn_bwd_dq.fn))
    Z, H, N_CTX, HEAD_DIM = 1, 2, 64, 16
    rng = np.random.default_rng(8)
    q, k, v, do = (rng.normal(0.0, 0.5, (Z, H, N_CTX, HEAD_DIM)).astype(np.float16) for _ in range(4))
    # dK/dV's 64x16 tiles of K, V and scores hold 128 registers per lane: cut in 4, as dQ's
    got = tut.attention(q, k, v, do, 0.5, True, "device", 16, 16, bwd_blocks=((16, 64), (64, 16)))
    assert sorted(cut_small_tiles) == [(64, 4), (64, 4)], cut_small_tiles
    want = tut._attention_reference(q, k, v, do, 0.5, True)
    for label, g, w in zip(("out", "dq", "dk", "dv"), got, want):
        np.testing.assert_allclose(g.astype(np.float64), w, atol=1e-2, rtol=0, err_msg=label)
