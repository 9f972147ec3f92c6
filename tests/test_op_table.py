"""Every op of the tile IR is declared once (ir/ops.py OP_INFO) and has both meanings:
interpreter semantics and a lowering.  Adding an op without one of them fails here."""
import inspect

import numpy as np
import pytest

from spvjit.codegen.compiler import compile_kernel
from spvjit.codegen.lower import Lowerer
from spvjit.codegen.spirv.tools import validate
from spvjit.codegen.values import LoweringError
from spvjit.interpreter import ProgramRunner
from spvjit.interpreter import ops as O
from spvjit.ir import Block, Builder, KernelIR, Operation, Param, Value
from spvjit.ir.ops import OP_INFO, OPS, check_op
from spvjit.ir.types import DTYPES, PointerType, TileType
from spvjit.runtime import get_device

ELEMENTWISE = sorted(n for n, i in OP_INFO.items() if i.category == "elementwise")
OTHER = sorted(n for n, i in OP_INFO.items() if i.category != "elementwise")
ATTRS = {"cmp": {"pred": "lt"}}
DTYPE_NAMES = ("f32", "f16", "f64", "i32", "u32", "i64", "u64", "i8", "i1")


def test_every_op_is_in_the_table():
    assert set(OP_INFO) == set(OPS)
    assert all(i.category in ("elementwise", "value", "shape", "pointer", "memory", "reduction", "control")
               for i in OP_INFO.values())


@pytest.mark.parametrize("name", OTHER)
def test_structural_ops_have_a_lowering_and_an_interpreter_case(name):
    assert callable(getattr(Lowerer, f"op_{name}", None)), f"codegen/lower.py has no op_{name}"
    executor = inspect.getsource(ProgramRunner)
    shape = OP_INFO[name].category == "shape"
    assert shape or f'"{name}"' in executor, f"interpreter/executor.py has no case for '{name}'"


def _candidates(name, dt):
    """Well-typed instances of elementwise op `name` on dtype `dt` (result types vary)."""
    t = TileType((4,), DTYPES[dt])
    arity = OPS[name][0]
    results = [t] if name not in ("cmp", "cast", "bitcast") else (
        [TileType((4,), DTYPES["i1"])] if name == "cmp" else [TileType((4,), d) for d in DTYPES.values()])
    for r in results:
        if name == "select":
            yield [TileType((4,), DTYPES["i1"]), t, t], r
        else:
            yield [t] * arity, r


def _kernel(name, in_types, out_type):
    """out[i] = name(in0[i], in1[i], ...) over 4 elements."""
    params, body = [], Block()
    b = Builder(body)
    idx = b.op1("arange", [], TileType((4,), DTYPES["i32"]), start=0, end=4)
    loaded = []
    for k, t in enumerate(in_types):
        p = Param(f"in{k}", Value(TileType((), PointerType(t.elem)), f"in{k}"))
        params.append(p)
        ptrs = b.op1("splat", [p.value], TileType((4,), p.value.type.elem))
        loaded.append(b.op1("load", [b.op1("addptr", [ptrs, idx], ptrs.type)], t))
    op = Operation(name, loaded, [out_type], dict(ATTRS.get(name, {})))
    if check_op(op) is not None:
        return None
    body.ops.append(op)
    out = Param("out", Value(TileType((), PointerType(out_type.elem)), "out"))
    params.append(out)
    optrs = b.op1("splat", [out.value], TileType((4,), out.value.type.elem))
    b.create("store", [b.op1("addptr", [optrs, idx], optrs.type), op.result], [])
    b.create("return", [], [])
    return KernelIR(f"probe_{name}", params, body), op


def _interpreter_has_meaning(op) -> bool:
    env = {id(v): np.ones(v.type.shape, O.value_dtype(v.type.elem)) for v in op.operands}
    try:
        with np.errstate(all="ignore"):
            ProgramRunner(KernelIR("probe", [], Block()), [], {}, (1, 1, 1)).run_op(op, env)
        return True
    except TypeError:          # a well-typed op with no meaning on this dtype (`not` on floats)
        return False


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_ops_have_interpreter_and_lowering_rules(name):
    caps = get_device().caps
    checked = 0
    for dt in DTYPE_NAMES:
        for in_types, out_type in _candidates(name, dt):
            built = _kernel(name, in_types, out_type)
            if built is None:
                continue
            kernel, op = built
            meaning = _interpreter_has_meaning(op)
            try:
                validate(compile_kernel(kernel, caps, num_warps=1).spirv, target_env="vulkan1.3")
                lowered = True
            except LoweringError:
                lowered = False
            assert meaning == lowered, (f"'{name}' on {dt} -> {out_type.elem}: interpreter "
                                        f"{'has' if meaning else 'lacks'} a rule, lowering "
                                        f"{'has' if lowered else 'lacks'} one")
            checked += meaning
    assert checked, f"'{name}' has a meaning on none of {DTYPE_NAMES}"


def _run_on_device(kernel, inputs: dict, out_dtype) -> np.ndarray:
    import types

    import spvjit
    from spvjit.compiler import DeviceKernel
    from spvjit.launch import launch_on_device
    dev = get_device()
    ck = compile_kernel(kernel, dev.caps, num_warps=1)
    pipe = dev.create_pipeline(ck.spirv, [bd.kind for bd in ck.bindings], ck.push_size)
    out = spvjit.zeros(4, out_dtype)
    args = {name: spvjit.tensor(v) for name, v in inputs.items()} | {"out": out}
    spec = types.SimpleNamespace(runtime=list(args.items()))
    launch_on_device(DeviceKernel(ck, pipe), spec, (1, 1, 1), dev, kernel.name)
    return out.numpy()


def _chain_kernel(first: str, chain) -> KernelIR:
    """out[i] = op_n(...op_1(in0[i])) for chain [(op name, result dtype name), ...]."""
    body = Block()
    b = Builder(body)
    idx = b.op1("arange", [], TileType((4,), DTYPES["i32"]), start=0, end=4)

    def pointer_param(name, dt):
        p = Param(name, Value(TileType((), PointerType(DTYPES[dt])), name))
        ptrs = b.op1("splat", [p.value], TileType((4,), p.value.type.elem))
        return p, b.op1("addptr", [ptrs, idx], ptrs.type)

    src, src_ptrs = pointer_param("in0", first)
    value = b.op1("load", [src_ptrs], TileType((4,), DTYPES[first]))
    for name, dt in chain:
        value = b.op1(name, [value], TileType((4,), DTYPES[dt]))
    out, out_ptrs = pointer_param("out", chain[-1][1])
    b.create("store", [out_ptrs, value], [])
    b.create("return", [], [])
    return KernelIR("bitcast_chain", [src, out], body)


@pytest.mark.parametrize("src,dst", [("bf16", "i16"), ("bf16", "u16"), ("bf16", "f16"), ("i16", "bf16"),
                                     ("u16", "bf16"), ("f16", "bf16")])
def test_bfloat16_bitcasts_match_the_interpreter(src, dst):
    from ir_strategies import interpret
    from spvjit.ir.verifier import verify
    data = {"f32": np.float32([1.5, -2.0, 3.0e38, 1e-40]), "f16": np.float16([1.5, -2.0, 65504, 6e-8]),
            "i16": np.int16([1, -1, 16256, -16512]), "u16": np.uint16([1, 65535, 16256, 49024])}
    # bf16 values enter from f32 (cast) and leave as f32 (cast): tensors hold them as 16 bits
    first = "f32" if src == "bf16" else src
    chain = ([("cast", "bf16")] if src == "bf16" else []) + [("bitcast", dst)]
    chain += [("cast", "f32")] if dst == "bf16" else []
    kernel = _chain_kernel(first, chain)
    verify(kernel)
    out_np = DTYPES[chain[-1][1]].numpy
    want = interpret(kernel, {"in0": data[first], "out": np.zeros(4, out_np)}, (1,))["out"]
    got = _run_on_device(kernel, {"in0": data[first]}, out_np)
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))     # bit for bit
