"""The llama launchers with the layouts a GPU gets (kernels/layouts.py), run for real here.

`as_gpu` makes the launchers see an H200-like capability record (discrete, 32-lane
subgroups, 132 SMs) and compile their kernels for "a discrete GPU with this device's
subgroup size" (tests/test_gpu_layouts.py's run_as_gpu, spirv-val included), so the GPU
blocks, num_warps and rows per program run on lavapipe and are checked against numpy.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import spvjit
from spvjit.models.llama import dequantize
from spvjit.models.llama import kernels as K
from spvjit.models.llama.kernels import layouts as KL
from spvjit.models.llama.reference import rms_norm

from test_gpu_layouts import run_as_gpu
from .test_kernels import TILED_TYPES, assert_dot_close, device_weight, width

H200_LIKE = SimpleNamespace(device_type="discrete", subgroup_size=32, max_workgroup_invocations=1024,
                            compute_units=132)


class _AsGpu:
    """Stands in for a kernel in the launchers' module: kernel[grid](...) compiles for the
    GPU-like target and runs on this device; records what it was launched with."""

    def __init__(self, kernel, launches):
        self.kernel, self.launches = kernel, launches

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.launches.append((self.kernel.__name__, tuple(grid), dict(kwargs)))
            run_as_gpu(self.kernel, grid, *args, **kwargs)
        return launch


@pytest.fixture
def as_gpu(monkeypatch):
    launches = []
    monkeypatch.setattr(K, "_caps", lambda: H200_LIKE)
    for name in ("matvec_kernel", "matvec_tiled_kernel", "rms_norm_kernel", "softmax_kernel"):
        monkeypatch.setattr(K, name, _AsGpu(getattr(K, name), launches))
    return launches


def test_the_gpu_choices():
    tiled = KL.matvec_tiled(H200_LIKE, 576, 8, K.MATVEC_TILED)
    # the row-tiled types run matvec_kernel: 8 rows (a 32-byte sector of a word) x 16 units
    assert (tiled.kernel, tiled.blocks, tiled.num_warps) == ("rows", {"BR": 8, "BU": 16}, 1)
    assert KL.matvec_tiled(H200_LIKE, 64, 8, K.MATVEC_TILED).blocks["BU"] == 8   # 8 units in a row
    rm = KL.matvec_rowmajor(H200_LIKE, 576, 8, K.MATVEC)
    assert rm.blocks == {"BR": 2, "BU": 32} and rm.num_warps == 1             # a row per subgroup
    assert KL.matvec_rowmajor(H200_LIKE, 96, 16, K.MATVEC).blocks["BU"] == 8  # 6 units of 16
    cpu = SimpleNamespace(device_type="cpu", subgroup_size=8, max_workgroup_invocations=1024)
    lay = KL.matvec_tiled(cpu, 576, 8, K.MATVEC_TILED)
    assert (lay.kernel, lay.blocks, lay.num_warps) == ("tiled", K.MATVEC_TILED, 4)   # lavapipe's choice
    assert KL.matvec_rowmajor(cpu, 576, 8, K.MATVEC).blocks == K.MATVEC
    assert KL.norm_rows(H200_LIKE, 576, 1).num_warps == 8
    assert KL.norm_rows(cpu, 2100, 3).block == 1024


@pytest.mark.parametrize("qtype", ["Q4_1", "Q8_0", "Q4_K", "F16"])
def test_matvec_with_gpu_layouts(qtype, as_gpu):
    rng = np.random.default_rng(31)
    rows, cols = 200, width(qtype, 6)
    raw, w = device_weight(qtype, rows, cols, rng)
    W = dequantize(raw, qtype, (rows, cols))
    x = rng.standard_normal(cols).astype(np.float32)
    y = spvjit.empty((rows,))
    K.matvec(w, spvjit.tensor(x), y)
    name, grid, kw = as_gpu[-1]
    assert name == "matvec_kernel" and kw["num_warps"] == 1
    rows_per_program = 8 if qtype in TILED_TYPES else 2
    assert kw["BR"] == rows_per_program and grid[0] == 200 // rows_per_program
    assert_dot_close(y.numpy(), W, x)


@pytest.mark.parametrize("qtype", ["Q4_1", "Q8_0"])       # the default model's two tiled types
def test_tiled_kernel_on_a_gpu_when_asked_for(qtype, as_gpu):
    """blocks with KB / P (tuning tables, tests) still run matvec_tiled_kernel, with a lane
    per row of the 64-row tile."""
    rng = np.random.default_rng(33)
    rows, cols = 130, width(qtype, 4)
    raw, w = device_weight(qtype, rows, cols, rng)
    W = dequantize(raw, qtype, (rows, cols))
    x = rng.standard_normal((3, cols)).astype(np.float32)
    y = spvjit.empty((3 * rows,))
    K.matvec(w, spvjit.tensor(x), y, n_vec=3, ldx=cols, ldy=rows, blocks={"KB": 2})
    name, grid, kw = as_gpu[-1]
    assert name == "matvec_tiled_kernel" and kw["num_warps"] == KL.TILED_KERNEL_WARPS and kw["KB"] == 2
    assert grid == (3, 1)                                   # one program per tile, 3 vectors each
    for b in range(3):
        assert_dot_close(y.numpy()[b * rows:(b + 1) * rows], W, x[b])


@pytest.mark.parametrize("qtype", ["Q4_1", "Q6_K"])
def test_fused_norm_matvec_with_gpu_layouts(qtype, as_gpu):
    rng = np.random.default_rng(32)
    rows, cols = 64, width(qtype, 3)
    raw, w = device_weight(qtype, rows, cols, rng)
    W = dequantize(raw, qtype, (rows, cols)).astype(np.float64)
    x = rng.standard_normal(cols).astype(np.float32)
    nw = rng.standard_normal(cols).astype(np.float32)
    y = spvjit.empty((rows,))
    K.matvec(w, spvjit.tensor(x), y, norm=spvjit.tensor(nw))
    fx = rms_norm(x[None, :], nw, 1e-5)[0].astype(np.float64)
    # the device's 1/rms differs from the reference's by a few ulps: 1e-5 of sum |f(x) w|
    assert np.all(np.abs(y.numpy() - W @ fx) <= 1e-5 * (np.abs(W) @ np.abs(fx)) + 1e-6)


@pytest.mark.parametrize("n_rows,n_cols,cus,rows_per_program", [(1, 576, 132, 1), (3, 1100, 132, 1),
                                                                  (64, 200, 132, 1), (64, 200, 1, 2)])
def test_rms_norm_and_softmax_with_gpu_layouts(n_rows, n_cols, cus, rows_per_program, as_gpu, monkeypatch):
    caps = SimpleNamespace(**{**vars(H200_LIKE), "compute_units": cus})
    monkeypatch.setattr(K, "_caps", lambda: caps)
    rng = np.random.default_rng(n_cols)
    x = (rng.standard_normal((n_rows + 1, n_cols)) * 3).astype(np.float32)
    w = rng.standard_normal(n_cols).astype(np.float32)
    out = spvjit.empty((n_rows, n_cols))
    K.rms_norm(spvjit.tensor(x), spvjit.tensor(w), out, n_rows, n_cols, 1e-5, row0=1)
    lay = KL.norm_rows(caps, n_cols, n_rows)
    assert lay.rows_per_program == rows_per_program
    assert as_gpu[-1][2]["num_warps"] == lay.num_warps and as_gpu[-1][2]["ROWS"] == rows_per_program
    # one f32 sum of squares of <= 1100 terms and a sqrt: within 2e-5 relative
    np.testing.assert_allclose(out.numpy(), rms_norm(x[1:], w, 1e-5), rtol=2e-5, atol=1e-6)
    sm = spvjit.empty((n_rows, n_cols))
    K.softmax(spvjit.tensor(x[1:]), sm, n_rows, n_cols)
    assert as_gpu[-1][2]["ROWS"] == rows_per_program
    e = np.exp(x[1:].astype(np.float64) - x[1:].max(1, keepdims=True))
    # f32 exp of arguments up to ~20 and sums of <= 1100 terms: 1e-5 relative
    np.testing.assert_allclose(sm.numpy(), e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-9)
