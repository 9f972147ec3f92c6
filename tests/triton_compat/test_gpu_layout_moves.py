"""The new data movements (scan shifts, flip, permute, extract) in the multi-subgroup layout a GPU
uses: compiled for a 'discrete GPU' Target (tests/test_gpu_layouts.py) and run on this device,
where a 4-warp program is many subgroups, so the exchanges go through shared memory."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import spvjit
import spvjit.language as tl
from spvjit.codegen.spirv.tools import disassemble

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))     # tests/: test_gpu_layouts


pytestmark = pytest.mark.usefixtures("needs_device")


@spvjit.jit
def moves(X, Z, M: tl.constexpr, N: tl.constexpr, WHAT: tl.constexpr):
    off = tl.arange(0, M)[:, None] * N + tl.arange(0, N)[None, :]
    x = tl.load(X + off)
    if WHAT == "cumsum0":
        z = tl.cumsum(x, 0)
    elif WHAT == "cumsum1_rev":
        z = tl.cumsum(x, 1, reverse=True)
    elif WHAT == "flip":
        z = tl.flip(x, 0)
    elif WHAT == "trans_sort":
        z = tl.trans(tl.sort(tl.trans(x), 1))
    else:
        z = tl.join(x, x * 2).split()[1]
    tl.store(Z + off, z)


@pytest.mark.parametrize("what, ref", [
    ("cumsum0", lambda x: np.cumsum(x, 0)), ("cumsum1_rev", lambda x: np.flip(np.cumsum(np.flip(x, 1), 1), 1)),
    ("flip", lambda x: np.flip(x, 0)), ("trans_sort", lambda x: np.sort(x, 0)), ("split", lambda x: 2 * x)])
def test_moves_in_gpu_layout(what, ref):
    from test_gpu_layouts import run_as_gpu
    M, N = 16, 32
    x = np.random.RandomState(1).randint(-50, 50, (M, N)).astype(np.int32)
    z = spvjit.empty((M, N), np.int32)
    ck = run_as_gpu(moves, (1,), spvjit.tensor(x), z, M=M, N=N, WHAT=what)
    assert "OpControlBarrier" in disassemble(ck.spirv)     # the shared-memory path really ran
    np.testing.assert_array_equal(z.numpy(), ref(x))


@spvjit.jit
def runtime_moves(X, I, Z, H, C, M: tl.constexpr, N: tl.constexpr):
    off = tl.arange(0, M)[:, None] * N + tl.arange(0, N)[None, :]
    x = tl.load(X + off)
    idx = tl.load(I + off)
    tl.store(Z + off, tl.gather(x, idx, 0))
    flat = tl.reshape(idx, [M * N])
    tl.store(H + tl.arange(0, N), tl.histogram(flat, N))
    tl.atomic_add(C + flat, 1.0)           # f32 add: retry loops in many lanes at once
    tl.atomic_add(C + M * N + flat, x.reshape([M * N]).to(tl.float16).to(tl.float32))


def test_runtime_indexed_moves_and_atomics_in_gpu_layout():
    """gather and histogram through shared memory and atomics from many subgroups at once."""
    from test_gpu_layouts import run_as_gpu
    M, N = 16, 32
    rs = np.random.RandomState(2)
    x = rs.randint(-50, 50, (M, N)).astype(np.float32)
    idx = rs.randint(0, M, (M, N)).astype(np.int32)
    z, h = spvjit.empty((M, N), np.float32), spvjit.empty(N, np.int32)
    c = spvjit.zeros(2 * M * N, np.float32)
    run_as_gpu(runtime_moves, (1,), spvjit.tensor(x), spvjit.tensor(idx), z, h, c, M=M, N=N)
    np.testing.assert_array_equal(z.numpy(), np.take_along_axis(x, idx, 0))
    np.testing.assert_array_equal(h.numpy(), np.bincount(idx.ravel(), minlength=N)[:N])
    counts = np.bincount(idx.ravel(), minlength=M * N).astype(np.float32)
    sums = np.bincount(idx.ravel(), weights=x.ravel(), minlength=M * N).astype(np.float32)
    np.testing.assert_array_equal(c.numpy(), np.concatenate([counts, sums]))   # small integers: exact
