"""sl.multiple_of / sl.max_contiguous: no change in meaning, and they let loads vectorize."""
import os
import subprocess
import sys

import numpy as np
import pytest

import spvjit
import spvjit.language as sl


@spvjit.kernel
def gather_rows(x_ptr, y_ptr, start_ptr, BLOCK: sl.constexpr):
    # the row start comes from memory, so nothing proves it aligned without the hint
    start = sl.multiple_of(sl.load(start_ptr), 16)
    offs = sl.max_contiguous(start + sl.arange(0, BLOCK), BLOCK)
    sl.store(y_ptr + sl.arange(0, BLOCK), sl.load(x_ptr + offs) * 2.0)


@pytest.mark.parametrize("mode", ["device", "interpreter"])
def test_hints_keep_meaning(mode):
    k = spvjit.interpret(gather_rows) if mode == "interpreter" else gather_rows
    x = np.arange(256, dtype=np.float32)
    y = spvjit.empty(64)
    k[(1,)](spvjit.tensor(x), y, spvjit.tensor(np.array([48], np.int32)), BLOCK=64)
    np.testing.assert_array_equal(y.numpy(), 2 * x[48:112])


def test_hint_enables_vector_loads(tmp_path):
    script = tmp_path / "hinted.py"
    script.write_text(
        "import sys, numpy as np, spvjit\n"
        f"sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
        "from test_hints import gather_rows\n"
        "gather_rows[(1,)](spvjit.tensor(np.zeros(256, np.float32)), spvjit.empty(64),"
        " spvjit.tensor(np.array([16], np.int32)), BLOCK=64)\n")
    env = {**os.environ, "SPVJIT_DUMP": "lowered", "SPVJIT_CACHE_DIR": str(tmp_path / "c")}
    p = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    loads = [line for line in p.stderr.splitlines() if "= load " in line and "tensor<64x" in line]
    assert loads and "vec4" in loads[0], p.stderr


def test_bad_hint_is_a_compile_error():
    @spvjit.kernel
    def bad(x_ptr):
        sl.store(x_ptr, sl.multiple_of(sl.load(x_ptr), 0))
    with pytest.raises(spvjit.CompilationError, match="must be positive"):
        bad[(1,)](spvjit.tensor(np.zeros(1, np.int32)))


@spvjit.kernel
def scaled_total(x_ptr, out_ptr, n, BLOCK: sl.constexpr):
    offs = sl.program_id(0) * BLOCK + sl.arange(0, BLOCK)
    x = sl.load(x_ptr + offs, mask=offs < n, other=0.0)
    sl.atomic_add(out_ptr, sl.sum(x * 2.0, axis=0))


def test_vector_loads_next_to_float_atomics_on_gpus():
    # float atomics declare f32 buffers as u32 words; a vec4 storage load (the GPU path,
    # simulated here) must turn those words back into floats (found on an H200)
    import dataclasses
    from spvjit.codegen.compiler import compile_kernel
    from spvjit.codegen.spirv.tools import validate
    caps = dataclasses.replace(spvjit.get_device().caps, device_type="discrete", subgroup_size=32)
    ir = scaled_total.ir_module(spvjit.empty(4096), spvjit.zeros(1), 4096, BLOCK=256)
    notes = {}
    ck = compile_kernel(ir, caps, num_warps=2, param_div={"n": 64}, notes=notes)
    validate(ck.spirv)
    assert any("vec4 storage load" in v for v in notes.values())
