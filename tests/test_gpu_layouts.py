"""GPU-style lowering (several subgroups per program), run for real on whatever device is here.

On lavapipe a program is one subgroup, so the multi-subgroup paths a GPU takes (subgroup
reductions plus shared-memory partials, cooperative-matrix tiles owned per subgroup) would
otherwise only run on a lent GPU.  These tests compile for a Target that says "discrete
GPU with this device's subgroup size", so a 4-warp program becomes 128 invocations in
16 subgroups of 8 on lavapipe, and dispatch the module on the real device.
"""
import dataclasses

import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit.codegen import compile_hooks
from spvjit.codegen.compiler import compile_kernel
from spvjit.codegen.spirv.tools import disassemble
from spvjit.codegen.target import Target
from spvjit.compiler import DeviceKernel, _build_ir
from spvjit.launch import launch_on_device
from spvjit.runtime import get_device


def gpu_like_target():
    caps = get_device().caps
    return dataclasses.replace(Target.of(caps), device_type="discrete", max_texel_buffer_elements=0)


def run_as_gpu(jitfn, grid, *args, **kwargs):
    """Launch `jitfn` compiled for gpu_like_target() on the real device; returns the module."""
    spec, _ = jitfn.specialize(list(args), dict(kwargs))
    ck = compile_kernel(_build_ir(jitfn, spec, optimize=True), gpu_like_target(), spec.num_warps,
                        spec.divisibility or {})
    for hook in compile_hooks:       # spirv-val, as for every module the suite compiles
        hook(ck)
    dev = get_device()
    pipe = dev.create_pipeline(ck.spirv, [bd.kind for bd in ck.bindings], ck.push_size)
    launch_on_device(DeviceKernel(ck, pipe), spec, tuple(grid) + (1,) * (3 - len(grid)), dev, jitfn.__name__)
    return ck


@spvjit.kernel
def row_reduce(x_ptr, out_ptr, idx_ptr, n_cols, BLOCK: sl.constexpr, KIND: sl.constexpr):
    row = sl.program_id(0)
    cols = sl.arange(0, BLOCK)
    mask = cols < n_cols
    if KIND == "sum":
        x = sl.load(x_ptr + row * n_cols + cols, mask=mask, other=0.0)
        sl.store(out_ptr + row, sl.sum(x, axis=0))
    elif KIND == "max":
        x = sl.load(x_ptr + row * n_cols + cols, mask=mask, other=-float("inf"))
        sl.store(out_ptr + row, sl.max(x, axis=0))
        sl.store(idx_ptr + row, sl.argmax(x, axis=0))
    else:
        x = sl.load(x_ptr + row * n_cols + cols, mask=mask, other=float("inf"))
        sl.store(out_ptr + row, sl.min(x, axis=0))


@pytest.mark.parametrize("kind", ["sum", "max", "min"])
@pytest.mark.parametrize("n_cols,block,warps", [(1000, 1024, 4), (64, 64, 2), (300, 512, 8)])
def test_row_reductions_across_subgroups(kind, n_cols, block, warps):
    if get_device().caps.subgroup_size * 2 > warps * 32:
        pytest.skip("one subgroup per program here: nothing crosses subgroups")
    rng = np.random.default_rng(n_cols)
    rows = 6
    x = rng.standard_normal((rows, n_cols)).astype(np.float32)
    x[1, n_cols // 3] = x[1].max() + 1.0       # a clear maximum, and a tie for argmax below
    x[2, 5] = x[2, n_cols - 1] = x[2].max() + 2.0
    out = spvjit.zeros(rows, np.float32)
    idx = spvjit.zeros(rows, np.int32)
    ck = run_as_gpu(row_reduce, (rows,), spvjit.tensor(x), out, idx, n_cols, BLOCK=block, KIND=kind,
                    num_warps=warps)
    assert ck.workgroup_size == warps * 32
    assert "OpGroupNonUniform" in disassemble(ck.spirv)        # subgroup reductions, not W loads each
    if kind == "sum":
        # f32 partial sums of <= 1024 terms ~N(0,1): a few ulps of sqrt(n)-sized sums
        np.testing.assert_allclose(out.numpy(), x.sum(axis=1), rtol=1e-5, atol=1e-4)
    elif kind == "max":
        np.testing.assert_array_equal(out.numpy(), x.max(axis=1))
        np.testing.assert_array_equal(idx.numpy(), x.argmax(axis=1))     # ties: the first index
    else:
        np.testing.assert_array_equal(out.numpy(), x.min(axis=1))


@pytest.mark.coopmat
@pytest.mark.parametrize("BM,BN,BK,warps", [(32, 32, 16, 4), (16, 64, 32, 2), (32, 64, 32, 8)])
def test_kloop_matmul_with_several_subgroups_owning_tiles(BM, BN, BK, warps, monkeypatch):
    """Each subgroup owns every S-th output tile and carries it across the K loop."""
    from test_coopmat import _coopmat_device_or_skip, kloop_matmul
    _coopmat_device_or_skip()
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    M, N, K = 2 * BM - 3, BN + 5, 3 * BK
    rng = np.random.default_rng(11)
    a = rng.standard_normal((M, K)).astype(np.float16)
    b = rng.standard_normal((K, N)).astype(np.float16)
    c = spvjit.zeros((M, N), np.float32)
    grid = (spvjit.cdiv(M, BM), spvjit.cdiv(N, BN))
    ck = run_as_gpu(kloop_matmul, grid, spvjit.tensor(a), spvjit.tensor(b), c, M, N, K, BM=BM, BN=BN, BK=BK,
                    ACC_F16=False, num_warps=warps)
    text = disassemble(ck.spirv)
    assert "OpCooperativeMatrixMulAddKHR" in text and ck.workgroup_size == warps * 32
    ref = 0.5 * (a.astype(np.float64) @ b.astype(np.float64))
    # f16 products are exact in f32; 3*BK f32 adds of terms ~1 stay within 1e-4
    np.testing.assert_allclose(c.numpy(), ref, atol=1e-4, rtol=1e-4)
