"""VK_NV_cooperative_matrix2's flexible dimensions for `dot` (codegen/coopmat2.py).

Compile-only tests use a stand-in NVIDIA-like target (16x16x16 KHR shapes, 16-granule flexible
shapes, 32-lane subgroups) and run on every machine; the numeric tests run where the device
reports flexible dimensions (Mesa 26.1 lavapipe through scripts/coopmat-env) and compare the
flexible path with numpy, with the KHR shapes (SPVJIT_DISABLE_COOPMAT2) and with no cooperative
matrices at all (SPVJIT_DISABLE_COOPMAT).
"""
import dataclasses
import re

import numpy as np
import pytest

import spvjit
from spvjit.codegen import coopmat2
from spvjit.codegen.compiler import compile_kernel
from spvjit.codegen.spirv.tools import disassemble, validate
from spvjit.codegen.target import Target
from spvjit.runtime import CoopMatConfig, get_device
from spvjit.runtime.capabilities import CoopMat2, FlexConfig
from test_coopmat import kloop_matmul, kloop_matmul_i8
from tutorial_kernels import matmul_kernel

pytestmark = pytest.mark.coopmat

KHR_16 = (CoopMatConfig(16, 16, 16, "f16", "f16", "f32", "f32", False, "subgroup"),
          CoopMatConfig(16, 16, 16, "f16", "f16", "f16", "f16", False, "subgroup"))


def flex_target(sg=32, granule=16, max_dim=256, coopmat2_present=True):
    flex = tuple(FlexConfig(granule, granule, granule, "f16", "f16", c, c, False, "subgroup", 0)
                 for c in ("f32", "f16"))
    cm2 = CoopMat2(("flexible_dimensions", "reductions"), 0, max_dim, 0, flex) if coopmat2_present else None
    return dataclasses.replace(get_device().caps, device_type="discrete", subgroup_size=sg,
                               cooperative_matrix=KHR_16, cooperative_matrix2=cm2,
                               max_shared_memory=48 * 1024)


def _matrix_types(text):
    """{(rows, cols, use)} of the module's cooperative-matrix types (use 0 A, 1 B, 2 accumulator)."""
    found = re.findall(r"OpTypeCooperativeMatrixKHR %\w+ %uint_3 %uint_(\d+) %uint_(\d+) %uint_(\d)", text)
    return {tuple(map(int, t)) for t in found}


@pytest.mark.parametrize("sg,w,M,N,K,want", [
    (32, 128, 64, 64, 32, (32, 32, 32)),    # 4 subgroups: one 32x32 tile each, K in one step
    (32, 32, 64, 64, 64, (64, 32, 32)),     # 1 subgroup: 64x64 f32 alone would be 128 registers
    (8, 8, 64, 64, 32, (32, 16, 16)),       # lavapipe's 8 lanes: 8 MulAdds (8x8x8: 64 tiles x 4)
    (8, 8, 16, 32, 16, (16, 32, 16)),       # the tutorial test's block: one MulAdd
    (32, 64, 16, 128, 16, (16, 64, 16)),    # 2 subgroups over a wide tile
])
def test_flexible_shape_choice(monkeypatch, sg, w, M, N, K, want):
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT2", raising=False)
    cfg = coopmat2.find_flexible(flex_target(sg=sg), w, M, N, K, "f16", "f32")
    assert (cfg.m, cfg.n, cfg.k) == want
    assert coopmat2.registers(cfg.m, cfg.n, cfg.k, "f16", "f32", sg) <= coopmat2.REGISTER_BUDGET
    assert ((M // cfg.m) * (N // cfg.n)) % (w // sg) == 0


def test_no_flexible_shape_off_the_granules():
    # 24 is no multiple of the 16 granule; i8 has no flexible configuration in the stand-in
    assert coopmat2.find_flexible(flex_target(), 32, 24, 32, 32, "f16", "f32") is None
    assert coopmat2.find_flexible(flex_target(), 32, 32, 32, 32, "i8", "i32") is None
    assert coopmat2.find_flexible(flex_target(max_dim=16), 32, 64, 64, 64, "f16", "f32").m == 16


def _kloop_module(target, warps, M=64, N=64, K=64, BM=64, BN=64, BK=32, acc_f16=False):
    a = spvjit.empty((M, K), np.float16)
    c = spvjit.empty((M, N), np.float32)
    ir = kloop_matmul.ir_module(a, a, c, M, N, K, BM=BM, BN=BN, BK=BK, ACC_F16=acc_f16)
    ck = compile_kernel(ir, target, num_warps=warps)
    validate(ck.spirv, target_env="vulkan1.3")
    return disassemble(ck.spirv)


@pytest.mark.parametrize("acc_f16", [False, True])
def test_flexible_kloop_module(monkeypatch, acc_f16):
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT2", raising=False)
    text = _kloop_module(flex_target(), warps=4, acc_f16=acc_f16)
    # 64x64 over 4 subgroups: one 32x32 accumulator each; the K step of 32 is one MulAdd
    assert _matrix_types(text) == {(32, 32, 0), (32, 32, 1), (32, 32, 2)}, text
    assert text.count("OpCooperativeMatrixMulAddKHR") == 1
    coop = {line.split("=")[0].strip() for line in text.splitlines() if "OpTypeCooperativeMatrixKHR" in line}
    assert sum(line.split()[3] in coop for line in text.splitlines() if " OpPhi " in line) == 1
    # the same kernel on the KHR shapes: 16 tiles of 16x16, 4 per subgroup, 2 K granules each
    monkeypatch.setenv("SPVJIT_DISABLE_COOPMAT2", "1")
    text = _kloop_module(flex_target(), warps=4, acc_f16=acc_f16)
    assert _matrix_types(text) == {(16, 16, 0), (16, 16, 1), (16, 16, 2)}
    assert text.count("OpCooperativeMatrixMulAddKHR") == 8
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT2")
    monkeypatch.setenv("SPVJIT_DISABLE_COOPMAT", "1")     # turns off both
    assert "OpCooperativeMatrixMulAddKHR" not in _kloop_module(flex_target(), warps=4, acc_f16=acc_f16)


def test_target_without_coopmat2_gets_the_khr_shapes(monkeypatch):
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT2", raising=False)
    caps = flex_target(coopmat2_present=False)
    assert Target.of(caps).cooperative_matrix2 is None
    text = _kloop_module(caps, warps=4)
    assert _matrix_types(text) == {(16, 16, 0), (16, 16, 1), (16, 16, 2)}
    # and a coopmat2 record without flexible dimensions changes nothing either
    caps = dataclasses.replace(caps, cooperative_matrix2=CoopMat2(("reductions",), 0, 0, 0, ()))
    assert _matrix_types(_kloop_module(caps, warps=4)) == {(16, 16, 0), (16, 16, 1), (16, 16, 2)}


# ---- on a device with flexible dimensions (Mesa 26.1 lavapipe) -----------------------------

def _flexible_device_or_skip():
    caps = get_device().kernel_caps
    cm2 = caps.cooperative_matrix2
    if cm2 is None or not cm2.has("flexible_dimensions"):
        if spvjit.knobs.get("SPVJIT_REQUIRE_COOPMAT") and caps.cooperative_matrix:
            # a coopmat device in the CI stage is Mesa 26.1's lavapipe, which has them
            pytest.fail(f"{caps.name} has cooperative matrices but no flexible dimensions")
        pytest.skip(f"{caps.name} reports no VK_NV_cooperative_matrix2 flexible dimensions")
    return caps


def _three_ways(monkeypatch, run):
    """run() under the flexible path, the KHR shapes and no cooperative matrices."""
    out = {}
    for name, env in (("flexible", {}), ("khr", {"SPVJIT_DISABLE_COOPMAT2": "1"}),
                      ("plain", {"SPVJIT_DISABLE_COOPMAT": "1"})):
        for k in ("SPVJIT_DISABLE_COOPMAT", "SPVJIT_DISABLE_COOPMAT2"):
            monkeypatch.delenv(k, raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        out[name] = run()
    for k in ("SPVJIT_DISABLE_COOPMAT", "SPVJIT_DISABLE_COOPMAT2"):
        monkeypatch.delenv(k, raising=False)
    return out


# (block sizes kept small: lavapipe takes ~30 s to compile one 32x32-block matmul on this machine)
@pytest.mark.parametrize("M,N,K,BM,BN,BK", [
    (50, 37, 41, 16, 32, 16),     # ragged M, N and a masked K tail; rows and columns wrap (% M, % N)
    (17, 90, 130, 16, 16, 32),    # K tail of 2, N edge of 10
])
def test_tutorial_matmul_on_flexible_matrices(monkeypatch, M, N, K, BM, BN, BK):
    caps = _flexible_device_or_skip()
    rng = np.random.default_rng(M * N + K)
    a = rng.standard_normal((M, K)).astype(np.float16)
    b = rng.standard_normal((K, N)).astype(np.float16)
    ta, tb = spvjit.tensor(a), spvjit.tensor(b)

    def run():
        tc = spvjit.zeros((M, N), np.float16)
        grid = (spvjit.cdiv(M, BM) * spvjit.cdiv(N, BN),)
        matmul_kernel[grid](ta, tb, tc, M, N, K, ta.stride(0), ta.stride(1), tb.stride(0), tb.stride(1),
                            tc.stride(0), tc.stride(1), BLOCK_SIZE_M=BM, BLOCK_SIZE_N=BN, BLOCK_SIZE_K=BK,
                            GROUP_SIZE_M=4, ACTIVATION="")
        return tc.numpy().astype(np.float64)
    out = _three_ways(monkeypatch, run)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    # f16 products are exact in f32; f32 sums of K <= 130 terms of size ~1, then one rounding
    # to f16 (2^-11 relative): 2e-3 covers both, and any two summation orders
    for name, got in out.items():
        np.testing.assert_allclose(got, ref, rtol=2e-3, atol=2e-3, err_msg=name)
    np.testing.assert_allclose(out["flexible"], out["khr"], rtol=2e-3, atol=2e-3)
    # the module the device ran: BM x BN x BK matrices (one subgroup per program on a CPU device)
    ir = matmul_kernel.ir_module(ta, tb, spvjit.empty((M, N), np.float16), M, N, K, ta.stride(0),
                                 ta.stride(1), tb.stride(0), tb.stride(1), N, 1, BLOCK_SIZE_M=BM,
                                 BLOCK_SIZE_N=BN, BLOCK_SIZE_K=BK, GROUP_SIZE_M=4, ACTIVATION="")
    text = disassemble(compile_kernel(ir, caps, num_warps=4).spirv)
    types = _matrix_types(text)
    # one BM x BN accumulator (within the register budget), its K step in one MulAdd
    assert (BM, BN, 2) in types, types
    assert text.count("OpCooperativeMatrixMulAddKHR") == 1, text


def test_f16_accumulator_and_epilogue_on_flexible_matrices(monkeypatch):
    _flexible_device_or_skip()
    M, N, K, BM, BN, BK = 40, 24, 64, 16, 16, 32      # masked edges in M and N, two K steps
    rng = np.random.default_rng(11)
    a = rng.standard_normal((M, K)).astype(np.float16)
    b = rng.standard_normal((K, N)).astype(np.float16)

    def run():
        c = spvjit.zeros((M, N), np.float32)
        kloop_matmul[(spvjit.cdiv(M, BM), spvjit.cdiv(N, BN))](
            spvjit.tensor(a), spvjit.tensor(b), c, M, N, K, BM=BM, BN=BN, BK=BK, ACC_F16=True)
        return c.numpy()
    out = _three_ways(monkeypatch, run)
    ref = 0.5 * (a.astype(np.float64) @ b.astype(np.float64))
    # an f16 accumulator rounds every add at 2^-11 relative to |acc| <= ~sqrt(K) * 4
    for name, got in out.items():
        np.testing.assert_allclose(got, ref, atol=0.25, rtol=0.25, err_msg=name)


def test_i8_on_flexible_matrices_is_exact(monkeypatch):
    caps = _flexible_device_or_skip()
    if not any(f.a_type == "i8" for f in caps.cooperative_matrix2.flexible):
        pytest.skip("no flexible i8 configuration")
    rng = np.random.default_rng(3)
    BM, BN, BK, K = 16, 16, 32, 96
    a = rng.integers(-128, 128, (BM, K), dtype=np.int8)
    b = rng.integers(-128, 128, (K, BN), dtype=np.int8)

    def run():
        c = spvjit.zeros((BM, BN), np.int32)
        kloop_matmul_i8[(1,)](spvjit.tensor(a), spvjit.tensor(b), c, K, BM=BM, BN=BN, BK=BK)
        return c.numpy()
    out = _three_ways(monkeypatch, run)
    for name, got in out.items():
        np.testing.assert_array_equal(got, a.astype(np.int32) @ b.astype(np.int32), err_msg=name)   # exact
    ir = kloop_matmul_i8.ir_module(spvjit.tensor(a), spvjit.tensor(b), spvjit.empty((BM, BN), np.int32), K,
                                   BM=BM, BN=BN, BK=BK)
    text = disassemble(compile_kernel(ir, caps, num_warps=1).spirv)
    # one 16x16 accumulator, K step 32 in one MulAdd (8x8x8 would take 4 tiles x 4 granules)
    assert (16, 16, 2) in _matrix_types(text) and text.count("OpCooperativeMatrixMulAddKHR") == 1
