"""Suite-wide fixtures: every SPIR-V module any test compiles goes through spirv-val."""
from __future__ import annotations

import os
import tempfile

import pytest

# compile from scratch in every test session (and never touch the user's cache)
os.environ.setdefault("SPVJIT_CACHE_DIR", tempfile.mkdtemp(prefix="spvjit-test-cache-"))

import spvjit
from spvjit.codegen import compile_hooks
from spvjit.codegen.spirv.tools import validate

VALIDATED: list[str] = []


def _validate_hook(ck):
    validate(ck.spirv, target_env="vulkan1.3")
    VALIDATED.append(ck.name)


compile_hooks.append(_validate_hook)


def _device_available() -> bool:
    if spvjit.knobs.get("SPVJIT_INTERPRET"):
        return False
    try:
        from spvjit.runtime import get_device
        get_device()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def device():
    from spvjit.runtime import get_device
    return get_device()


def pytest_report_header(config):
    try:
        from spvjit.runtime import get_device
        caps = get_device().caps
        return f"spvjit device: {caps.name} ({caps.driver_name} {caps.driver_info}), subgroup {caps.subgroup_size}"
    except Exception as e:  # the suite itself reports the failure clearly
        return f"spvjit device: none ({e})"
