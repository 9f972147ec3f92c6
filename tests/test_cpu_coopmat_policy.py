"""A CPU driver's cooperative matrices are emulated (Mesa 26.1's lavapipe): kernels leave them
alone unless SPVJIT_CPU_COOPMAT=1 (runtime/capabilities.for_kernels), since there they compile
and run slower than the blocked path; GPUs keep theirs.  scripts/coopmat-env turns them on."""
import dataclasses

import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit import compiler
from spvjit.runtime import CoopMatConfig, get_device
from spvjit.runtime.capabilities import for_kernels

F16 = CoopMatConfig(8, 8, 8, "f16", "f16", "f32", "f32", False, "subgroup")


def _caps(device_type):
    return dataclasses.replace(get_device().caps, device_type=device_type, cooperative_matrix=(F16,))


def test_cpu_drivers_keep_their_matrices_out_of_kernels_unless_asked(monkeypatch):
    monkeypatch.delenv("SPVJIT_CPU_COOPMAT", raising=False)
    assert for_kernels(_caps("cpu")).cooperative_matrix == ()
    assert for_kernels(_caps("discrete")).cooperative_matrix == (F16,)
    monkeypatch.setenv("SPVJIT_CPU_COOPMAT", "1")
    assert for_kernels(_caps("cpu")).cooperative_matrix == (F16,)
    monkeypatch.setenv("SPVJIT_CPU_COOPMAT", "0")
    plain = dataclasses.replace(_caps("cpu"), cooperative_matrix=(), cooperative_matrix2=None)
    assert for_kernels(plain) is plain          # nothing to leave out: the same record


@spvjit.kernel
def small_dot(a_ptr, b_ptr, c_ptr, N: sl.constexpr):
    r = sl.arange(0, N)
    a = sl.load(a_ptr + r[:, None] * N + r[None, :])
    b = sl.load(b_ptr + r[:, None] * N + r[None, :])
    sl.store(c_ptr + r[:, None] * N + r[None, :], sl.dot(a, b))


@pytest.mark.coopmat
@pytest.mark.parametrize("asked", [False, True])
def test_on_a_cpu_coopmat_device_kernels_follow_the_setting(monkeypatch, asked):
    dev = get_device()
    if not dev.caps.cooperative_matrix or dev.caps.device_type != "cpu":
        pytest.skip(f"{dev.caps.name} is not a CPU driver with cooperative matrices (scripts/coopmat-env)")
    monkeypatch.delenv("SPVJIT_DISABLE_COOPMAT", raising=False)
    monkeypatch.setenv("SPVJIT_CPU_COOPMAT", "1" if asked else "0")
    modules = []
    monkeypatch.setattr(compiler, "compile_hooks", compiler.compile_hooks + [lambda ck: modules.append(ck)])
    rng = np.random.default_rng(3)
    a, b = (rng.standard_normal((16, 16)).astype(np.float16) for _ in range(2))
    c = spvjit.zeros((16, 16), np.float32)
    small_dot[(1,)](spvjit.tensor(a), spvjit.tensor(b), c, N=16)
    # f16 products are exact in f32; 16-term f32 sums of terms ~1 stay within 1e-5
    np.testing.assert_allclose(c.numpy(), a.astype(np.float64) @ b.astype(np.float64), rtol=1e-5, atol=1e-5)
    assert len(modules) == 1
    assert ("CooperativeMatrixKHR" in modules[0].capabilities) == asked
