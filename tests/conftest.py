"""Suite-wide fixtures: every SPIR-V module any test compiles goes through spirv-val.

Also the `coopmat` marker: the tests the coopmat CI stage (.ci/run) runs on Mesa 26.1's
lavapipe through scripts/coopmat-env. That stage sets SPVJIT_REQUIRE_COOPMAT=1, which makes
every coopmat test fail (not skip) on a device without cooperative matrices, and fails the
session if no module dispatched on the device used them.
"""
from __future__ import annotations

import os
import tempfile

import pytest

# compile from scratch in every test session (and never touch the user's cache)
os.environ.setdefault("SPVJIT_CACHE_DIR", tempfile.mkdtemp(prefix="spvjit-test-cache-"))

import spvjit
from spvjit.codegen import compile_hooks
from spvjit.codegen import compiler as _codegen_compiler
from spvjit.codegen.spirv.tools import validate

VALIDATED: list[str] = []
COOPMAT_MODULES: list[str] = []   # device modules (validated above) that use cooperative matrices
REQUIRE_COOPMAT = spvjit.knobs.get("SPVJIT_REQUIRE_COOPMAT")


def _validate_hook(ck):
    validate(ck.spirv, target_env="vulkan1.3")
    VALIDATED.append(ck.name)
    if "CooperativeMatrixKHR" in ck.capabilities:
        COOPMAT_MODULES.append(ck.name)


compile_hooks.append(_validate_hook)


def _validating(compile_kernel):
    def compile_and_validate(*args, **kwargs):
        ck = compile_kernel(*args, **kwargs)
        _validate_hook(ck)
        return ck
    compile_and_validate.__wrapped__ = compile_kernel
    return compile_and_validate


# Tests that lower IR themselves call codegen's compile_kernel, which runs no hooks (the
# launch runs them, on cache hits too): they get, through this module attribute, a version
# that validates what it returns.  spvjit's own modules bound the original at `import spvjit`
# above, so a launch's module is still validated once, by the hook.
_codegen_compiler.compile_kernel = _validating(_codegen_compiler.compile_kernel)


def _device_available() -> bool:
    if spvjit.knobs.get("SPVJIT_INTERPRET"):
        return False
    try:
        from spvjit.runtime import get_device
        get_device()
        return True
    except Exception:
        return False


@pytest.fixture(params=["interpreter", "device"])
def mode(request):
    """Both ways a kernel runs: the numpy interpreter, and the device (skipped without one).
    Test files that need other modes define their own `mode`."""
    if request.param == "device" and not _device_available():
        pytest.skip("no Vulkan device")
    return request.param


@pytest.fixture
def needs_device():
    if not _device_available():
        pytest.skip("no Vulkan device")


@pytest.fixture(scope="session")
def device():
    from spvjit.runtime import get_device
    return get_device()


# Tests marked `coopmat` without touching their files: whole files (None) or test functions by
# name (the dot shapes and dtypes), and in test_device_model.py the tests on the tiny model (the
# default 135M model takes minutes on a CPU driver). A new test can also say @pytest.mark.coopmat.
_COOPMAT_SELECTION = {
    "test_coopmat.py": None,
    "test_tutorials.py": None,
    "test_triton_tutorials.py": None,
    "test_tutorial_grouped_gemm.py": None,
    "test_language.py": {"test_dot"},
    "llama/test_kernels.py": None,
}
_TINY_MODEL_FIXTURES = {"tiny_model", "tiny_pair"}


def _is_coopmat_test(item) -> bool:
    rel = item.path.relative_to(os.path.dirname(__file__)).as_posix()
    if rel == "llama/test_device_model.py":
        return bool(_TINY_MODEL_FIXTURES & set(getattr(item, "fixturenames", ())))
    if rel not in _COOPMAT_SELECTION:
        return False
    names = _COOPMAT_SELECTION[rel]
    return names is None or getattr(item, "originalname", item.name) in names


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _is_coopmat_test(item):
            item.add_marker(pytest.mark.coopmat)


@pytest.fixture
def always_loop(monkeypatch):
    """Every dot whose layout allows it becomes a loop, so small tiles exercise the loop form
    (test_big_tiles.py, test_staged_pairs.py)."""
    monkeypatch.setenv("SPVJIT_DOT_UNROLL_LIMIT", "0")


@pytest.fixture
def one_subgroup(monkeypatch, tmp_path):
    """Kernels keep their whole tiles on one subgroup, for tests that read the one-subgroup
    lowering's choices on big tiles (test_big_tiles.py, test_launch_facts.py, the counts of
    shared-memory accesses in test_shared_vec4.py and test_staged_pairs.py): on llvmpipe from Mesa 26,
    tiles of more than 256 registers per lane would spread over num_warps * 32 lanes
    (codegen/layout.py), and before it they would be cut into slices (codegen/chunking.py).
    Their modules go to a cache directory of their own, not to the suite's."""
    from spvjit.codegen import chunking, layout
    monkeypatch.setattr(layout, "SPREAD_FROM_MESA", (1 << 30, 0))
    monkeypatch.setattr(chunking, "CHUNK_ABOVE_REGS", 1 << 30)
    monkeypatch.setenv("SPVJIT_CACHE_DIR", str(tmp_path))


@pytest.fixture(autouse=True)
def _coopmat_device_when_required(request):
    """In the coopmat stage a coopmat test on a device without cooperative matrices fails."""
    if not REQUIRE_COOPMAT or request.node.get_closest_marker("coopmat") is None:
        return
    if spvjit.knobs.get("SPVJIT_DISABLE_COOPMAT"):
        pytest.fail("SPVJIT_REQUIRE_COOPMAT=1 and SPVJIT_DISABLE_COOPMAT are both set", pytrace=False)
    from spvjit.runtime import get_device
    caps = get_device().caps
    if not caps.cooperative_matrix:
        pytest.fail(f"SPVJIT_REQUIRE_COOPMAT=1 but the device {caps.name} ({caps.driver_name} "
                    f"{caps.driver_info}) reports no VK_KHR_cooperative_matrix configurations; "
                    "run the test through scripts/coopmat-env", pytrace=False)
    if not get_device().kernel_caps.cooperative_matrix:
        pytest.fail(f"SPVJIT_REQUIRE_COOPMAT=1 but kernels for {caps.name} leave its emulated cooperative "
                    "matrices alone; set SPVJIT_CPU_COOPMAT=1 (scripts/coopmat-env run does)", pytrace=False)


def pytest_sessionfinish(session, exitstatus):
    if REQUIRE_COOPMAT and exitstatus == 0 and session.testscollected and not COOPMAT_MODULES:
        session.exitstatus = 1   # the stage would have tested no cooperative matrix at all


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if REQUIRE_COOPMAT:
        terminalreporter.write_line(
            f"coopmat: {len(COOPMAT_MODULES)} of {len(VALIDATED)} device modules used cooperative matrices"
            + ("" if COOPMAT_MODULES else " - FAILED: SPVJIT_REQUIRE_COOPMAT=1 needs at least one"))


def pytest_report_header(config):
    try:
        from spvjit.runtime import get_device
        caps = get_device().caps
        return f"spvjit device: {caps.name} ({caps.driver_name} {caps.driver_info}), subgroup {caps.subgroup_size}"
    except Exception as e:  # the suite itself reports the failure clearly
        return f"spvjit device: none ({e})"
