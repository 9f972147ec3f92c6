"""Moves and axis reductions on one subgroup (lavapipe: a program is one subgroup of 8), in the
forms chosen for what the driver compiles fastest: index tiles recomputed per lane, row
broadcasts from constant-lane broadcasts and a select, transposes through shared memory
instead of a shuffle per source register, and axis reductions whose rows span only some
lanes as a per-lane fold plus one subgroup reduction per row.  Results against numpy on the
device and in the interpreter; the choices themselves from the lowering's notes."""
import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit.codegen.compiler import compile_kernel
from spvjit.codegen.target import Target
from spvjit.compiler import _build_ir
from spvjit.runtime import get_device


@spvjit.kernel
def reduce_rows(x_ptr, v_ptr, i_ptr, R: sl.constexpr, C: sl.constexpr, AXIS: sl.constexpr, KIND: sl.constexpr):
    rr, cc = sl.arange(0, R), sl.arange(0, C)
    x = sl.load(x_ptr + rr[:, None] * C + cc[None, :])
    n = R if AXIS == 1 else C
    offs = sl.arange(0, n)
    if KIND == "sum":
        sl.store(v_ptr + offs, sl.sum(x, axis=AXIS))
    elif KIND == "max":
        sl.store(v_ptr + offs, sl.max(x, axis=AXIS))
        sl.store(i_ptr + offs, sl.argmax(x, axis=AXIS))
    else:
        sl.store(v_ptr + offs, sl.min(x, axis=AXIS))
        sl.store(i_ptr + offs, sl.argmin(x, axis=AXIS))


@pytest.mark.parametrize("R,C", [(16, 16), (8, 4), (4, 32), (32, 8), (2, 64)])
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("kind", ["sum", "max", "min"])
def test_axis_reductions(mode, R, C, axis, kind):
    rng = np.random.default_rng(R * 100 + C + axis)
    # integers in f32: sums are exact in any order, and ties test argmax's smallest-index rule
    x = rng.integers(-4, 5, (R, C)).astype(np.float32)
    n = R if axis == 1 else C
    v, i = spvjit.empty((n,), np.float32), spvjit.empty((n,), np.int32)
    kern = spvjit.interpret(reduce_rows) if mode == "interpreter" else reduce_rows
    kern[(1,)](spvjit.tensor(x), v, i, R=R, C=C, AXIS=axis, KIND=kind)
    want = {"sum": x.sum, "max": x.max, "min": x.min}[kind](axis=axis)
    np.testing.assert_array_equal(v.numpy(), want)
    if kind != "sum":
        np.testing.assert_array_equal(i.numpy(), (x.argmax if kind == "max" else x.argmin)(axis=axis))


@spvjit.kernel
def moves(x_ptr, y_ptr, o_ptr, t_ptr, s, N: sl.constexpr):
    """o = x[:, None] - y[None, :] * s (row and column broadcasts of data), t = trans of a tile
    addressed through a runtime stride (index tiles broadcast)."""
    r = sl.arange(0, N)
    x = sl.load(x_ptr + r)
    y = sl.load(y_ptr + r)
    sl.store(o_ptr + r[:, None] * N + r[None, :], x[:, None] - y[None, :] * 2.0)
    tile = sl.load(x_ptr + r[:, None] * s + r[None, :] % 4)
    sl.store(t_ptr + r[:, None] * N + r[None, :], sl.trans(tile))


@pytest.mark.parametrize("N", [16, 8, 32])
def test_broadcasts_and_transposes(mode, N):
    rng = np.random.default_rng(N)
    x = rng.standard_normal(N * 4).astype(np.float32)
    y = rng.standard_normal(N).astype(np.float32)
    o, t = spvjit.empty((N, N), np.float32), spvjit.empty((N, N), np.float32)
    kern = spvjit.interpret(moves) if mode == "interpreter" else moves
    kern[(1,)](spvjit.tensor(x), spvjit.tensor(y), o, t, 3, N=N)
    np.testing.assert_array_equal(o.numpy(), x[:N, None] - y[None, :] * np.float32(2.0))
    tile = x[np.arange(N)[:, None] * 3 + np.arange(N)[None, :] % 4]
    np.testing.assert_array_equal(t.numpy(), tile.T)


def _notes(jitfn, args, kwargs):
    dev = get_device()
    spec, _ = jitfn.specialize(args, kwargs)
    kernel = _build_ir(jitfn, spec, optimize=True)
    notes = {}
    compile_kernel(kernel, Target.of(dev.kernel_caps), spec.num_warps, spec.divisibility or {}, notes)
    return [(op.name, notes.get(id(op), "")) for op in kernel.walk()]


def test_forms_chosen_on_one_subgroup(needs_device):
    caps = get_device().caps
    if caps.device_type != "cpu" or caps.subgroup_size != 8:
        pytest.skip("the forms chosen are lavapipe's (one subgroup of 8 lanes per program)")
    N = 16
    t = [spvjit.empty((N * 4,), np.float32), spvjit.empty((N,), np.float32),
         spvjit.empty((N, N), np.float32), spvjit.empty((N, N), np.float32)]
    ops = _notes(moves, t + [3], dict(N=N))
    broadcasts = [n for name, n in ops if name == "broadcast"]
    # x[:, None] -> rows spanning 4 lanes: broadcasts and a select; index tiles: recomputed
    assert any("subgroup broadcast/shuffle" in n for n in broadcasts), broadcasts
    assert any("recomputed in each lane" in n for n in broadcasts), broadcasts
    trans = [n for name, n in ops if name == "trans"]
    assert trans and all("shared memory" in n for n in trans), trans
    v, i = spvjit.empty((N,), np.float32), spvjit.empty((N,), np.int32)
    ops = _notes(reduce_rows, [spvjit.empty((N, N), np.float32), v, i], dict(R=N, C=N, AXIS=1, KIND="max"))
    reds = [n for name, n in ops if name == "reduce"]
    assert reds and all("subgroup reduction per row" in n for n in reds), reds


@spvjit.kernel
def strided_rows(x_ptr, t_ptr, s, N: sl.constexpr, WRAP: sl.constexpr):
    r = sl.arange(0, N)
    cols = r[None, :] % 4 if WRAP else r[None, :]
    sl.store(t_ptr + r[:, None] * N + r[None, :], sl.load(x_ptr + r[:, None] * s + cols))


@pytest.mark.parametrize("stride", [3, 5, 4, 16])
@pytest.mark.parametrize("wrap", [False, True])
def test_rows_at_an_unaligned_runtime_stride_load_right(mode, stride, wrap):
    """`rows[:, None] * s` with s not a multiple of 4: row starts are not 4-aligned, so the
    axis analysis must not promise vec4 loads (it did: expand_dims kept the arange's
    divisibility for every element, and the row loads read from the aligned address below)."""
    N = 16
    x = np.arange(N * 20, dtype=np.float32)
    t = spvjit.empty((N, N), np.float32)
    kern = spvjit.interpret(strided_rows) if mode == "interpreter" else strided_rows
    kern[(1,)](spvjit.tensor(x), t, stride, N=N, WRAP=wrap)
    cols = np.arange(N) % 4 if wrap else np.arange(N)
    np.testing.assert_array_equal(t.numpy(), x[np.arange(N)[:, None] * stride + cols[None, :]])
