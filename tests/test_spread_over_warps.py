"""Big tiles spread over num_warps * 32 lanes on llvmpipe from Mesa 26 (codegen/layout.py,
spread_over_warps): the rule itself, and tutorial 06's backward at Triton's own blocks compiled
that way and run on the device against numpy.

On Mesa 22.3 the device test makes the rule apply by lowering its version floor: the spread
lowering is the GPUs' several-subgroup one, run there as 16 subgroups of 8 lanes (slower on
that driver, which is why it keeps one subgroup, but the same SPIR-V semantics)."""
import numpy as np
import pytest

import spvjit as triton
from spvjit.codegen import compile_hooks, layout
from spvjit.codegen.layout import choose_workgroup
from spvjit.codegen.target import Target

import test_triton_tutorials as tut


def _cpu(mesa: str) -> Target:
    return Target(device_type="cpu", subgroup_size=8, driver_info=mesa)


@pytest.mark.parametrize("driver,numel,num_warps,want", [
    ("Mesa 26.1.6", 128 * 32, 4, 128),      # tutorial 06's backward blocks: as on a GPU
    ("Mesa 26.1.6", 64 * 64, 1, 32),        # num_warps decides the lanes, as in Triton
    ("Mesa 26.1.6", 256 * 8, 4, 8),         # 256 registers per lane on 8 lanes: one subgroup
    ("Mesa 26.1.6", 32 * 32, 8, 8),         # tutorial 06's forward at 32x32 stays on one
    ("Mesa 22.3.6", 128 * 32, 4, 8),        # 22.3 ran the spread backward 3.3x slower
    ("llvmpipe", 128 * 32, 4, 8),           # no Mesa version: the measured rule does not apply
])
def test_the_rule(driver, numel, num_warps, want):
    assert choose_workgroup(numel, num_warps, _cpu(driver)) == want


def test_not_with_the_drivers_cooperative_matrices():
    """SPVJIT_CPU_COOPMAT=1 hands kernels Mesa 26.1's emulated cooperative matrices: kernels
    sized and measured on one subgroup, which the spread form was not measured with."""
    from spvjit.runtime.capabilities import CoopMatConfig
    f16 = CoopMatConfig(8, 8, 8, "float16", "float16", "float16", "float16", False, "subgroup")
    with_coopmat = Target(device_type="cpu", subgroup_size=8, driver_info="Mesa 26.1.6",
                          cooperative_matrix=(f16,))
    assert choose_workgroup(128 * 32, 4, with_coopmat) == 8


def test_gpus_keep_num_warps():
    gpu = Target(device_type="discrete", subgroup_size=32)
    assert choose_workgroup(128 * 32, 4, gpu) == 128 and choose_workgroup(64, 4, gpu) == 64


def test_tutorial_backward_spread_over_warps(needs_device, monkeypatch, tmp_path):
    """dK/dV at 32x128 and dQ at 128x32 (HEAD_DIM 16, causal), compiled over 128 lanes, against
    numpy's gradients, through test_triton_tutorials' host glue.  Fresh JITFunctions and cache
    directory: the one-subgroup modules other tests compile for the same specializations are
    neither reused nor replaced."""
    device_target = Target.of(triton.runtime.get_device().kernel_caps)
    if device_target.mesa_version is None or not device_target.cpu:
        pytest.skip("the rule is llvmpipe's")
    monkeypatch.setattr(layout, "SPREAD_FROM_MESA", (0, 0))
    monkeypatch.setenv("SPVJIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tut, "attn_bwd_dkdv", triton.JITFunction(tut.attn_bwd_dkdv.fn))
    monkeypatch.setattr(tut, "attn_bwd_dq", triton.JITFunction(tut.attn_bwd_dq.fn))
    lanes = {}
    hook = lambda ck: lanes.__setitem__(ck.name, ck.workgroup_size)  # noqa: E731
    compile_hooks.append(hook)
    Z, H, N_CTX, HEAD_DIM = 1, 2, 256, 16
    rng = np.random.default_rng(12)
    q, k, v, do = (rng.normal(0.0, 0.5, (Z, H, N_CTX, HEAD_DIM)).astype(np.float16) for _ in range(4))
    try:
        got = tut.attention(q, k, v, do, 0.5, True, "device", 16, 16, bwd_blocks=((32, 128), (128, 32)))
    finally:
        compile_hooks.remove(hook)
    assert lanes["attn_bwd_dkdv"] == 128 and lanes["attn_bwd_dq"] == 128, lanes
    want = tut._attention_reference(q, k, v, do, 0.5, True)
    # test_triton_tutorials' tolerance for this tutorial: f16 roundings of P, dS and the
    # outputs (a few 1e-3), while a wrong mask or scale is off by > 0.05
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
        np.testing.assert_allclose(g.astype(np.float64), w, atol=1e-2, rtol=0, err_msg=name)


def test_a_spread_kernel_that_overflows_shared_memory_keeps_one_subgroup():
    """test_staged_pairs' computed A of 32x128 (4096 elements) spreads over 128 lanes on Mesa
    26.1, where staging its A for the looped dot asks for 48 KiB of the 32 KiB: it is built on
    one subgroup instead, which shuffles its exchanges (its tiles cut into slices), rather
    than refused.  With 64 KiB of shared memory the spread form fits and is kept."""
    import dataclasses
    from spvjit.codegen.compiler import compile_kernel
    from spvjit.compiler import _build_ir
    from test_staged_pairs import computed_a_dot
    import spvjit.language as tl
    mesa26 = Target(device_type="cpu", subgroup_size=8, driver_info="Mesa 26.1.6", dot_unroll_limit=0,
                    subgroup_ops=("basic", "vote", "arithmetic", "ballot", "shuffle"), max_shared_memory=32768)
    lanes = []
    for target in (mesa26, dataclasses.replace(mesa26, max_shared_memory=65536)):
        t = triton.tensor(np.zeros(32 * 128, np.float32))
        spec, _ = computed_a_dot.specialize([t, t, t, 77], dict(M=32, N=64, K=128, DT=tl.float16))
        ck = compile_kernel(_build_ir(computed_a_dot, spec, optimize=True), target, spec.num_warps,
                            spec.divisibility or {})
        lanes.append(ck.workgroup_size)
    assert lanes == [8, 128], lanes
