"""`sl.device_print` on the device (records in a hidden debug buffer, printed by the host in
Triton's format after the submit) and in the interpreter: the same lines, in program order."""
import numpy as np
import pytest

import spvjit
import spvjit.language as tl
from spvjit.codegen import debug_print

MODES = ["device", "interpreter"]


def _k(kernel, mode):
    return spvjit.interpret(kernel) if mode == "interpreter" else kernel


@spvjit.kernel
def shows_values(X, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    x = tl.load(X + pid * BLOCK + tl.arange(0, BLOCK))
    tl.device_print("x", x)
    i = 0
    while i < n:
        tl.device_print("step ", i, (x * i).to(tl.float16) * 0.5)
        i += 1
    tl.device_print("bits", x, hex=True)
    tl.device_print("done")
    tl.device_print("2-D", tl.reshape(x, (2, BLOCK // 2)) > 0)


def _expected(x, n, block, grid):
    lines = []
    for p in range(grid):
        v = x[p * block:(p + 1) * block]
        lines += [f"pid ({p}, 0, 0) idx ({j}) x: {v[j]}" for j in range(block)]
        for i in range(n):
            lines.append(f"pid ({p}, 0, 0) idx () step: (operand 0) {i}")
            half = (v * i).astype(np.float16) * np.float16(0.5)
            lines += [f"pid ({p}, 0, 0) idx ({j}) step: (operand 1) {float(half[j]):f}" for j in range(block)]
        lines += [f"pid ({p}, 0, 0) idx ({j}) bits: 0x{int(v[j]) & 0xFFFFFFFF:08x}" for j in range(block)]
        lines.append(f"pid ({p}, 0, 0) idx () done")
        lines += [f"pid ({p}, 0, 0) idx ({j // (block // 2)}, {j % (block // 2)}) 2-D: {int(v[j] > 0)}"
                  for j in range(block)]
    return lines


@pytest.mark.parametrize("mode", MODES)
def test_lines_in_program_order_as_triton_writes_them(mode, capsys):
    block, grid, n = 8, 3, 2
    x = np.arange(block * grid, dtype=np.int32) - 5
    _k(shows_values, mode)[(grid,)](spvjit.tensor(x), n, BLOCK=block)
    assert capsys.readouterr().out.splitlines() == _expected(x, n, block, grid)


def test_inside_a_batch_the_records_are_printed_after_it(capsys):
    x = np.arange(8, dtype=np.int32)
    with spvjit.batch():
        shows_values[(1,)](spvjit.tensor(x), 0, BLOCK=8)
        shows_values[(1,)](spvjit.tensor(x + 100), 0, BLOCK=8)
        assert capsys.readouterr().out == ""
    out = capsys.readouterr().out.splitlines()
    assert out == _expected(x, 0, 8, 1) + _expected(x + 100, 0, 8, 1)


@spvjit.kernel
def floods(X, BLOCK: tl.constexpr):
    tl.device_print("v", tl.load(X + tl.program_id(0) * 0 + tl.arange(0, BLOCK)))


def test_overflow_is_counted_and_reported(capsys):
    block, grid = 1024, 40            # 40960 records: more than the buffer holds
    floods[(grid,)](spvjit.tensor(np.ones(block, np.float32)), BLOCK=block)
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == debug_print.CAPACITY
    dropped = block * grid - debug_print.CAPACITY
    assert f"device_print: {dropped} records dropped" in captured.err
    floods[(1,)](spvjit.tensor(np.ones(block, np.float32)), BLOCK=block)   # the buffer was emptied
    assert len(capsys.readouterr().out.splitlines()) == block


def test_a_kernel_without_prints_has_no_debug_buffer():
    @spvjit.kernel
    def quiet(X):
        tl.store(X, 1)

    x = spvjit.zeros(1, np.int32)
    quiet[(1,)](x)
    ck = next(iter(quiet._compiled.values())).compiled
    assert all(bd.name != debug_print.PRINT_PARAM for bd in ck.bindings)


def test_a_replayed_graph_prints_each_replay(capsys):
    x = np.arange(8, dtype=np.int32)
    with spvjit.record() as graph:
        shows_values[(1,)](spvjit.tensor(x), 1, BLOCK=8)
        shows_values[(1,)](spvjit.tensor(x - 3), 0, BLOCK=8)
    capsys.readouterr()
    for _ in range(2):
        graph.replay()
        assert capsys.readouterr().out.splitlines() == _expected(x, 1, 8, 1) + _expected(x - 3, 0, 8, 1)
    graph.close()


def test_a_disk_cache_hit_decodes_the_same(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPVJIT_CACHE_DIR", str(tmp_path))
    x = np.arange(8, dtype=np.int32) * 3
    shows_values._compiled.clear()
    shows_values[(1,)](spvjit.tensor(x), 1, BLOCK=8)
    first = capsys.readouterr().out
    shows_values._compiled.clear()                   # the next launch loads the module from disk
    shows_values[(1,)](spvjit.tensor(x), 1, BLOCK=8)
    assert capsys.readouterr().out == first and first.splitlines() == _expected(x, 1, 8, 1)


@spvjit.kernel
def checks(X, BLOCK: tl.constexpr):
    x = tl.load(X + tl.arange(0, BLOCK))
    tl.device_assert(x >= 0, "x must be non-negative")
    tl.device_print("x", tl.sum(x, axis=0))


@pytest.mark.parametrize("mode", MODES)
def test_device_assert_in_debug_builds(mode, monkeypatch, capsys):
    x = np.arange(8, dtype=np.int32)
    bad = x.copy()
    bad[5] = -1
    if mode == "device":
        checks[(1,)](spvjit.tensor(bad), BLOCK=8)      # as Triton: unchecked outside debug builds
        assert capsys.readouterr().out == "pid (0, 0, 0) idx () x: 22\n"
        monkeypatch.setenv("SPVJIT_DEBUG", "1")
    k = _k(checks, mode)
    k[(1,)](spvjit.tensor(x), BLOCK=8)
    assert capsys.readouterr().out == "pid (0, 0, 0) idx () x: 28\n"
    with pytest.raises(AssertionError, match=r"test_device_print.py:\d+: device_assert failed in program "
                                             r"\(0, 0, 0\).*x must be non-negative") as e:
        k[(1,)](spvjit.tensor(bad), BLOCK=8)
    if mode == "device":
        assert "at index (5,)" in str(e.value)            # the failing element is named
        assert capsys.readouterr().out == "pid (0, 0, 0) idx () x: 22\n"   # prints still come out


def test_several_subgroups_per_program(capsys):
    """Compiled as for a GPU (4 warps: 128 invocations in several subgroups on this device),
    each lane writes the elements it holds; the host still prints them in order."""
    from test_gpu_layouts import gpu_like_target
    from spvjit.codegen.compiler import compile_kernel
    from spvjit.compiler import DeviceKernel, _build_ir
    from spvjit.launch import launch_on_device
    from spvjit.runtime import get_device

    block, grid, n = 256, 2, 1
    x = np.arange(block * grid, dtype=np.int32) - 100
    args = [spvjit.tensor(x), n]
    spec, _ = shows_values.specialize(args, {"BLOCK": block})
    kernel = _build_ir(shows_values, spec, optimize=True)
    ck = compile_kernel(kernel, gpu_like_target(), spec.num_warps, spec.divisibility or {})
    assert ck.workgroup_size == 128
    dev = get_device()
    pipe = dev.create_pipeline(ck.spirv, [bd.kind for bd in ck.bindings], ck.push_size)
    dk = DeviceKernel(ck, pipe, prints=debug_print.print_table(kernel))
    launch_on_device(dk, spec, (grid, 1, 1), dev, "shows_values")
    assert capsys.readouterr().out.splitlines() == _expected(x, n, block, grid)
