"""CPU drivers: each workgroup runs several programs in turn, and vec4 stores go out as
64-bit words.  Both are lowering choices, so results must not change: checked against
numpy at grid sizes that leave a partial last workgroup and that split into dispatches."""
import dataclasses

import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit import launch
from spvjit.codegen.compiler import compile_kernel
from spvjit.codegen.spirv.tools import disassemble
from spvjit.runtime import get_device


@spvjit.kernel
def pid_kernel(out_ptr, runs_ptr, BLOCK: sl.constexpr):
    pid = sl.program_id(0)
    offs = pid * BLOCK + sl.arange(0, BLOCK)
    # every element says which program wrote it and how many programs there were
    sl.store(out_ptr + offs, pid * 100_000 + sl.num_programs(0) + offs * 0)
    sl.atomic_add(runs_ptr + pid, 1)          # a program run twice would count 2


def run_pids(progs, B=8):
    out = spvjit.tensor(np.full(progs * B, -1, np.int32))
    runs = spvjit.zeros(progs + 1, np.int32)
    pid_kernel[(progs,)](out, runs, BLOCK=B)
    np.testing.assert_array_equal(out.numpy(), np.repeat(np.arange(progs) * 100_000 + progs, B))
    np.testing.assert_array_equal(runs.numpy(), [1] * progs + [0])


@spvjit.kernel
def pid_2d_kernel(out_ptr, NX: sl.constexpr):
    px, py = sl.program_id(0), sl.program_id(1)
    sl.store(out_ptr + py * NX + px, px * 1000 + py)


@spvjit.kernel
def neg(x_ptr, y_ptr, n, BLOCK: sl.constexpr):
    offs = sl.program_id(0) * BLOCK + sl.arange(0, BLOCK)
    m = offs < n
    sl.store(y_ptr + offs, -sl.load(x_ptr + offs, mask=m), mask=m)


@spvjit.kernel
def early_exit(out_ptr, n):
    if sl.program_id(0) >= n:
        return
    sl.store(out_ptr + sl.program_id(0), 1)


@pytest.mark.parametrize("progs", [1, 17, 1000, 4099])
def test_every_program_runs_once(progs):
    run_pids(progs)


def test_programs_per_workgroup_follow_the_grid(monkeypatch):
    loop = launch.CompiledKernel("k", b"", 8, [], [], 0, 0, frozenset(), True)
    plain = dataclasses.replace(loop, program_loop=False)
    monkeypatch.setenv("SPVJIT_PROGRAMS_PER_WORKGROUP", "16")
    assert launch.programs_per_workgroup(plain, 100_000) == 1
    assert launch.programs_per_workgroup(loop, 3) == 1             # tiny grids keep every thread busy
    assert 1 < launch.programs_per_workgroup(loop, 100_000) <= 16


def test_split_grid_with_program_loop(monkeypatch):
    # a tiny simulated workgroup-count limit: chunks of whole workgroups, none run twice
    dev = get_device()
    monkeypatch.setattr(dev, "caps", dataclasses.replace(dev.caps, max_workgroup_count=(10, 65535, 65535)))
    run_pids(2005)


def test_2d_grid_only_axis_0_is_looped():
    nx, ny = 301, 7
    out = spvjit.tensor(np.full(nx * ny, -1, np.int32))
    pid_2d_kernel[(nx, ny)](out, NX=nx)
    py, px = np.divmod(np.arange(nx * ny), nx)
    np.testing.assert_array_equal(out.numpy(), px * 1000 + py)


def _compile(fn, caps, *args, **kw):
    return compile_kernel(fn.ir_module(*args, **kw), caps, num_warps=1)


def test_lowering_choices_follow_capabilities():
    caps = get_device().caps
    cpu = dataclasses.replace(caps, device_type="cpu", int64=True, subgroup_size=8)
    gpu = dataclasses.replace(caps, device_type="discrete", subgroup_size=32)
    out = spvjit.empty(64, np.float32)
    args = (spvjit.empty(64, np.int32), spvjit.empty(2, np.int32))
    ck = _compile(pid_kernel, cpu, *args, BLOCK=64)
    assert ck.program_loop
    assert not _compile(pid_kernel, gpu, *args, BLOCK=64).program_loop
    # an early return would leave the loop: such kernels run one program per workgroup
    assert not _compile(early_exit, cpu, out, 4).program_loop
    # vec4 stores as u64 pairs where the CPU driver has 64-bit integers, plain vec4 elsewhere
    text = disassemble(ck.spirv)
    assert "OpCapability Int64" in text and "OpTypeInt 64 0" in text
    text = disassemble(_compile(pid_kernel, gpu, *args, BLOCK=64).spirv)
    assert "Int64" not in text


@pytest.mark.parametrize("dt", [np.float16, np.float32, np.int32])
@pytest.mark.parametrize("n", [4096, 4100, 4099])
def test_wide_stores_write_the_right_words(dt, n):
    # masked tails and f16 (four elements in one u64) included
    x = (np.arange(n) % 1000 - 500).astype(dt)
    y = spvjit.tensor(np.full(n + 8, 7, dt))
    neg[(spvjit.cdiv(n, 256),)](spvjit.tensor(x), y, n, BLOCK=256)
    got = y.numpy()
    np.testing.assert_array_equal(got[:n], -x)
    np.testing.assert_array_equal(got[n:], np.full(8, 7, dt))      # nothing written past the end


@pytest.mark.parametrize("bad", ["0", "many", "-3"])
def test_bad_programs_per_workgroup_setting_is_named(monkeypatch, bad):
    monkeypatch.setenv("SPVJIT_PROGRAMS_PER_WORKGROUP", bad)
    loop = launch.CompiledKernel("k", b"", 8, [], [], 0, 0, frozenset(), True)
    with pytest.raises(spvjit.LaunchError, match="SPVJIT_PROGRAMS_PER_WORKGROUP=.*expected an integer >= 1"):
        launch.programs_per_workgroup(loop, 1000)
