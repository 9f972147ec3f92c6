"""`while` loops in kernels: a scalar runtime condition and loop-carried names, as in Triton.

Checked against numpy on the device and in the interpreter; the IR's text form round-trips;
misuse (break, continue, an always-true condition, a tensor condition) is one clear error
naming the line; on drivers that stop long loops silently (lavapipe before Mesa 26) a cut
`while` is a DeviceError, never a wrong result."""
import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit import loop_limit
from spvjit.errors import CompilationError
from spvjit.ir import parse, print_kernel
from spvjit.runtime import get_device

MODES = ["device", "interpreter"]


def _k(kernel, mode):
    return spvjit.interpret(kernel) if mode == "interpreter" else kernel


@spvjit.kernel
def collatz_steps(X, Z, BLOCK: sl.constexpr):
    """Steps of the Collatz sequence from each program's start value: a trip count that
    differs per program and is known only at run time."""
    pid = sl.program_id(0)
    n = sl.load(X + pid)
    steps = 0
    trace = sl.zeros((BLOCK,), sl.int32)
    while n != 1:
        n = sl.where(n % 2 == 0, n // 2, 3 * n + 1)
        trace += sl.where(sl.arange(0, BLOCK) == steps % BLOCK, n, 0)
        steps += 1
    sl.store(Z + pid, steps)
    sl.store(Z + sl.num_programs(0) + pid * BLOCK + sl.arange(0, BLOCK), trace)


def _collatz_reference(starts, block):
    steps, traces = [], []
    for n in starts:
        trace, s = np.zeros(block, np.int64), 0
        while n != 1:
            n = n // 2 if n % 2 == 0 else 3 * n + 1
            trace[s % block] += n
            s += 1
        steps.append(s)
        traces.append(trace)
    return np.concatenate([steps, np.concatenate(traces)]).astype(np.int32)


@pytest.mark.parametrize("mode", MODES)
def test_runtime_trip_counts_match_numpy(mode):
    starts = np.array([1, 2, 3, 6, 7, 27, 97, 871], np.int32)
    block = 16
    z = spvjit.zeros(len(starts) * (block + 1), np.int32)
    _k(collatz_steps, mode)[(len(starts),)](spvjit.tensor(starts), z, BLOCK=block)
    np.testing.assert_array_equal(z.numpy(), _collatz_reference(starts, block))


@spvjit.kernel
def pointer_walk(X, Z, n, BLOCK: sl.constexpr):
    """A carried pointer tile and a float accumulator, the loop nested in a `for`."""
    offs = sl.arange(0, BLOCK)
    total = sl.zeros((BLOCK,), sl.float32)
    for rep in range(0, 2):
        p = X + offs
        i = 0
        while i < n:
            total += sl.load(p) * (rep + 1)
            p += BLOCK
            i += 1
    sl.store(Z + offs, total)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n", [0, 1, 5])
def test_carried_pointer_and_nesting(mode, n):
    block = 32
    x = np.random.RandomState(n).standard_normal(block * 5).astype(np.float32)
    z = spvjit.zeros(block)
    _k(pointer_walk, mode)[(1,)](spvjit.tensor(x), z, n, BLOCK=block)
    want = 3 * x.reshape(5, block)[:n].sum(axis=0)
    # the same f32 additions in a different association: a few ulps of the sum's magnitude
    np.testing.assert_allclose(z.numpy(), want, rtol=1e-5, atol=1e-5)


@spvjit.kernel
def while_in_ir(X, n):
    i = 0
    s = 0.0
    while i * 2 < n:
        s += 1.5
        i += 1
    sl.store(X, s)


def test_ir_text_round_trip_and_interpretation():
    text = while_in_ir.ir(spvjit.zeros(1), 7)
    assert "= while " in text and print_kernel(parse(text)) == text
    out = spvjit.zeros(1)
    spvjit.interpret(while_in_ir)[(1,)](out, 7)
    assert out.numpy()[0] == 4 * 1.5


def test_ir_parser_checks_the_condition_region():
    good = while_in_ir.ir(spvjit.zeros(1), 7)
    cond_yield = next(line for line in good.splitlines() if line.strip().startswith("yield %")
                      and "," not in line)
    bad = good.replace(cond_yield, cond_yield.split("yield")[0] + "yield")
    with pytest.raises(ValueError, match="condition region must end in `yield` of one i1 scalar"):
        parse(bad)


def _compile_error(src_fn, *args, match):
    with pytest.raises(CompilationError, match=match) as e:
        src_fn[(1,)](*args)
    return str(e.value)


@spvjit.kernel
def uses_break(X, n):
    i = 0
    while i < n:
        i += 1
        if i == 3:
            break
    sl.store(X, i)


@spvjit.kernel
def uses_continue(X, n):
    i = 0
    while i < n:
        i += 1
        continue
    sl.store(X, i)


@spvjit.kernel
def always_true(X, n):
    i = 0
    while True:
        i += 1
    sl.store(X, i)


@spvjit.kernel
def tensor_condition(X):
    v = sl.load(X + sl.arange(0, 4))
    while v < 3:
        v += 1
    sl.store(X + sl.arange(0, 4), v)


@spvjit.kernel
def changes_type(X, n):
    i = 0
    while i < n:
        i = i + 0.5
    sl.store(X, i)


@pytest.mark.parametrize("kernel, line, match", [
    (uses_break, "break", r"`break` \(as in Triton; carry a flag into the loop's condition instead\) is not supported"),
    (uses_continue, "continue", r"`continue` .* is not supported"),
    (always_true, "while True:", "always true and kernels have no `break`"),
    (tensor_condition, "while v < 3:", r"`while` on a tensor: a condition must be a scalar"),
    (changes_type, "while i < n:", r"loop-carried value 'i' changes type from i32 to .*f32"),
])
def test_misuse_is_one_clear_error_naming_the_line(kernel, line, match):
    x = spvjit.zeros(4, np.int32)
    args = (x,) if kernel is tensor_condition else (x, 5)
    msg = _compile_error(kernel, *args, match=match)
    assert "test_while_loops.py:" in msg and line in msg


def _limited():
    if loop_limit.loop_iteration_limit(get_device()) is None:
        pytest.skip("this driver has no loop limit")


@spvjit.kernel
def count_to(Z, n):
    i = 0
    while i < n:
        i += 1
    sl.store(Z, i)


def test_long_while_is_an_error_on_a_loop_limited_driver():
    _limited()
    z = spvjit.zeros(1, np.int32)
    count_to[(1,)](z, 60_000)
    assert z.numpy()[0] == 60_000
    with pytest.raises(spvjit.DeviceError, match=r"count_to: .* stopped one of its loops early"):
        count_to[(1,)](z, 100_000)
    count_to[(1,)](z, 10)                  # the status word was reset
    assert z.numpy()[0] == 10


@spvjit.kernel
def spin_on_atomic(L, Z):
    i = 0
    while sl.atomic_add(L, 1) < 5:
        i += 1
    sl.store(Z, i)


def test_condition_with_a_side_effect():
    lock, z = spvjit.zeros(1, np.int32), spvjit.zeros(1, np.int32)
    if loop_limit.loop_iteration_limit(get_device()) is not None:
        # the exit check evaluates the condition again, which an atomic forbids
        _compile_error(spin_on_atomic, lock, z, match=r"test_while_loops.py:\d+.*condition has a side effect")
    else:
        spin_on_atomic[(1,)](lock, z)
        assert z.numpy()[0] == 5 and lock.numpy()[0] == 6
    lock, z = spvjit.zeros(1, np.int32), spvjit.zeros(1, np.int32)
    spvjit.interpret(spin_on_atomic)[(1,)](lock, z)
    assert z.numpy()[0] == 5 and lock.numpy()[0] == 6
