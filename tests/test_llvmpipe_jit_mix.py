"""scripts/llvmpipe-jit-mix: the loop it reports as innermost is the dot's k loop.

A trip of the tutorial matmul's looped dot (8 k steps, tutorial_kernels.matmul_kernel) makes
M*N*8/W multiplies per lane-vector: llvmpipe runs the W = 8 lanes as one 8-wide register, and
a 32x32 C (one vec4 block per lane per row) and a 64x64 C cut into 16-row slices
(chunking.py) both give 1,024.  The calls are the texel fetches of A (one per row per 4 steps,
at a uniform address) and B (one per vec4 block per step): 32*2 + 8 for 32x32, 16*2 + 8*2 for
a 16x64 slice.  A different count means the lowering or the tool changed.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("blocks,calls", [("32x32x32", 72), ("64x64x32", 48)])
def test_the_innermost_loop_is_a_trip_of_the_dot(needs_device, blocks, calls):
    from spvjit.runtime import get_device
    if get_device().caps.device_type != "cpu" or os.uname().machine != "x86_64":
        pytest.skip("the tool reads llvmpipe's x86-64 code")
    if shutil.which("objdump") is None:
        pytest.skip("objdump (binutils) is not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("SPVJIT_WHOLE_TILES", "SPVJIT_CPU_COOPMAT")}
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "llvmpipe-jit-mix"), "--blocks", blocks,
                          "--size", "64"], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    first = next(line for line in out.stdout.splitlines() if line.startswith("loop "))
    numbers = {k: int(v) for k, v in re.findall(r"(multiplies|adds|fused|calls) (\d+)", first)}
    assert numbers["multiplies"] + numbers["fused"] == 1024, first
    assert numbers["calls"] == calls, first


def test_bad_blocks_are_refused_by_name():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "llvmpipe-jit-mix"), "--blocks", "64x64x3"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--blocks" in out.stderr and "64x64x3" in out.stderr
