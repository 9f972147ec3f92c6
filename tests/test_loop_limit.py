"""lavapipe before Mesa 26 stops loops silently after 65535 loop-header visits per invocation
(all loops together): the limit is measured as a device fact, and kernels compiled for a
limited device unroll small loop bodies and give each workgroup one program when they have
loops.  Results are checked against numpy and the interpreter past the limit."""
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ir_strategies import interpret, kernels, random_inputs, same_bits

import spvjit
import spvjit.language as sl
from spvjit import launch, loop_limit
from spvjit.codegen import loop_budget
from spvjit.codegen.compiler import compile_kernel   # conftest's: it passes modules through spirv-val
from spvjit.ir.parser import parse
from spvjit.ir.printer import print_kernel
from spvjit.ir.verifier import verify
from spvjit.runtime import get_device

LIMIT = 65535      # Mesa's LP_MAX_TGSI_LOOP_ITERATIONS


def _expected_limit(caps):
    """65535 on llvmpipe before Mesa 26 (the limiter was removed in 26.x), None elsewhere."""
    m = re.search(r"Mesa (\d+)\.", caps.driver_info)
    if caps.device_type == "cpu" and m and int(m.group(1)) < 26:
        return LIMIT
    return None


def test_probe_measures_the_drivers_limit():
    dev = get_device()
    want = _expected_limit(dev.caps)
    if dev.caps.device_type == "cpu":
        assert loop_limit.measure(dev) == want
    assert loop_limit.loop_iteration_limit(dev) == want


def test_probe_result_is_cached_and_a_damaged_entry_is_measured_again(tmp_path, monkeypatch):
    monkeypatch.setenv("SPVJIT_CACHE_DIR", str(tmp_path))
    dev = get_device()
    if dev.caps.device_type != "cpu":
        pytest.skip("only CPU drivers are probed")
    want = _expected_limit(dev.caps)
    assert loop_limit._cached_or_measured(dev) == want
    name = loop_limit.cache.device_fingerprint(dev.caps)
    assert loop_limit.FACTS.read(name)["loop_iteration_limit"] == want
    # an entry claiming a count the probe cannot produce is not trusted
    loop_limit.FACTS.write(name, {"device": dev.caps.name, "loop_iteration_limit": 1 << 40})
    assert loop_limit._cached_or_measured(dev) == want
    assert loop_limit.FACTS.read(name)["loop_iteration_limit"] == want


@spvjit.kernel
def count_loop(out_ptr, lb, ub, STEP: sl.constexpr):
    c = 0
    s = 0.0
    for i in range(lb, ub, STEP):
        c += 1
        s += (i % 7).to(sl.float32)         # depends on the induction variable of each copy
    sl.store(out_ptr + sl.program_id(0), c)
    sl.store(out_ptr + sl.num_programs(0) + sl.program_id(0), s.to(sl.int32))


def _count_reference(lb, ub, step):
    i = np.arange(lb, ub, step, dtype=np.int64)
    return len(i), int(np.sum(np.fmod(i, 7)))   # C remainder, as in Triton


def _run(kernel, grid, *args, interpret=True, **kw):
    """(device result, interpreter result or None) of one launch; args[0] is the output's length.
    The interpreter runs each iteration in Python: only some cases pay for it."""
    out_d = spvjit.zeros(args[0], np.int32)
    kernel[grid](out_d, *args[1:], **kw)
    if not interpret:
        return out_d.numpy(), None
    out_i = spvjit.zeros(args[0], np.int32)
    spvjit.interpret(kernel)[grid](out_i, *args[1:], **kw)
    return out_d.numpy(), out_i.numpy()


@pytest.mark.parametrize("lb,ub,step", [(0, 100_000, 1), (0, LIMIT, 1), (0, LIMIT + 1, 1),
                                        (-7, 100_003, 1), (3, 250_001, 3), (0, 5, 1), (10, 0, 1)])
def test_long_loop_device_equals_numpy(lb, ub, step):
    dev, _ = _run(count_loop, (2,), 4, lb, ub, STEP=step, interpret=False)
    c, s = _count_reference(lb, ub, step)
    np.testing.assert_array_equal(dev, [c, c, s, s])


def test_100000_iterations_device_equals_interpreter_and_numpy():
    dev, interp = _run(count_loop, (1,), 2, 0, 100_000, STEP=1)
    np.testing.assert_array_equal(dev, _count_reference(0, 100_000, 1))
    np.testing.assert_array_equal(interp, dev)


def test_loop_ending_near_int32_max_does_not_overflow():
    lb, ub = 2**31 - 100_000, 2**31 - 1
    dev, _ = _run(count_loop, (1,), 2, lb, ub, STEP=1, interpret=False)
    np.testing.assert_array_equal(dev, _count_reference(lb, ub, 1))


@spvjit.kernel
def nested_loops(out_ptr, n_outer, n_inner):
    c = 0
    for i in range(0, n_outer):
        for j in range(0, n_inner):
            c += 1
    sl.store(out_ptr, c)


@pytest.mark.parametrize("outer,inner", [(4, 30_000), (300, 300)])
def test_nested_loops_past_the_limit(outer, inner):
    # measured on Mesa 22.3 without the budget: 65531 and 65235 (every header counts)
    dev, _ = _run(nested_loops, (1,), 1, outer, inner, interpret=False)
    assert dev[0] == outer * inner


@spvjit.kernel
def row_sum(x_ptr, out_ptr, n_cols, BLOCK: sl.constexpr):
    row = sl.program_id(0)
    acc = sl.zeros((BLOCK,), sl.float32)
    for k in range(0, n_cols, BLOCK):
        offs = k + sl.arange(0, BLOCK)
        acc += sl.load(x_ptr + row * n_cols + offs, mask=offs < n_cols, other=0.0)
    sl.store(out_ptr + row, sl.sum(acc, 0))


def test_row_sum_8192x4096_of_ones():
    # 256 programs per workgroup x 257 header visits of the K loop used to overflow the
    # budget and leave 64 rows at 0; sums of ones are exact in f32
    rows, cols = 8192, 4096
    x = spvjit.tensor(np.ones((rows, cols), np.float32))
    out = spvjit.zeros(rows)
    row_sum[(rows,)](x, out, cols, BLOCK=16)
    np.testing.assert_array_equal(out.numpy(), np.full(rows, cols, np.float32))


@spvjit.kernel
def pid_loop(out_ptr, trips):
    pid = sl.program_id(0)
    c = 0
    for i in range(0, trips):
        c += 1
    sl.store(out_ptr + pid, pid + c)


@spvjit.kernel
def pid_only(out_ptr):
    pid = sl.program_id(0)
    sl.store(out_ptr + pid, pid * 3)


def test_grid_past_workgroup_count_times_programs_per_workgroup(monkeypatch):
    dev = get_device()
    per_wg = 4
    monkeypatch.setenv("SPVJIT_PROGRAMS_PER_WORKGROUP", str(per_wg))
    monkeypatch.setattr(launch, "_HOST_CPUS", 1)      # so the grid asks for the most per workgroup
    n = dev.caps.max_workgroup_count[0] * per_wg + 37  # more than one dispatch holds
    out = spvjit.zeros(n, np.int32)
    pid_only[(n,)](out)
    np.testing.assert_array_equal(out.numpy(), np.arange(n, dtype=np.int64) * 3)
    out = spvjit.zeros(n, np.int32)
    pid_loop[(n,)](out, 3)      # a loop with a runtime bound: one program per workgroup
    np.testing.assert_array_equal(out.numpy(), np.arange(n) + 3)


@spvjit.kernel
def wide_body(x_ptr, out_ptr, trips, BLOCK: sl.constexpr):
    offs = sl.arange(0, BLOCK)
    acc = sl.zeros((BLOCK,), sl.float32)
    x = sl.load(x_ptr + offs)
    for i in range(0, trips):
        acc = acc * 0.5 + x * x + 1.0      # tiles of 8192 elements: far too big to copy
    sl.store(out_ptr + offs, acc)


def test_body_too_big_to_unroll_is_left_alone_and_still_right():
    B = 8192
    k = wide_body.ir_module(spvjit.zeros(B), spvjit.zeros(B), 10, BLOCK=B)
    loops = [op for op in loop_budget.unroll_for_budget(k).walk() if op.name == "for"]
    assert len(loops) == 1
    x = np.linspace(-1, 1, B, dtype=np.float32)
    out = spvjit.zeros(B)
    wide_body[(1,)](spvjit.tensor(x), out, 40, BLOCK=B)
    ref = np.zeros(B, np.float32)
    for _ in range(40):
        ref = ref * np.float32(0.5) + x * x + np.float32(1.0)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-6)   # same f32 ops in the same order


def test_unrolled_ir_verifies_and_copies_the_body():
    k = count_loop.ir_module(spvjit.zeros(4, np.int32), 0, 10, STEP=1)
    k = loop_budget.unroll_for_budget(k)
    verify(k)
    loops = [op for op in k.body.ops if op.name == "for"]
    assert len(loops) == 2                                    # main loop, then the remainder
    main, rest = loops
    step = main.operands[2].owner.attrs["value"]
    assert step in loop_budget.FACTORS
    adds_in_main = sum(op.name == "add" for op in main.regions[0].ops)
    adds_in_rest = sum(op.name == "add" for op in rest.regions[0].ops)
    assert adds_in_main >= step * adds_in_rest
    assert rest.operands[0] is main.results[-1]               # the remainder starts where main stopped


def test_header_visits_bound():
    k = nested_loops.ir_module(spvjit.zeros(1, np.int32), 4, 5)
    assert loop_budget.header_visits(k) is None               # runtime trip counts
    k = parse("""
kernel @k(%out_ptr: ptr<i32>) {
  %0 = constant {value = 0} : i32
  %1 = constant {value = 1} : i32
  %2 = constant {value = 4} : i32
  %3 = constant {value = 30} : i32
  %c = for %0, %2, %1, %0 : i32 {
  ^(%i: i32, %c_1: i32):
    %d = for %0, %3, %1, %c_1 : i32 {
    ^(%j: i32, %d_1: i32):
      %4 = add %d_1, %1 : i32
      yield %4
    }
    yield %d
  }
  store %out_ptr, %c
  return
}
""")
    assert loop_budget.header_visits(k) == 5 + 4 * 31


def _limited():
    if loop_limit.loop_iteration_limit(get_device()) is None:
        pytest.skip("this driver has no loop limit")


def test_loop_cut_by_the_driver_is_an_error_not_a_wrong_result():
    _limited()
    # 70000 outer trips, each visiting the inner loop's header 3 times: 21845 of them would run
    # (n_inner = 2, not 1: an argument equal to 1 compiles as a constant, and the driver then
    # removes the one-trip inner loop)
    out = spvjit.zeros(1, np.int32)
    with pytest.raises(spvjit.DeviceError, match=r"nested_loops: .* stopped one of its loops early.*65535"):
        nested_loops[(1,)](out, 70_000, 2)
    nested_loops[(1,)](out, 70, 1000)       # the status word was reset: the next launch is fine
    assert out.numpy()[0] == 70_000


def test_body_too_big_to_unroll_past_the_limit_is_refused_in_batches_and_graphs():
    _limited()
    B = 2048            # 16 registers per op in a workgroup of 128: not unrolled
    x, out = spvjit.tensor(np.ones(B, np.float32)), spvjit.zeros(B)
    with pytest.raises(spvjit.DeviceError, match="wide_body"):
        with spvjit.batch():
            wide_body[(1,)](x, out, LIMIT + 10, BLOCK=B)
    with spvjit.record() as graph:
        wide_body[(1,)](x, out, LIMIT + 10, BLOCK=B)
    with pytest.raises(spvjit.DeviceError, match="wide_body"):
        graph.replay()
    graph.close()


@spvjit.kernel
def fixed_loop(out_ptr):
    c = 0
    for i in range(0, 1000):
        c += i
    sl.store(out_ptr + sl.program_id(0), c)


@spvjit.kernel
def pid_trips(out_ptr):
    pid = sl.program_id(0)
    c = 0
    for i in range(0, pid * 1000):
        c += 1
    sl.store(out_ptr + pid, c)


def test_program_loop_only_where_the_budget_holds_it():
    from spvjit.codegen.target import Target
    limited = Target(device_type="cpu", subgroup_size=8, loop_iteration_limit=LIMIT)
    out = spvjit.zeros(4, np.int32)
    # 1000 constant trips unrolled: 63 + 9 header visits, 256 programs of them fit in 65535
    k = loop_budget.unroll_for_budget(fixed_loop.ir_module(out))
    assert loop_budget.header_visits(k) == 63 + 9
    assert compile_kernel(fixed_loop.ir_module(out), limited).program_loop
    assert compile_kernel(pid_only.ir_module(out), limited).program_loop
    # trips from an argument: the launcher picks how many programs fit (budget_programs)
    assert compile_kernel(pid_loop.ir_module(out, 3), limited).program_loop
    # trips from the program id: one program per workgroup
    assert not compile_kernel(pid_trips.ir_module(out), limited).program_loop
    assert compile_kernel(pid_trips.ir_module(out), Target(device_type="cpu", subgroup_size=8)).program_loop
    d = spvjit.zeros(4, np.int32)
    fixed_loop[(4,)](d)
    np.testing.assert_array_equal(d.numpy(), [sum(range(1000))] * 4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kernels(), st.integers(0, 2**32 - 1), st.sampled_from([2, 3]))
def test_unrolling_random_modules_keeps_their_results(kernel, seed, factor):
    """The interpreter runs a random module before and after unrolling with a factor of 2 or 3
    (their loops have 0-3 trips: the main loop runs 0 or 1 times, the remainder the rest)."""
    inputs = random_inputs(seed, kernel.constexprs["BLOCK"])
    before = interpret(parse(print_kernel(kernel)), inputs, (2,))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop_budget, "SHORT_LOOP", 0)
        mp.setattr(loop_budget, "FACTORS", (factor,))
        mp.setattr(loop_budget, "OPS_BUDGET", 10**6)
        unrolled = loop_budget.unroll_for_budget(parse(print_kernel(kernel)))
    verify(unrolled)
    after = interpret(unrolled, inputs, (2,))
    for name in before:
        assert same_bits(before[name], after[name]), (name, before[name], after[name])


@pytest.mark.parametrize("factor", [2, 3, 16])
@pytest.mark.parametrize("step", [1, 2, 3])
def test_unrolled_loop_runs_every_trip_with_its_own_induction_variable(factor, step):
    """Interpreter before and after unrolling, for every trip count around the factor."""
    kernel = count_loop.ir_module(spvjit.zeros(2, np.int32), 0, 7, STEP=step)   # ub = 7: an argument equal to 1 would compile as a constant
    text = print_kernel(kernel)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop_budget, "FACTORS", (factor,))
        mp.setattr(loop_budget, "OPS_BUDGET", 10**6)
        unrolled = loop_budget.unroll_for_budget(parse(text))
    verify(unrolled)
    assert sum(op.name == "for" for op in unrolled.body.ops) == 2
    for lb in (-5, 0, 3):
        for ub in range(lb - 2, lb + 3 * factor * step + 2):
            inputs = {"out_ptr": np.zeros(2, np.int32), "lb": lb, "ub": ub}
            want = interpret(parse(text), inputs, (1,))["out_ptr"]
            np.testing.assert_array_equal(want, _count_reference(lb, ub, step))
            np.testing.assert_array_equal(interpret(unrolled, inputs, (1,))["out_ptr"], want)


def test_header_visits_follow_the_arguments_through_the_unrolled_loops():
    k = loop_budget.unroll_for_budget(count_loop.ir_module(spvjit.zeros(2, np.int32), 0, 7, STEP=1))
    main = next(op for op in k.body.ops if op.name == "for")
    u = main.operands[2].owner.attrs["value"]
    for lb, ub in [(0, 100_000), (-7, 100_003), (5, 3), (0, u - 1)]:
        n = max(0, ub - lb)
        want = (n // u + 1) + (n % u + 1)          # main loop, then the remainder
        assert loop_budget.header_visits(k, {"lb": lb, "ub": ub}) == want
    assert loop_budget.header_visits(k) is None


def test_programs_per_workgroup_shrink_to_fit_the_budget():
    # 2048 programs of 30000 trips: 1877 header visits each after unrolling, so 34 programs
    # fit a workgroup where the grid alone would give 128; results and no DeviceError show it
    _limited()
    n = 2048
    out = spvjit.zeros(n, np.int32)
    pid_loop[(n,)](out, 30_000)
    np.testing.assert_array_equal(out.numpy(), np.arange(n) + 30_000)
    out = spvjit.zeros(n, np.int32)
    pid_trips[(40,)](out)                    # trips from program ids: up to 39000, one per workgroup
    np.testing.assert_array_equal(out.numpy()[:40], np.arange(40) * 1000)


@spvjit.kernel
def staged_dot_loop(a_ptr, x_ptr, o_ptr, trips):
    """A dot staged through shared memory (B = trans(x): no register-block plan) inside a
    runtime loop: its own loop over k costs K + 1 header visits per trip."""
    r = sl.arange(0, 16)
    a = sl.load(a_ptr + r[:, None] * 16 + r[None, :])
    x = sl.load(x_ptr + r[:, None] * 16 + r[None, :])
    acc = sl.zeros((16, 16), dtype=sl.float32)
    for _ in range(0, trips):
        acc = sl.dot(a, sl.trans(x), acc)
    sl.store(o_ptr + sl.program_id(0) * 256 + r[:, None] * 16 + r[None, :], acc)


def test_a_staged_dots_loop_counts_against_the_budget():
    """500 trips x (1 + 17) visits per program: the launch runs few enough programs per
    workgroup to stay under the limit (counting only the outer loop, it ran 256 per
    workgroup, the driver cut the loops, and the launch failed)."""
    rng = np.random.default_rng(3)
    a, x = (rng.random((16, 16), np.float32) / 16 for _ in range(2))
    o = spvjit.zeros((512, 16, 16), np.float32)
    staged_dot_loop[(512,)](spvjit.tensor(a), spvjit.tensor(x), o, 500)
    # 500 sums of 16 products in [0, 1/256): ~16 with f32 rounding error well under 1e-3
    want = 500 * (a.astype(np.float64) @ x.T.astype(np.float64))
    np.testing.assert_allclose(o.numpy(), np.broadcast_to(want, (512, 16, 16)), rtol=1e-4)
