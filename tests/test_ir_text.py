"""The IR's text form: print -> parse -> print is the identity, and bad text
gives an IRParseError that points at the offending line."""
from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ir_strategies import SUITE, interpret, kernels, same_bits, suite_inputs, suite_module
from spvjit.ir import IRParseError, Loc, TileType, parse, parse_type, print_kernel
from spvjit.ir.types import PointerType, f16, f32, i1

FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("name", sorted(SUITE))
@pytest.mark.parametrize("locs", [False, True])
def test_suite_kernels_round_trip(name, locs):
    kernel = suite_module(name)
    text = print_kernel(kernel, locs=locs)
    assert print_kernel(parse(text), locs=locs) == text
    if locs:
        assert "loc(" in text and print_kernel(parse(text)) == print_kernel(kernel)


@pytest.mark.parametrize("name", sorted(SUITE))
def test_parsed_kernel_runs_like_the_original(name):
    kernel = suite_module(name)
    grid = SUITE[name][3]
    want = interpret(kernel, suite_inputs(name), grid)
    got = interpret(parse(print_kernel(kernel)), suite_inputs(name), grid)
    assert want.keys() == got.keys() and all(same_bits(want[k], got[k]) for k in want)


@FAST
@given(kernels(), st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=3), st.data())
def test_random_modules_round_trip(kernel, files, data):
    text = print_kernel(kernel)
    assert print_kernel(parse(text)) == text
    # locations with awkward file names ("a\"b", backslashes, newlines) must survive too
    for op in kernel.walk():
        if data.draw(st.booleans()):
            op.loc = Loc(data.draw(st.sampled_from(files)), data.draw(st.integers(1, 999)),
                         data.draw(st.integers(0, 99)))
    text = print_kernel(kernel, locs=True)
    parsed = parse(text)
    assert print_kernel(parsed, locs=True) == text
    assert [op.loc for op in parsed.walk()] == [op.loc for op in kernel.walk()]


def test_types():
    assert parse_type("f32") == TileType((), f32)
    assert parse_type("ptr<f16>") == TileType((), PointerType(f16))
    assert parse_type("tensor<16x16xf32>") == TileType((16, 16), f32)
    assert parse_type("tensor<1024xptr<f32>>") == TileType((1024,), PointerType(f32))
    assert parse_type("tensor<2x1x4xi1>") == TileType((2, 1, 4), i1)
    for bad in ("f31", "ptr<q8>", "tensor<0xf32>"):
        with pytest.raises(ValueError):
            parse_type(bad)


ATTRS = '''kernel @k(%p: ptr<f32>, %n: i32) constexprs {ACT = "a\\"b\\\\c\\nd", BLOCK = 16, EPS = 1e-05, FLAG = true} {
  %0 = constant {value = 0.1} : f32
  %1 = constant {value = -0.0} : f32
  %2 = constant {value = inf} : f32
  %3 = constant {value = -inf} : f32
  %4 = constant {value = nan} : f32
  %5 = constant {value = 1e+30} : tensor<4x2xf32>
  %6 = constant {value = -2147483648} : i32
  %7 = constant {value = false} : i1
  %8 = cmp %6, %n {pred = "lt"} : i1
  return
}
'''


def test_attribute_values():
    kernel = parse(ATTRS)
    assert print_kernel(kernel) == ATTRS
    assert kernel.constexprs == {"ACT": 'a"b\\c\nd', "BLOCK": 16, "EPS": 1e-05, "FLAG": True}
    values = [op.attrs["value"] for op in kernel.walk() if op.name == "constant"]
    assert values[0] == 0.1 and math.copysign(1, values[1]) == -1 and values[2:4] == [math.inf, -math.inf]
    assert math.isnan(values[4]) and values[5] == 1e30 and values[6] == -2**31 and values[7] is False
    assert [type(v) for v in values] == [float] * 6 + [int, bool]


def test_names_become_hints():
    text = ('kernel @k(%x: ptr<f32>, %7: i32) {\n  %acc = program_id {axis = 0} : i32\n'
            '  %12 = add %acc, %7 : i32\n  %acc_1 = add %12, %12 : i32\n  return\n}\n')
    kernel = parse(text)
    assert [p.name for p in kernel.params] == ["x", "7"]
    assert [p.value.hint for p in kernel.params] == ["x", None]
    assert [op.results[0].hint for op in kernel.body.ops[:3]] == ["acc", None, "acc_1"]
    # numeric names are renumbered in definition order; hints stay
    assert print_kernel(kernel) == text.replace("%7", "%0").replace("%12", "%1")


def test_regions_and_block_args():
    text = '''kernel @k(%n: i32) {
  %0 = constant {value = 0} : i32
  %1 = constant {value = 1} : i32
  %s = for %0, %n, %1, %0 : i32 {
  ^(%i: i32, %s_1: i32):
    %2 = cmp %i, %n {pred = "lt"} : i1
    %3, %4 = if %2 : i32, i1 {
      yield %i, %2
    } {
      yield %s_1, %2
    }
    yield %3
  }
  return
}
'''
    kernel = parse(text)
    assert print_kernel(kernel) == text
    loop = kernel.body.ops[2]
    assert [a.hint for a in loop.regions[0].args] == ["i", "s_1"]
    assert loop.regions[0].args[0].owner is loop.regions[0]
    branch = loop.regions[0].ops[1]
    assert len(branch.regions) == 2 and len(branch.results) == 2
    assert branch.regions[1].ops[0].operands == [loop.regions[0].args[1], loop.regions[0].ops[0].result]


def test_blank_lines_and_comments():
    text = "\n// a comment\nkernel @k() {   \n\n  // nothing here\n  return  // done\n}"
    assert print_kernel(parse(text)) == "kernel @k() {\n  return\n}\n"


HEAD = "kernel @k(%p: ptr<f32>, %n: i32) {\n"
ERRORS = [
    ("  %0 = add %n, %m : i32\n", 2, 16, "undefined value %m"),
    ("  %n = neg %n : i32\n", 2, 3, "value %n is defined twice"),
    ("  %0 = add %n : i32\n", 2, 3, "'add' takes 2 operands, got 1"),
    ("  %0 = add %n, %n : f32\n", 2, 3, "'add' operands and result must have one type"),
    ("  %0 = frobnicate %n : i32\n", 2, 8, "unknown op 'frobnicate'"),
    ("  %0 = add %n, %n : i32 i32\n", 2, 25, "syntax error: unexpected 'i32'"),
    ("  %0 = add %n, %n : f31\n", 2, 21, "bad type 'f31': unknown element type 'f31'"),
    ("  %0, %1 = add %n, %n : i32\n", 2, 3, "'add' names 2 results but gives 1 result types"),
    ("  %0 = exp %n : i32\n", 2, 3, "'exp' needs a float operand"),
    ("  yield\n", 2, 3, "'yield' outside a region"),
    ("  return\n  %0 = neg %n : i32\n", 2, 3, "'return' must be the last op of its block"),
    ("  %0 = load %p, %n : f32\n", 2, 3, "'load' mask must be i1"),
    ('  %0 = cmp %n, %n {pred = "lt", pred = "gt"} : i1\n', 2, 33, "attribute 'pred' given twice"),
    ("  %0 = constant {value = 1} : i32\n  %1 = for %0, %n, %0 : i32 {\n  ^(%i: i32):\n    yield\n  }\n",
     3, 3, "'for' region arguments and results must match"),
    ("  %c = cmp %n, %n {pred = \"lt\"} : i1\n  if %c {\n    %0 = neg %n : i32\n    yield\n  } {\n    yield\n  }\n"
     "  %1 = neg %0 : i32\n", 9, 12, "value %0 is not in scope here"),
    ("  %0 = neg %n : i32", 2, 20, "unexpected end of input"),
    ("  %0 = neg %n : i32 $\n", 2, 21, "unexpected character '$'"),
]


@pytest.mark.parametrize("body, line, col, message", ERRORS, ids=[e[3][:30] for e in ERRORS])
def test_parse_errors(body, line, col, message):
    text = HEAD + body + ("  return\n}\n" if body.endswith("\n") else "")
    with pytest.raises(IRParseError) as info:
        parse(text)
    err = info.value
    assert isinstance(err, ValueError)
    assert message in err.message
    assert (err.line, err.column) == (line, col), str(err)
    assert str(err).startswith(f"{line}:{col}: ")
    assert err.source_line == text.splitlines()[line - 1]


def test_error_shows_the_line_with_a_caret():
    with pytest.raises(IRParseError) as info:
        parse(HEAD + "  %0 = add %n, %oops : i32\n  return\n}\n")
    assert str(info.value) == ("2:16: undefined value %oops\n"
                               "    %0 = add %n, %oops : i32\n"
                               "                 ^")
