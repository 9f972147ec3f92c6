"""`(pid * BLOCK + arange) % n` offsets (Triton's tutorial matmul wraps its rows and columns so):
runs of 4 stay runs when the dividend is provably >= 0 and n is specialized on divisibility,
so loads through them vectorize; results match numpy when the wrap falls inside the tile."""
import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit.codegen import axis_info


@spvjit.kernel
def wrapped_copy(x_ptr, y_ptr, n, SHIFT: sl.constexpr, BLOCK: sl.constexpr):
    offs = (sl.program_id(0) * BLOCK + SHIFT + sl.arange(0, BLOCK)) % n
    x = sl.load(x_ptr + offs, mask=offs >= 0, other=-1.0)
    sl.store(y_ptr + sl.program_id(0) * BLOCK + sl.arange(0, BLOCK), x)


def _mod_fact(shift, param_div):
    x = spvjit.tensor(np.zeros(256, np.float32))
    ir = wrapped_copy.ir_module(x, spvjit.empty(256), 48, SHIFT=shift, BLOCK=64)
    info = axis_info.analyze(ir, param_div)
    mods = [op for op in ir.walk() if op.name == "mod" and not op.results[0].type.is_scalar]
    assert len(mods) == 1
    return info[id(mods[0].results[0])]


def test_a_nonnegative_dividend_keeps_its_runs():
    fact = _mod_fact(0, {"n": 16})
    assert fact.contig == 16 and fact.div == 16 and fact.nonneg     # runs of min(64, 64, 16)


@pytest.mark.parametrize("shift,param_div", [
    (-4, {"n": 16}),        # the dividend may be negative: C's remainder is not periodic there
    (0, {}),                # n of unknown divisibility: a multiple of n may fall inside any run
])
def test_no_runs_without_proof(shift, param_div):
    assert _mod_fact(shift, param_div).contig == 1


@pytest.mark.parametrize("mode", ["device", "interpreter"])
@pytest.mark.parametrize("shift", [0, -4])
def test_wrapped_loads_match_numpy(mode, shift):
    n, block, programs = 48, 64, 3                      # 48 % 4 == 0: the wrap falls between runs
    x = np.arange(n, dtype=np.float32) * 3.0 + 1.0
    y = spvjit.empty(programs * block)
    k = spvjit.interpret(wrapped_copy) if mode == "interpreter" else wrapped_copy
    k[(programs,)](spvjit.tensor(x), y, n, SHIFT=shift, BLOCK=block)
    idx = np.arange(programs * block) + shift
    # C's remainder, as Triton computes `%` on signed integers: negative for a negative dividend
    want = np.where(idx >= 0, idx % n, -((-idx) % n))
    np.testing.assert_array_equal(y.numpy(), np.where(want >= 0, x[np.maximum(want, 0)], -1.0))


@pytest.mark.parametrize("shift,vec4", [(0, True), (-4, False)])
def test_wrapped_loads_vectorize_only_when_proved(needs_device, shift, vec4):
    from spvjit.codegen.compiler import compile_kernel
    x = spvjit.tensor(np.zeros(48, np.float32))
    ir = wrapped_copy.ir_module(x, spvjit.empty(192), 48, SHIFT=shift, BLOCK=64)
    notes = {}
    compile_kernel(ir, spvjit.get_device().caps, num_warps=1, param_div={"n": 16}, notes=notes)
    load = next(op for op in ir.walk() if op.name == "load")
    assert ("vec4" in notes[id(load)]) == vec4, notes[id(load)]
