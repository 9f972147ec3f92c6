"""Runs of elementwise ops on big tiles emitted register by register (codegen/elementwise_runs.py):
the results against numpy on the device and in the interpreter, the instruction order that
makes it worth doing, and small tiles left in the op-by-op order."""
import itertools

import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit.codegen import elementwise_runs
from spvjit.codegen.compiler import compile_kernel
from spvjit.codegen.spirv.tools import disassemble
from spvjit.codegen.target import Target
from spvjit.compiler import _build_ir
from spvjit.runtime import get_device

MODES = ["device", "interpreter"]


@spvjit.kernel
def chain(x_ptr, r_ptr, c_ptr, y_ptr, i_ptr, s, BM: sl.constexpr, BN: sl.constexpr):
    """Float, integer, comparison, select and cast ops, with row and column vectors broadcast
    between them (those broadcasts are emitted ahead of the chain)."""
    rows = sl.arange(0, BM)
    cols = sl.arange(0, BN)
    offs = rows[:, None] * BN + cols[None, :]
    x = sl.load(x_ptr + offs)
    r = sl.load(r_ptr + rows)
    c = sl.load(c_ptr + cols)
    t = x * s - r[:, None]
    e = sl.exp2(t * 0.25) + c[None, :]
    keep = (rows[:, None] >= cols[None, :]) | (t > 0.0)
    y = sl.where(keep, e, -t) / (1.0 + c[None, :] * c[None, :])
    k = (offs * 3 + rows[:, None]) ^ (cols[None, :] << 2)
    sl.store(y_ptr + offs, y.to(sl.float16).to(sl.float32))
    sl.store(i_ptr + offs, k % 1000 - (k > 5000).to(sl.int32))


def _reference(x, r, c, s):
    BM, BN = x.shape
    rows, cols = np.arange(BM)[:, None], np.arange(BN)[None, :]
    t = x * np.float32(s) - r[:, None]
    e = np.exp2(t * np.float32(0.25)) + c[None, :]
    keep = (rows >= cols) | (t > 0)
    y = np.where(keep, e, -t) / (np.float32(1) + c[None, :] * c[None, :])
    offs = (rows * BN + cols).astype(np.int32)
    k = (offs * 3 + rows) ^ (cols << 2)
    return y.astype(np.float16).astype(np.float32), (k % 1000 - (k > 5000)).astype(np.int32)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("BM,BN", [(64, 64), (32, 64), (16, 16)])
def test_chain_matches_numpy(mode, BM, BN):
    rng = np.random.default_rng(BM + BN)
    x = rng.standard_normal((BM, BN)).astype(np.float32)
    r = rng.standard_normal(BM).astype(np.float32)
    c = rng.standard_normal(BN).astype(np.float32)
    y, i = spvjit.empty((BM, BN), np.float32), spvjit.empty((BM, BN), np.int32)
    k = spvjit.interpret(chain) if mode == "interpreter" else chain
    k[(1,)](*(spvjit.tensor(a) for a in (x, r, c)), y, i, 0.75, BM=BM, BN=BN)
    want_y, want_i = _reference(x, r, c, 0.75)
    # a few f32 roundings, then f16: within one f16 ulp (2^-10 relative), exp2 within 2^-9
    np.testing.assert_allclose(y.numpy(), want_y, rtol=4e-3, atol=1e-6)
    np.testing.assert_array_equal(i.numpy(), want_i)          # integer ops are exact


def _longest_same_opcode_run(spirv: bytes, opcodes) -> int:
    """The most consecutive instructions of one of `opcodes` in the disassembly."""
    names = []
    for line in disassemble(spirv).splitlines():
        words = line.split()
        op = words[2] if len(words) > 2 and words[1] == "=" else (words[0] if words else "")
        names.append(op if op in opcodes else None)
    return max((len(list(g)) for k, g in itertools.groupby(names) if k is not None), default=0)


def _spirv(BM, BN):
    t = spvjit.tensor(np.zeros(BM * BN, np.float32))
    spec, _ = chain.specialize([t, t, t, t, t, 0.5], dict(BM=BM, BN=BN))
    ck = compile_kernel(_build_ir(chain, spec, optimize=True), Target.of(get_device().kernel_caps),
                        spec.num_warps, spec.divisibility or {})
    return ck, ck.workgroup_size


def test_big_tiles_are_emitted_register_by_register():
    """Op by op, the 64x64 tile's `exp2`s would follow each other once per register of a lane
    (4096 / workgroup size of them); register-major, each register's chain is complete before
    the next.  Only the small [1, 64] operand (c * c: 64 / workgroup size registers) is still
    computed op by op, so no opcode repeats more than 16 times in a row."""
    ck, wg = _spirv(64, 64)
    regs = 64 * 64 // wg
    assert regs >= elementwise_runs.MIN_REGS
    longest = _longest_same_opcode_run(ck.spirv, {"OpExtInst", "OpFMul", "OpFSub", "OpFDiv"})
    assert longest <= 16 < regs, (longest, regs)


def test_small_tiles_keep_the_op_by_op_order():
    ck, wg = _spirv(16, 16)
    regs = 16 * 16 // wg
    if regs >= elementwise_runs.MIN_REGS:
        pytest.skip(f"{regs} registers per lane on this device: a big tile here")
    assert _longest_same_opcode_run(ck.spirv, {"OpExtInst"}) >= regs
