"""`spvjit devices`: listing, JSON, and clean failures (exit 2, one line, no traceback)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from spvjit import knobs as spvjit_knobs

NO_DRIVER = {"VK_ICD_FILENAMES": "/nonexistent.json", "VK_DRIVER_FILES": "/nonexistent.json"}


def spvjit(*args, **env):
    """Run the CLI; prefer the installed console script, else `python -m`."""
    script = Path(sys.executable).parent / "spvjit"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "spvjit.cli.main"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True,
                          env=dict(os.environ, **env), timeout=120)


@pytest.fixture(scope="module")
def has_device():
    r = spvjit("devices", "--json")
    if r.returncode != 0:
        pytest.skip(f"no Vulkan device: {r.stderr.strip()}")
    return json.loads(r.stdout)


def assert_one_line_error(r):
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spvjit: error: "), r.stderr
    assert "Traceback" not in r.stderr


def test_devices_text_lists_capabilities(has_device):
    r = spvjit("devices")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for dev in has_device["devices"]:
        assert dev["name"] in out
    assert out.count("(selected)") == 1
    for key in ("driver", "vulkan", "subgroup", "shared memory", "push constants", "fp16",
                "int8", "int64", "integer dot", "coop matrix", "memory heaps"):
        assert key in out, key
    if "llvmpipe" in out:
        assert "subgroup          8 (basic, vote, arithmetic" in out
        assert "shared memory     32 KiB" in out
        if tuple(map(int, re.search(r"Mesa (\d+)\.(\d+)", out).groups())) >= (26, 1):
            assert "coop matrix       4 configurations" in out    # scripts/coopmat-env
            assert "8x8x8 f16*f16+f32->f32 (subgroup)" in out
            # VK_NV_cooperative_matrix2: at least flexible dimensions, in granules of 8
            assert re.search(r"coop matrix 2     .*flexible_dimensions", out), out
            assert "8x8x8 granules f16*f16+f32->f32 (subgroup)" in out
            assert "loop limit        none" in out          # Mesa 26 dropped the limiter
        else:
            assert "coop matrix       none" in out
            assert "coop matrix 2     no" in out
            assert "loop limit        65535 loop-header visits per invocation" in out


def test_devices_json(has_device):
    data = has_device
    assert isinstance(data["selected"], int)
    dev = data["devices"][data["selected"]]
    assert dev["index"] == data["selected"]
    for key in ("name", "driver_version", "api_version", "subgroup_size", "subgroup_ops",
                "max_shared_memory", "cooperative_matrix", "memory_heaps", "extensions"):
        assert key in dev
    assert isinstance(dev["cooperative_matrix"], list)
    uses = dev["kernels_use_cooperative_matrices"]   # a CPU driver's only with SPVJIT_CPU_COOPMAT=1
    assert uses == (bool(dev["cooperative_matrix"])
                    and (dev["device_type"] != "cpu" or spvjit_knobs.get("SPVJIT_CPU_COOPMAT")))
    cm2 = dev["cooperative_matrix2"]      # null where the device lacks VK_NV_cooperative_matrix2
    if cm2 is not None:
        assert isinstance(cm2["features"], list) and isinstance(cm2["flexible"], list)
        assert {"flexible_max_dimension", "workgroup_scope_max_workgroup_size"} <= set(cm2)
        for c in cm2["flexible"]:
            assert {"m_granularity", "n_granularity", "k_granularity", "a_type", "scope"} <= set(c)
    limit = dev["loop_iteration_limit"]     # measured (loop_limit.py) for the selected device
    assert limit is None or (type(limit) is int and limit > 0)
    assert all("loop_iteration_limit" not in d for d in data["devices"] if d["index"] != data["selected"])


def test_python_dash_m_entry_point(has_device):
    r = subprocess.run([sys.executable, "-m", "spvjit.cli.main", "devices"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "(selected)" in r.stdout


def test_unknown_flag_is_usage_error():
    r = spvjit("devices", "--bogus")
    assert r.returncode == 2 and "unrecognized arguments: --bogus" in r.stderr


def test_missing_subcommand_is_usage_error():
    r = spvjit()
    assert r.returncode == 2 and r.stderr.startswith("spvjit: error:") and "COMMAND" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_no_driver_exits_2_with_one_line():
    for args in (("devices",), ("devices", "--json")):
        r = spvjit(*args, **NO_DRIVER)
        assert_one_line_error(r)
        assert "mesa-vulkan-drivers" in r.stderr and r.stdout == ""


def test_missing_loader_exits_2_with_one_line(tmp_path):
    (tmp_path / "vulkan").mkdir()
    (tmp_path / "vulkan" / "__init__.py").write_text("raise OSError('Cannot find Vulkan SDK version')\n")
    r = spvjit("devices", PYTHONPATH=str(tmp_path))
    assert_one_line_error(r)
    assert "libvulkan1" in r.stderr


def test_bad_spvjit_device_still_lists_then_fails(has_device):
    r = spvjit("devices", SPVJIT_DEVICE="no-such-gpu")
    assert_one_line_error(r)
    assert "no-such-gpu" in r.stderr
    assert has_device["devices"][0]["name"] in r.stdout and "(selected)" not in r.stdout
