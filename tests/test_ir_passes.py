"""IR passes: literal text in -> text out for each rewrite, and for random
modules the interpreter gives bit-identical results before and after."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ir_strategies import SUITE, interpret, kernels, random_inputs, same_bits, suite_inputs, suite_module
from spvjit.ir import (DEFAULT_PASSES, Block, Builder, IRVerificationError, KernelIR, Operation, Param,
                       TileType, Value, canonicalize, cse, dce, fold_constants, parse, print_kernel, run_passes)
from spvjit.ir.ops import MATH_UNARY, BINARY, CMP_PREDICATES, UNARY, check_op
from spvjit.interpreter import ProgramRunner
from spvjit.interpreter import ops as O
from spvjit.ir.types import DTYPES, PointerType

SEMANTIC = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def check(pass_, text_in: str, text_out: str):
    got = print_kernel(pass_(parse(text_in)))
    assert got == text_out, "\n" + got
    parse(got)   # the result is valid IR text again


FOLD_IN = '''kernel @k(%p: ptr<i32>, %x: i32) {
  %0 = constant {value = 7} : i32
  %1 = constant {value = -2} : i32
  %2 = floordiv %0, %1 : i32
  %3 = mod %0, %1 : i32
  %4 = constant {value = 2147483647} : i32
  %5 = constant {value = 1} : i32
  %6 = add %4, %5 : i32
  %7 = cmp %2, %3 {pred = "lt"} : i1
  %8 = constant {value = 2.5} : f32
  %9 = cast %8 : i32
  %10 = splat %9 : tensor<4xi32>
  %11 = select %7, %x, %6 : i32
  %12 = constant {value = 0.1} : f32
  %13 = constant {value = 3.0} : f32
  %14 = truediv %12, %13 : f32
  %15 = cast %12 : f16
  %16 = cast %12 : bf16
  %17 = bitcast %8 : i32
  %18 = constant {value = 5} : u32
  %19 = constant {value = 7} : u32
  %20 = sub %18, %19 : u32
  %21 = constant {value = true} : i1
  %22 = not %21 : i1
  %23 = add %11, %9 : i32
  return
}
'''
# C-style division (-3, remainder 1), int32 wrap-around, truncating cast, f32/f16/bf16
# rounding and u32 wrap-around; the select with a constant condition becomes %x
FOLD_OUT = '''kernel @k(%p: ptr<i32>, %x: i32) {
  %0 = constant {value = 7} : i32
  %1 = constant {value = -2} : i32
  %2 = constant {value = -3} : i32
  %3 = constant {value = 1} : i32
  %4 = constant {value = 2147483647} : i32
  %5 = constant {value = 1} : i32
  %6 = constant {value = -2147483648} : i32
  %7 = constant {value = true} : i1
  %8 = constant {value = 2.5} : f32
  %9 = constant {value = 2} : i32
  %10 = constant {value = 2} : tensor<4xi32>
  %11 = constant {value = 0.1} : f32
  %12 = constant {value = 3.0} : f32
  %13 = constant {value = 0.03333333507180214} : f32
  %14 = constant {value = 0.0999755859375} : f16
  %15 = constant {value = 0.10009765625} : bf16
  %16 = constant {value = 1075838976} : i32
  %17 = constant {value = 5} : u32
  %18 = constant {value = 7} : u32
  %19 = constant {value = 4294967294} : u32
  %20 = constant {value = true} : i1
  %21 = constant {value = false} : i1
  %22 = add %x, %9 : i32
  return
}
'''

# every op here could differ on the device (or is undefined there), so nothing folds
NO_FOLD = '''kernel @k(%x: f32) {
  %0 = constant {value = 7} : i32
  %1 = constant {value = 0} : i32
  %2 = floordiv %0, %1 : i32
  %3 = mod %0, %1 : i32
  %4 = constant {value = -2147483648} : i32
  %5 = constant {value = -1} : i32
  %6 = floordiv %4, %5 : i32
  %7 = constant {value = 32} : i32
  %8 = shl %0, %7 : i32
  %9 = constant {value = 1e+30} : f32
  %10 = mul %9, %9 : f32
  %11 = constant {value = 0.0} : f32
  %12 = truediv %11, %11 : f32
  %13 = exp %9 : f32
  %14 = cast %9 : i32
  %15 = constant {value = inf} : f32
  %16 = add %15, %11 : f32
  %17 = cast %9 : f16
  %18 = constant {value = -0.0} : f32
  %19 = maximum %11, %18 : f32
  %20 = sqrt %11 : f32
  %21 = add %x, %11 : f32
  %22 = abs %4 : i32
  %23 = mod %9, %9 : f32
  return
}
'''


def test_fold_constants():
    check(fold_constants, FOLD_IN, FOLD_OUT)


def test_fold_leaves_what_the_device_may_compute_differently():
    check(fold_constants, NO_FOLD, NO_FOLD)


inf, nan = math.inf, math.nan
FOLD_VALUES = {
    "f32": [0.0, -0.0, 1.0, -1.5, 0.1, 7.0, 2.5e9, 1e30, 3.4e38, 1e-45, -inf, nan],
    "f16": [0.0, -0.0, 1.0, -1.5, 0.1, 300.0, 65504.0, 6e-8, inf, nan],
    "bf16": [0.0, -0.0, 1.0, -1.5, 0.1, 3e38, inf, nan],
    "i32": [0, 1, -1, 3, 7, -8, 31, 32, 2**31 - 1, -2**31],
    "u32": [0, 1, 7, 31, 32, 2**32 - 1],
    "i8": [0, 1, -1, 7, 127, -128],
    "i1": [False, True],
}


def _interpreter_runs(op: Operation) -> bool:
    """Some well-typed ops (`not` on a float, `sub` on i1) have no interpreter meaning; skip them."""
    env = {id(v): np.full(v.type.shape, v.owner.attrs["value"]).astype(O.value_dtype(v.type.elem))
           for v in op.operands}
    try:
        with np.errstate(all="ignore"):
            ProgramRunner(KernelIR("probe", [], Block()), [], {}, (1, 1, 1)).run_op(op, env)
        return True
    except TypeError:
        return False


def _every_op_on_constants(dtype: str) -> KernelIR:
    """Each op applied to each pair of constants of `dtype`, each result stored to its own slot.
    Tiles of one element: the stores need tensors of pointers, and constants fold the same way."""
    one = lambda t: TileType((1,), DTYPES[t])   # noqa: E731
    outs = {t: Param(f"out_{t}", Value(TileType((), PointerType(DTYPES[t])), f"out_{t}")) for t in FOLD_VALUES}
    body = Block()
    b = Builder(body)
    consts = [b.op1("constant", [], one(dtype), value=v) for v in FOLD_VALUES[dtype]]
    candidates = [(name, [x, y], one(dtype), {}) for name in sorted(BINARY) for x in consts for y in consts]
    candidates += [("cmp", [x, y], one("i1"), {"pred": p})
                   for p in sorted(CMP_PREDICATES) for x in consts for y in consts]
    candidates += [(name, [x], one(dtype), {}) for name in sorted(UNARY) for x in consts]
    candidates += [(name, [x], one(t), {}) for name in ("cast", "bitcast")
                   for t in FOLD_VALUES if t != dtype for x in consts]
    stored = dict.fromkeys(outs, 0)
    for name, operands, ty, attrs in candidates:
        op = Operation(name, operands, [ty], attrs)
        if check_op(op) is not None or not _interpreter_runs(op):
            continue
        body.ops.append(op)
        out = ty.elem.name
        offset = b.op1("constant", [], one("i32"), value=stored[out])
        ptrs = b.op1("splat", [outs[out].value], TileType((1,), outs[out].value.type.elem))
        b.create("store", [b.op1("addptr", [ptrs, offset], ptrs.type), op.result], [])
        stored[out] += 1
    b.create("return", [], [])
    return KernelIR(f"fold_{dtype}", list(outs.values()), body)


@pytest.mark.parametrize("dtype", sorted(FOLD_VALUES))
def test_folding_matches_the_interpreter_for_every_op(dtype):
    kernel = _every_op_on_constants(dtype)     # built twice rather than parsed: it is large
    n_ops = sum(op.name == "store" for op in kernel.walk())
    inputs = {f"out_{t}": np.zeros(n_ops, DTYPES[t].numpy) for t in FOLD_VALUES}
    before = interpret(kernel, inputs, (1,))
    n_constants = sum(op.name == "constant" for op in kernel.walk())
    folded = fold_constants(_every_op_on_constants(dtype))
    after = interpret(folded, inputs, (1,))
    for name in before:
        assert same_bits(before[name], after[name]), name
    n_folded = sum(op.name == "constant" for op in folded.walk()) - n_constants
    # transcendental functions stay unfolded on purpose (a device's result differs from numpy's
    # in the last bits), so they do not count towards "most ops"
    n_approx = sum(op.name in MATH_UNARY | {"atan2", "exp", "exp2", "log", "log2", "sqrt", "rsqrt", "sin",
                                            "cos", "sigmoid", "tanh", "pow"} for op in kernel.walk())
    assert n_folded > 0.4 * (n_ops - n_approx), "most ops on constants should fold"


CSE_IN = '''kernel @k(%p: ptr<f32>, %n: i32) {
  %0 = constant {value = 1} : i32
  %1 = constant {value = 1} : i32
  %2 = constant {value = 1.0} : f32
  %3 = constant {value = 0.0} : f32
  %4 = constant {value = -0.0} : f32
  %a = add %n, %0 : i32
  %b = add %n, %1 : i32
  %c = add %1, %n : i32
  %5 = load %p : f32
  %6 = load %p : f32
  %7 = cmp %a, %b {pred = "lt"} : i1
  %8 = cmp %a, %b {pred = "le"} : i1
  %9 = if %7 : i32 {
    %10 = add %n, %0 : i32
    %11 = mul %10, %10 : i32
    yield %11
  } {
    %12 = mul %a, %a : i32
    yield %12
  }
  %13 = mul %a, %a : i32
  %14 = program_id {axis = 0} : i32
  %15 = program_id {axis = 0} : i32
  %16 = program_id {axis = 1} : i32
  return
}
'''
# regions reuse what dominates them; what a region computes is not reused after it or
# in its sibling; loads, operand order, -0.0 and differing attributes stay apart
CSE_OUT = '''kernel @k(%p: ptr<f32>, %n: i32) {
  %0 = constant {value = 1} : i32
  %1 = constant {value = 1.0} : f32
  %2 = constant {value = 0.0} : f32
  %3 = constant {value = -0.0} : f32
  %a = add %n, %0 : i32
  %c = add %0, %n : i32
  %4 = load %p : f32
  %5 = load %p : f32
  %6 = cmp %a, %a {pred = "lt"} : i1
  %7 = cmp %a, %a {pred = "le"} : i1
  %8 = if %6 : i32 {
    %9 = mul %a, %a : i32
    yield %9
  } {
    %10 = mul %a, %a : i32
    yield %10
  }
  %11 = mul %a, %a : i32
  %12 = program_id {axis = 0} : i32
  %13 = program_id {axis = 1} : i32
  return
}
'''


def test_cse():
    check(cse, CSE_IN, CSE_OUT)


DCE_IN = '''kernel @k(%p: ptr<f32>, %n: i32) {
  %0 = constant {value = 1} : i32
  %1 = add %n, %0 : i32
  %2 = mul %1, %1 : i32
  %3 = load %p : f32
  %4 = cmp %n, %0 {pred = "lt"} : i1
  %5 = if %4 : i32 {
    %6 = neg %n : i32
    yield %6
  } {
    yield %n
  }
  if %4 {
    %7 = neg %n : i32
    %8 = constant {value = 2.0} : f32
    store %p, %8
    yield
  } {
    yield
  }
  %9 = constant {value = 0} : i32
  %acc = for %9, %n, %0, %9 : i32 {
  ^(%i: i32, %acc_1: i32):
    %10 = add %acc_1, %i : i32
    %11 = mul %10, %i : i32
    yield %10
  }
  %out = for %9, %n, %0, %9 : i32 {
  ^(%j: i32, %out_1: i32):
    %12 = add %out_1, %j : i32
    yield %12
  }
  %13 = cast %out : f32
  store %p, %13
  if %4 {
    return
  } {
    yield
  }
  return
}
'''
# the unused chain %1/%2, the side-effect-free `if` and `for` go; the load, the `if`
# that stores (less its dead `neg`), the used loop and the early return stay
DCE_OUT = '''kernel @k(%p: ptr<f32>, %n: i32) {
  %0 = constant {value = 1} : i32
  %1 = load %p : f32
  %2 = cmp %n, %0 {pred = "lt"} : i1
  if %2 {
    %3 = constant {value = 2.0} : f32
    store %p, %3
    yield
  } {
    yield
  }
  %4 = constant {value = 0} : i32
  %out = for %4, %n, %0, %4 : i32 {
  ^(%j: i32, %out_1: i32):
    %5 = add %out_1, %j : i32
    yield %5
  }
  %6 = cast %out : f32
  store %p, %6
  if %2 {
    return
  } {
    yield
  }
  return
}
'''


def test_dce():
    check(dce, DCE_IN, DCE_OUT)


CANON_IN = '''kernel @k(%p: ptr<f32>, %n: i32, %v: tensor<4xf32>) {
  %0 = constant {value = 0} : i32
  %1 = constant {value = 1} : i32
  %2 = add %n, %0 : i32
  %3 = add %0, %2 : i32
  %4 = mul %3, %1 : i32
  %5 = sub %4, %0 : i32
  %6 = floordiv %5, %1 : i32
  %7 = sub %0, %6 : i32
  %8 = cast %6 : i32
  %9 = constant {value = 0.0} : f32
  %10 = splat %9 : tensor<4xf32>
  %11 = add %v, %10 : tensor<4xf32>
  %12 = broadcast %11 : tensor<4xf32>
  %13 = splat %8 : tensor<4xi32>
  %14 = expand_dims %13 {axis = 1} : tensor<4x1xi32>
  %15 = broadcast %14 : tensor<4x8xi32>
  %16 = expand_dims %v {axis = 0} : tensor<1x4xf32>
  %17 = broadcast %16 : tensor<8x4xf32>
  %18 = broadcast %17 : tensor<8x4xf32>
  %19 = trans %18 : tensor<4x8xf32>
  %20 = trans %19 : tensor<8x4xf32>
  %21 = reshape %20 : tensor<32xf32>
  %22 = reshape %21 : tensor<4x8xf32>
  %23 = expand_dims %10 {axis = 0} : tensor<1x4xf32>
  %24 = cmp %7, %n {pred = "lt"} : i1
  %25 = select %24, %8, %8 : i32
  %26 = constant {value = 1.0} : f32
  %27 = mul %9, %26 : f32
  %28 = constant {value = true} : i1
  %29 = and %24, %28 : i1
  %30 = splat %p : tensor<4xptr<f32>>
  %31 = broadcast %30 : tensor<4xptr<f32>>
  store %31, %12
  return
}
'''
# integer identities vanish (float `+ 0.0`, `* 1.0`, `sub 0, x` and i1 `and` stay);
# splat chains end in one splat, constants absorb shape ops, the expand_dims ->
# broadcast pair on %v stays, trans-of-trans and broadcast-to-itself vanish
CANON_OUT = '''kernel @k(%p: ptr<f32>, %n: i32, %v: tensor<4xf32>) {
  %0 = constant {value = 0} : i32
  %1 = constant {value = 1} : i32
  %2 = sub %0, %n : i32
  %3 = constant {value = 0.0} : f32
  %4 = constant {value = 0.0} : tensor<4xf32>
  %5 = add %v, %4 : tensor<4xf32>
  %6 = splat %n : tensor<4xi32>
  %7 = splat %n : tensor<4x1xi32>
  %8 = splat %n : tensor<4x8xi32>
  %9 = expand_dims %v {axis = 0} : tensor<1x4xf32>
  %10 = broadcast %9 : tensor<8x4xf32>
  %11 = trans %10 : tensor<4x8xf32>
  %12 = reshape %10 : tensor<32xf32>
  %13 = reshape %10 : tensor<4x8xf32>
  %14 = constant {value = 0.0} : tensor<1x4xf32>
  %15 = cmp %2, %n {pred = "lt"} : i1
  %16 = constant {value = 1.0} : f32
  %17 = mul %3, %16 : f32
  %18 = constant {value = true} : i1
  %19 = and %15, %18 : i1
  %20 = splat %p : tensor<4xptr<f32>>
  store %20, %5
  return
}
'''


def test_canonicalize():
    check(canonicalize, CANON_IN, CANON_OUT)


def test_default_pipeline():
    check(run_passes, CANON_IN, '''kernel @k(%p: ptr<f32>, %n: i32, %v: tensor<4xf32>) {
  %0 = constant {value = 0.0} : tensor<4xf32>
  %1 = add %v, %0 : tensor<4xf32>
  %2 = splat %p : tensor<4xptr<f32>>
  store %2, %1
  return
}
''')


def test_run_passes_names_the_pass_that_broke_the_ir():
    def breaker(kernel):
        kernel.body.ops.pop(0)    # drops the definition of a used value
        return kernel
    with pytest.raises(IRVerificationError, match="after pass breaker"):
        run_passes(parse(CSE_IN), [cse, breaker])


def _run_both(kernel_text, inputs, grid, passes=DEFAULT_PASSES):
    before = interpret(parse(kernel_text), inputs, grid)
    optimized = run_passes(parse(kernel_text), passes)
    after = interpret(optimized, inputs, grid)
    for name in before:
        assert same_bits(before[name], after[name]), (name, before[name], after[name])
    return optimized


@pytest.mark.parametrize("name", sorted(SUITE))
def test_suite_kernels_keep_their_results(name):
    text = print_kernel(suite_module(name))
    optimized = _run_both(text, suite_inputs(name), SUITE[name][3])
    out = print_kernel(optimized)
    assert out.count("\n") <= text.count("\n")
    assert print_kernel(parse(out)) == out
    assert print_kernel(run_passes(parse(out))) == out     # the default pipeline reaches a fixpoint


def test_matmul_keeps_its_expand_dims_broadcast_chains():
    out = print_kernel(run_passes(suite_module("matmul")))
    assert "expand_dims %" in out and "broadcast %" in out and "dot %" in out


@SEMANTIC
@given(kernels(), st.integers(0, 2**32 - 1))
def test_random_modules_keep_their_results(kernel, seed):
    _run_both(print_kernel(kernel), random_inputs(seed, kernel.constexprs["BLOCK"]), (2,))


@SEMANTIC
@given(kernels(), st.integers(0, 2**32 - 1),
       st.lists(st.sampled_from([canonicalize, fold_constants, cse, dce]), min_size=1, max_size=6))
def test_any_pass_order_keeps_results(kernel, seed, passes):
    _run_both(print_kernel(kernel), random_inputs(seed, kernel.constexprs["BLOCK"]), (2,), passes)


INVARIANT_CARRY_IN = '''kernel @k(%p: ptr<i32>, %n: i32, %s: i32) {
  %0 = constant {value = 0} : i32
  %1 = constant {value = 1} : i32
  %acc, %stride = for %0, %n, %1, %0, %s : i32, i32 {
  ^(%i: i32, %acc_1: i32, %stride_1: i32):
    %2 = mul %i, %stride_1 : i32
    %3 = add %acc_1, %2 : i32
    yield %3, %stride_1
  }
  %4 = add %acc, %stride : i32
  store %p, %4
  return
}
'''

INVARIANT_CARRY_OUT = '''kernel @k(%p: ptr<i32>, %n: i32, %s: i32) {
  %0 = constant {value = 0} : i32
  %1 = constant {value = 1} : i32
  %acc, %stride = for %0, %n, %1, %0, %s : i32, i32 {
  ^(%i: i32, %acc_1: i32, %stride_1: i32):
    %2 = mul %i, %s : i32
    %3 = add %acc_1, %2 : i32
    yield %3, %s
  }
  %4 = add %acc, %s : i32
  store %p, %4
  return
}
'''


def test_canonicalize_forwards_values_a_loop_yields_back_unchanged():
    """A block pointer's strides ride through loops as carried values the body yields back:
    every use (inside and after the loop) sees the initial value, so the analyses do too."""
    check(canonicalize, INVARIANT_CARRY_IN, INVARIANT_CARRY_OUT)
    inputs = {"p": np.zeros(1, np.int32), "n": 5, "s": 3}
    before = interpret(parse(INVARIANT_CARRY_IN), inputs, (1,))["p"]
    after = interpret(canonicalize(parse(INVARIANT_CARRY_IN)), inputs, (1,))["p"]
    assert before[0] == 3 * (0 + 1 + 2 + 3 + 4) + 3 and same_bits(before, after)
