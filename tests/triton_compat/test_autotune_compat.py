"""Triton-compatibility of the autotuner's hooks: the call shapes Triton code relies on."""
from __future__ import annotations

import numpy as np
import pytest

import spvjit as triton
import spvjit.language as tl
from spvjit.frontend.errors import CompilationError

pytestmark = pytest.mark.usefixtures("needs_device")   # the autotuner benchmarks on a Vulkan device


def _scale_kernel():
    @triton.jit
    def scale(X, Z, n, BLOCK: tl.constexpr):
        off = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        tl.store(Z + off, tl.load(X + off, mask=off < n) * 2, mask=off < n)
    return scale


def test_early_config_prune_gets_named_args_and_kwargs():
    seen = {}

    def prune(configs, named_args, **kwargs):
        seen["named"], seen["kwargs"] = sorted(named_args), sorted(kwargs)
        return [c for c in configs if c.kwargs["BLOCK"] <= 64]

    k = triton.autotune(configs=[triton.Config({"BLOCK": b}) for b in (32, 64, 128)], key=["n"],
                        prune_configs_by={"early_config_prune": prune})(_scale_kernel())
    x = np.arange(100, dtype=np.float32)
    z = triton.empty(100, np.float32)
    k[lambda m: (triton.cdiv(100, m["BLOCK"]),)](triton.tensor(x), Z=z, n=100)
    assert seen == {"named": ["X"], "kwargs": ["Z", "n"]}
    assert k.best_config.kwargs["BLOCK"] <= 64
    np.testing.assert_array_equal(z.numpy(), 2 * x)


def test_config_pre_hook_sees_every_argument():
    calls = []

    def hook(nargs):
        calls.append(sorted(nargs))
        nargs["Z"].copy_from(np.zeros(100, np.float32))

    k = triton.autotune(configs=[triton.Config({"BLOCK": 64}, pre_hook=hook)], key=["n"])(_scale_kernel())
    x = np.arange(100, dtype=np.float32)
    z = triton.empty(100, np.float32)
    k[lambda m: (triton.cdiv(100, m["BLOCK"]),)](triton.tensor(x), z, 100)
    assert calls and all(c == ["BLOCK", "X", "Z", "n", "num_warps"] for c in calls)
    np.testing.assert_array_equal(z.numpy(), 2 * x)


def test_every_config_failing_reports_the_kernels_error():
    @triton.jit
    def broken(X, n, BLOCK: tl.constexpr):
        tl.store(X + tl.arange(0, BLOCK), undefined_name)   # noqa: F821

    k = triton.autotune(configs=[triton.Config({"BLOCK": b}) for b in (32, 64)], key=["n"])(broken)
    with pytest.raises(CompilationError, match="undefined_name"):
        k[(1,)](triton.empty(64, np.float32), 64)
