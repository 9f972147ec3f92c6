"""spvjit.layouts: which layout a device's capabilities give the memory-bound kernels, and
each GPU layout run for real on the device at hand.

The GPU layouts are chosen for an H200-like capability record (discrete, 32-lane
subgroups, 1024 invocations, 132 SMs) and then (a) compiled for a 32-lane GPU Target to
check their shape (a row per subgroup: subgroup reductions and no barrier), and (b)
compiled for "a discrete GPU with this device's subgroup size" and dispatched on lavapipe
(tests/test_gpu_layouts.py's run_as_gpu), where the same num_warps, blocks and rows per
program run as 8-lane subgroups, against numpy.
"""
import dataclasses
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import spvjit
from spvjit import layouts as L
from spvjit.codegen.compiler import compile_kernel
from spvjit.codegen.spirv.tools import disassemble
from spvjit.codegen.target import Target
from spvjit.compiler import _build_ir
from spvjit.runtime import get_device

from test_gpu_layouts import run_as_gpu

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench_kernels as BK  # noqa: E402


def gpu_caps(compute_units=132, subgroup_size=32, invocations=1024):
    return SimpleNamespace(device_type="discrete", subgroup_size=subgroup_size,
                           max_workgroup_invocations=invocations, compute_units=compute_units)


CPU = SimpleNamespace(device_type="cpu", subgroup_size=8, max_workgroup_invocations=1024, compute_units=0)


# ---- the choice --------------------------------------------------------------------------

def test_cpu_drivers_keep_the_lavapipe_choices():
    for cols, rows in [(1024, 4096), (256, 16384), (781, 9), (4096, 1)]:
        lay = L.row_layout(CPU, cols, rows)
        assert (lay.block, lay.num_warps, lay.rows_per_program, lay.lanes) == (L.pow2(cols), 4, 1, 8)
    assert L.row_layout(CPU, 2100, 3, max_block=1024).block == 1024
    m = L.matvec_layout(CPU, 4096, 4096)
    assert (m.rows_per_program, m.block_k, m.num_warps) == (8, 64, 4)


def test_gpu_rows_that_fit_a_subgroup_get_one_subgroup_each():
    lay = L.row_layout(gpu_caps(), 1024, 65536)
    # 32 lanes x 32 values: 8 vec4 (128-bit) loads per lane, no shared memory
    assert (lay.num_warps, lay.lanes, lay.rows_per_program, lay.vector_width) == (1, 32, 1, 4)
    assert lay.scheme == "row per subgroup"


def test_gpu_short_rows_take_several_rows_per_program_while_the_device_stays_full():
    lay = L.row_layout(gpu_caps(), 256, 16384)
    assert (lay.num_warps, lay.rows_per_program) == (1, 2)     # 16 values per lane
    assert lay.programs(16384) >= 132 * L.PROGRAMS_PER_CU
    assert L.row_layout(gpu_caps(), 64, 1 << 20).rows_per_program == 4     # at most 4
    assert L.row_layout(gpu_caps(), 256, 16383).rows_per_program == 1      # rows must divide


def test_gpu_long_rows_spread_over_a_workgroup():
    lay = L.row_layout(gpu_caps(), 4096, 65536)
    assert (lay.num_warps, lay.lanes, lay.vector_width) == (8, 256, 4)    # 16 values per lane
    assert lay.scheme.startswith("long rows")
    assert L.row_layout(gpu_caps(), 1 << 16, 65536).num_warps == 16        # Triton's ceiling
    assert L.row_layout(gpu_caps(invocations=256), 1 << 16, 65536).num_warps == 8


def test_gpu_few_rows_get_more_warps_but_at_least_a_vec4_per_lane():
    one = L.row_layout(gpu_caps(), 576, 1)                 # a decoded token's RMS norm
    assert (one.block, one.num_warps, one.vector_width) == (1024, 8, 4)
    assert one.scheme.startswith("few rows")
    # the rule follows the compute units the device reports, not its name
    assert L.row_layout(gpu_caps(compute_units=1), 1024, 64).num_warps == 1
    assert L.row_layout(gpu_caps(compute_units=0), 1024, 64).num_warps == 8   # unknown: 64 assumed


def test_gpu_wide_subgroups():
    lay = L.row_layout(gpu_caps(subgroup_size=64), 1024, 1 << 20)
    assert (lay.num_warps, lay.lanes) == (2, 64)            # one 64-lane subgroup per row


def test_gpu_matvec_rows_per_subgroup():
    m = L.matvec_layout(gpu_caps(), 16384, 4096)
    # 2 rows x 256 columns per 32-lane program: 4 vec4 loads of W per lane and step
    assert (m.rows_per_program, m.block_k, m.num_warps, m.lanes, m.vector_width) == (2, 256, 1, 32, 4)
    assert L.matvec_layout(gpu_caps(), 4096, 4096).rows_per_program == 1   # keep 4096 programs
    assert L.matvec_layout(gpu_caps(), 4096, 96).block_k == 32             # block divides k


# ---- the GPU layouts compiled for a 32-lane GPU: their shape --------------------------------

def _compile_for_gpu32(jitfn, *args, **kwargs):
    target = dataclasses.replace(Target.of(get_device().kernel_caps), device_type="discrete", subgroup_size=32,
                                 max_texel_buffer_elements=0)
    spec, _ = jitfn.specialize(list(args), dict(kwargs))
    ck = compile_kernel(_build_ir(jitfn, spec, optimize=True), target, spec.num_warps, spec.divisibility or {})
    return ck, disassemble(ck.spirv)


@pytest.mark.parametrize("kernel", ["softmax", "layer_norm"])
@pytest.mark.parametrize("cols,rows", [(1024, 65536), (256, 16384), (4096, 65536)])
def test_row_layouts_compile_to_subgroup_reductions(kernel, cols, rows):
    lay = L.row_layout(gpu_caps(), cols, rows)
    x, y, w = spvjit.empty((2, cols)), spvjit.empty((2, cols)), spvjit.empty(cols)
    kw = dict(BLOCK=lay.block, ROWS=lay.rows_per_program, num_warps=lay.num_warps)
    if kernel == "softmax":
        ck, text = _compile_for_gpu32(BK.softmax_rows, y, x, cols, **kw)
    else:
        ck, text = _compile_for_gpu32(BK.layer_norm, x, y, w, w, cols, 1e-5, **kw)
    assert ck.workgroup_size == lay.lanes
    assert "OpGroupNonUniformFAdd" in text
    if lay.lanes == 32:      # the whole row in one subgroup: nothing through shared memory
        assert "OpControlBarrier" not in text
    assert "OpLoad %v4float" in text           # 128-bit loads of the row


def test_matvec_layout_compiles_to_subgroup_reductions():
    lay = L.matvec_layout(gpu_caps(), 16384, 4096)
    w, x, y = spvjit.empty((4, 4096)), spvjit.empty(4096), spvjit.empty(4)
    ck, text = _compile_for_gpu32(BK.matvec, w, x, y, 16384, 4096, BN=lay.rows_per_program, BK=lay.block_k,
                                  num_warps=lay.num_warps)
    assert ck.workgroup_size == 32 and "OpGroupNonUniformFAdd" in text and "OpControlBarrier" not in text
    assert "OpLoad %v4float" in text


# ---- the GPU layouts run on this device (lowered as for a GPU) ------------------------------
# compute_units=1 so that small problems reach every scheme (the thresholds scale with it)

ROW_CASES = [(781, 40, "row per subgroup"), (200, 64, "row per subgroup"),
             (3000, 40, "long rows"), (700, 3, "few rows")]


def _softmax_ref(x):
    e = np.exp(x.astype(np.float64) - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("cols,rows,scheme", ROW_CASES)
def test_softmax_gpu_layouts_run(cols, rows, scheme):
    lay = L.row_layout(gpu_caps(compute_units=1), cols, rows)
    assert lay.scheme.startswith(scheme)
    x = np.random.default_rng(cols).standard_normal((rows, cols)).astype(np.float32) * 4
    out = spvjit.empty((rows, cols))
    run_as_gpu(BK.softmax_rows, (lay.programs(rows),), out, spvjit.tensor(x), cols, BLOCK=lay.block,
               ROWS=lay.rows_per_program, num_warps=lay.num_warps)
    # f32 exp and a sum of <= 4096 terms: relative error well under 1e-5
    np.testing.assert_allclose(out.numpy(), _softmax_ref(x), rtol=2e-5, atol=1e-8)


@pytest.mark.parametrize("cols,rows,scheme", ROW_CASES)
def test_layer_norm_gpu_layouts_run(cols, rows, scheme):
    lay = L.row_layout(gpu_caps(compute_units=1), cols, rows)
    rng = np.random.default_rng(cols + 1)
    x = (rng.standard_normal((rows, cols)) * 2 + 0.5).astype(np.float32)
    w, b = rng.random(cols, np.float32), rng.random(cols, np.float32)
    y = spvjit.empty((rows, cols))
    run_as_gpu(BK.layer_norm, (lay.programs(rows),), spvjit.tensor(x), y, spvjit.tensor(w), spvjit.tensor(b),
               cols, 1e-5, BLOCK=lay.block, ROWS=lay.rows_per_program, num_warps=lay.num_warps)
    x64 = x.astype(np.float64)
    ref = (x64 - x64.mean(1, keepdims=True)) / np.sqrt(x64.var(1, keepdims=True) + 1e-5) * w + b
    # f32 sums of <= 3000 terms ~N(0.5, 4) and one rsqrt: within 1e-4 of values ~1
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n,k", [(256, 512), (96, 256), (40, 96)])
def test_matvec_gpu_layouts_run(n, k):
    lay = L.matvec_layout(gpu_caps(compute_units=1), n, k)
    rng = np.random.default_rng(n)
    w = rng.standard_normal((n, k)).astype(np.float32)
    x = rng.standard_normal(k).astype(np.float32)
    y = spvjit.empty(n)
    run_as_gpu(BK.matvec, (lay.programs(n),), spvjit.tensor(w), spvjit.tensor(x), y, n, k,
               BN=lay.rows_per_program, BK=lay.block_k, num_warps=lay.num_warps)
    ref = w.astype(np.float64) @ x
    # f32 dot products of k terms: within 2k ulps of sum |w x|
    bound = 2 * (k + 2) * 2.0**-24 * (np.abs(w).astype(np.float64) @ np.abs(x))
    assert np.all(np.abs(y.numpy() - ref) <= bound)


def test_compute_units_come_from_the_extensions_the_device_lists():
    from spvjit.runtime.capabilities import compute_unit_count
    assert compute_unit_count({"shaderSMCount": 132, "shaderWarpsPerSM": 64}) == 132          # NV
    assert compute_unit_count({"activeComputeUnitCount": 60, "shaderEngineCount": 4,
                               "shaderArraysPerEngineCount": 2, "computeUnitsPerShaderArray": 10}) == 60  # AMD 2
    assert compute_unit_count({"shaderEngineCount": 4, "shaderArraysPerEngineCount": 2,
                               "computeUnitsPerShaderArray": 8}) == 64                         # AMD
    assert compute_unit_count({"shaderCoreCount": 10, "shaderWarpsPerCore": 4}) == 10          # ARM
    assert compute_unit_count({"subgroupSize": 32, "deviceName": "NVIDIA H200"}) == 0        # never the name
    assert get_device().caps.compute_units >= 0
