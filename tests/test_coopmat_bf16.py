"""bf16 cooperative matrices (SPV_KHR_bfloat16 / VK_KHR_shader_bfloat16).

NOT EXECUTED: no device at hand reports bf16 matrices (Mesa 26.1 lavapipe lists f16, i8 and
u8 ones), so these tests compile for a target that claims a bf16*bf16+f32 configuration and
check the module with spirv-val and its instructions; a device reporting the configuration
(with shaderBFloat16CooperativeMatrix, which runtime/device.py then enables) runs the same
code, and test_dot_bf16_matches_numpy_wherever_it_runs checks the numbers there.
"""
import dataclasses
import re

import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit.codegen.compiler import compile_kernel
from spvjit.codegen.spirv.tools import disassemble, validate
from spvjit.runtime import CoopMatConfig, get_device

pytestmark = pytest.mark.coopmat

BF16 = (CoopMatConfig(16, 16, 16, "bf16", "bf16", "f32", "f32", False, "subgroup"),)


@spvjit.kernel
def bf16_matmul(a_ptr, b_ptr, c_ptr, K, M: sl.constexpr, N: sl.constexpr, BK: sl.constexpr, MASKED: sl.constexpr):
    rm = sl.arange(0, M)
    rn = sl.arange(0, N)
    rk = sl.arange(0, BK)
    acc = sl.zeros((M, N), dtype=sl.float32)
    for k in range(0, K, BK):
        if MASKED:      # staged through shared memory
            a = sl.load(a_ptr + rm[:, None] * K + (k + rk)[None, :], mask=(k + rk)[None, :] < K, other=0.0)
            b = sl.load(b_ptr + (k + rk)[:, None] * N + rn[None, :], mask=(k + rk)[:, None] < K, other=0.0)
        else:           # straight from the buffers
            a = sl.load(a_ptr + rm[:, None] * K + (k + rk)[None, :])
            b = sl.load(b_ptr + (k + rk)[:, None] * N + rn[None, :])
        acc = sl.dot(a, b, acc)
    sl.store(c_ptr + rm[:, None] * N + rn[None, :], acc)


def _target():
    return dataclasses.replace(get_device().caps, device_type="discrete", subgroup_size=32, cooperative_matrix=BF16,
                               max_shared_memory=48 * 1024, cooperative_matrix2=None)


@pytest.mark.parametrize("masked", [True, False])
def test_bf16_dot_compiles_to_bf16_matrices_not_executed(monkeypatch, masked):
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    ab = spvjit.tensor(np.zeros((32, 64), np.float32), dtype=sl.bfloat16)     # only its dtype matters
    c = spvjit.empty((32, 32), np.float32)
    ir = bf16_matmul.ir_module(ab, ab, c, 64, M=32, N=32, BK=16, MASKED=masked)
    ck = compile_kernel(ir, _target(), num_warps=1, param_div={"K": 16})
    validate(ck.spirv, target_env="vulkan1.3")
    text = disassemble(ck.spirv)
    assert "OpCapability BFloat16CooperativeMatrixKHR" in text and 'OpExtension "SPV_KHR_bfloat16"' in text
    bf = re.search(r"(%\w+) = OpTypeFloat 16 BFloat16KHR", text)
    assert bf, text
    a_types = re.findall(rf"(%\w+) = OpTypeCooperativeMatrixKHR {bf.group(1)} ", text)
    assert len(a_types) == 2 and "OpCooperativeMatrixMulAddKHR" in text      # A and B are bf16
    loads = re.findall(r"OpCooperativeMatrixLoadKHR %\w+ (%\w+)", text)
    chains = dict(re.findall(r"(%\w+) = OpAccessChain (%\w+)", text))
    where = {"StorageBuffer" if "StorageBuffer" in chains[p] else "Workgroup" for p in loads}
    assert where == ({"Workgroup"} if masked else {"StorageBuffer", "Workgroup"}), text   # (+ gather slot)


def test_dot_bf16_matches_numpy_wherever_it_runs():
    # on a device with bf16 matrices this runs them; elsewhere the blocked path (same numbers)
    rng = np.random.default_rng(2)
    a = rng.standard_normal((32, 64)).astype(np.float32)
    b = rng.standard_normal((64, 32)).astype(np.float32)
    ta, tb = spvjit.tensor(a, dtype=sl.bfloat16), spvjit.tensor(b, dtype=sl.bfloat16)
    c = spvjit.zeros((32, 32), np.float32)
    bf16_matmul[(1,)](ta, tb, c, 64, M=32, N=32, BK=16, MASKED=True)
    a16, b16 = (spvjit.tensor(x, dtype=sl.bfloat16).numpy().astype(np.float64) for x in (a, b))
    # bf16 products are exact in f32; 64 f32 adds of terms ~1 stay within 1e-4
    np.testing.assert_allclose(c.numpy(), a16 @ b16, rtol=1e-4, atol=1e-4)
