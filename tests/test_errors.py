"""Each user error raises the documented exception with a useful message.

Compile errors are `spvjit.CompilationError`, and their message names the
kernel's `file:line` and quotes the offending source line (the frontend runs
before either back end, so the device and the interpreter report the same).
Launch errors are `spvjit.LaunchError` (a TypeError).  A missing Vulkan driver
is `spvjit.DeviceError`, with a one-line message, never a crash.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import spvjit
import spvjit.language as sl

MODES = ["device", "interpreter"]
THIS_FILE = os.path.abspath(__file__)
NOT_A_CONSTEXPR = 5           # a plain global: kernels may not read it


def _line_of(marker: str) -> tuple[int, str]:
    """(line number, text) of the one line of this file that ends with `# <marker>`."""
    with open(THIS_FILE) as f:
        hits = [(i + 1, line) for i, line in enumerate(f) if line.rstrip().endswith(f"# {marker}")]
    assert len(hits) == 1, marker
    return hits[0]


def expect_compile_error(kernel, marker, mode, *args, match: str, grid=(1,), **kwargs):
    line, text = _line_of(marker)
    k = spvjit.interpret(kernel) if mode == "interpreter" else kernel
    with pytest.raises(spvjit.CompilationError) as info:
        k[grid](*args, **kwargs)
    msg = str(info.value)
    assert f"{THIS_FILE}:{line}:" in msg, msg            # file:line of the kernel line
    assert text.strip() in msg, msg                      # the quoted source line
    assert match in msg, msg
    assert info.value.line == line
    return msg


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


@pytest.fixture
def buf():
    return spvjit.zeros(64, np.float32)


# ---- compile errors ---------------------------------------------------------------------
@spvjit.kernel
def undefined_name_kernel(x_ptr):
    offs = sl.arange(0, 16)
    sl.store(x_ptr + offz, 1.0)  # E-undefined


def test_undefined_name(mode, buf):
    msg = expect_compile_error(undefined_name_kernel, "E-undefined", mode, buf, match="name 'offz' is not defined")
    assert "^" in msg                                    # and a caret under the column


@spvjit.kernel
def try_kernel(x_ptr):
    try:  # E-try
        sl.store(x_ptr, 1.0)
    except Exception:
        pass


@spvjit.kernel
def with_kernel(x_ptr):
    with open("f"):  # E-with
        sl.store(x_ptr, 1.0)


@spvjit.kernel
def break_kernel(x_ptr, n):
    i = 0
    while i < n:
        i += 1
        break  # E-break


@pytest.mark.parametrize("kernel,marker,what", [(try_kernel, "E-try", "`try`"),
                                                (with_kernel, "E-with", "`with`"),
                                                (break_kernel, "E-break", "`break`")])
def test_unsupported_statements(mode, buf, kernel, marker, what):
    args = (buf, 3) if kernel is break_kernel else (buf,)
    expect_compile_error(kernel, marker, mode, *args, match=f"{what}")
    expect_compile_error(kernel, marker, mode, *args, match="not supported")


@spvjit.kernel
def listcomp_kernel(x_ptr):
    vals = [i * 2 for i in range(4)]  # E-listcomp
    sl.store(x_ptr, vals[0])


def test_list_comprehension(mode, buf):
    expect_compile_error(listcomp_kernel, "E-listcomp", mode, buf, match="list comprehensions are not supported")


@spvjit.kernel
def shape_mismatch_kernel(x_ptr):
    a = sl.arange(0, 16)
    b = sl.arange(0, 32)
    c = a + b  # E-shape
    sl.store(x_ptr + c, 1.0)


def test_shape_mismatch_in_binary_op(mode, buf):
    expect_compile_error(shape_mismatch_kernel, "E-shape", mode, buf, match="cannot be broadcast")


@spvjit.kernel
def arange_runtime_kernel(x_ptr, n):
    offs = sl.arange(0, n)  # E-arange-runtime
    sl.store(x_ptr + offs, 1.0)


@spvjit.kernel
def arange_pow2_kernel(x_ptr, N: sl.constexpr):
    offs = sl.arange(0, N)  # E-arange-pow2
    sl.store(x_ptr + offs, 1.0)


def test_arange_bounds(mode, buf):
    expect_compile_error(arange_runtime_kernel, "E-arange-runtime", mode, buf, 16, match="constexpr")
    expect_compile_error(arange_pow2_kernel, "E-arange-pow2", mode, buf, 10, match="power of two")
    expect_compile_error(arange_pow2_kernel, "E-arange-pow2", mode, buf, N=10, match="got 10 - 0 = 10")


@spvjit.kernel
def store_dtype_kernel(x_ptr):
    offs = sl.arange(0, 16)
    sl.store(x_ptr + offs, x_ptr + offs)  # E-store-dtype


def test_store_of_a_pointer_value(mode, buf):
    # values of any dtype convert to the pointee type (Triton's store); pointers do not
    expect_compile_error(store_dtype_kernel, "E-store-dtype", mode, buf, match="store of a pointer value")


@spvjit.kernel
def loop_type_kernel(x_ptr, n):
    acc = sl.zeros((16,), sl.float32)
    for i in range(n):  # E-loop-type
        acc = acc.to(sl.float16) + 1
    sl.store(x_ptr + sl.arange(0, 16), acc)


@spvjit.kernel
def loop_scalar_type_kernel(x_ptr, n):
    total = 0
    for i in range(n):  # E-loop-scalar
        total = total + 0.5
    sl.store(x_ptr, total)


def test_loop_carried_type_change(mode, buf):
    expect_compile_error(loop_type_kernel, "E-loop-type", mode, buf, 3, match="loop-carried value 'acc'")
    expect_compile_error(loop_scalar_type_kernel, "E-loop-scalar", mode, buf, 3,
                         match="loop-carried value 'total' changes type from i32 to f32")


@spvjit.kernel
def loop_constant_type_kernel(x_ptr, n):
    acc = 0
    for i in range(n):  # E-loop-constant
        acc = 2.5
    sl.store(x_ptr, acc)


@spvjit.kernel
def augassign_shape_kernel(x_ptr):
    acc = sl.zeros((16,), sl.float32)
    acc += sl.arange(0, 32)  # E-augassign
    sl.store(x_ptr + sl.arange(0, 16), acc)


def test_errors_raised_by_statements_carry_a_location(mode, buf):
    # these used to escape as a bare SemanticError without file:line
    expect_compile_error(loop_constant_type_kernel, "E-loop-constant", mode, buf, 3,
                         match="loop-carried value 'acc' changes type from i32 to the constant 2.5")
    expect_compile_error(augassign_shape_kernel, "E-augassign", mode, buf, match="cannot be broadcast")


@spvjit.kernel
def global_kernel(x_ptr):
    sl.store(x_ptr, NOT_A_CONSTEXPR * 1.0)  # E-global


def test_non_constexpr_global(mode, buf):
    expect_compile_error(global_kernel, "E-global", mode, buf,
                         match="cannot read global 'NOT_A_CONSTEXPR'")


@spvjit.kernel
def _bad_helper(x):
    return x + undefined_in_helper  # E-helper


@spvjit.kernel
def calls_bad_helper(x_ptr):
    sl.store(x_ptr, _bad_helper(1.0))


def test_error_inside_helper_points_at_helper_line(mode, buf):
    expect_compile_error(calls_bad_helper, "E-helper", mode, buf, match="'undefined_in_helper' is not defined")


@spvjit.kernel
def tensor_if_kernel(x_ptr):
    offs = sl.arange(0, 16)
    if offs > 3:  # E-tensor-if
        sl.store(x_ptr + offs, 1.0)


def test_if_on_a_tensor(mode, buf):
    expect_compile_error(tensor_if_kernel, "E-tensor-if", mode, buf, match="sl.where")


@spvjit.kernel
def where_pointer_kernel(x_ptr):
    offs = sl.arange(0, 16)
    p = sl.where(offs < 8, x_ptr + offs, x_ptr + 2 * offs)  # E-where-ptr
    sl.store(p, 1.0)


def test_where_between_pointers(mode, buf):
    expect_compile_error(where_pointer_kernel, "E-where-ptr", mode, buf, match="ptr + sl.where(cond, a, b)")


@spvjit.kernel
def static_range_runtime_kernel(x_ptr, n):
    for i in sl.static_range(n):  # E-static-range
        sl.store(x_ptr + i, 1.0)


@spvjit.kernel
def _helper_two(a, b):
    return a + b


@spvjit.kernel
def helper_arity_kernel(x_ptr):
    sl.store(x_ptr, _helper_two(1.0))  # E-helper-arity


@spvjit.kernel
def _helper_returning_in_if(a):
    # a return inside an `if` at the helper's top level is fine; inside a loop it is not
    for i in range(a):  # E-helper-return
        if i > 2:
            return i
    return -a


@spvjit.kernel
def helper_return_kernel(x_ptr, n):
    sl.store(x_ptr, _helper_returning_in_if(n).to(sl.float32))


def test_loop_and_helper_errors(mode, buf):
    expect_compile_error(static_range_runtime_kernel, "E-static-range", mode, buf, 4, match="constexpr")
    expect_compile_error(helper_arity_kernel, "E-helper-arity", mode, buf, match="calling _helper_two")
    expect_compile_error(helper_return_kernel, "E-helper-return", mode, buf, 3,
                         match="a helper kernel may return only at its top level")


# ---- launch errors ----------------------------------------------------------------------
@spvjit.kernel
def simple_kernel(x_ptr, n, BLOCK: sl.constexpr):
    offs = sl.arange(0, BLOCK)
    sl.store(x_ptr + offs, offs.to(sl.float32), mask=offs < n)


def test_launch_error_is_a_type_error():
    assert issubclass(spvjit.LaunchError, TypeError)


def test_wrong_number_of_arguments(mode, buf):
    k = spvjit.interpret(simple_kernel) if mode == "interpreter" else simple_kernel
    with pytest.raises(spvjit.LaunchError, match=r"simple_kernel\(x_ptr, n, BLOCK\)"):
        k[(1,)](buf, 16)                                      # BLOCK missing
    with pytest.raises(spvjit.LaunchError, match="too many"):
        k[(1,)](buf, 16, 16, 3)
    with pytest.raises(TypeError):                            # catchable as a TypeError too
        k[(1,)](buf)


def test_numpy_array_instead_of_tensor(mode):
    k = spvjit.interpret(simple_kernel) if mode == "interpreter" else simple_kernel
    with pytest.raises(spvjit.LaunchError, match=r"'x_ptr'.*numpy array.*spvjit.tensor"):
        k[(1,)](np.zeros(16, np.float32), 16, BLOCK=16)


def test_unsupported_tensor_dtype(mode):
    k = spvjit.interpret(simple_kernel) if mode == "interpreter" else simple_kernel
    t = spvjit.tensor(np.zeros(16, np.complex64))
    with pytest.raises(spvjit.LaunchError, match="complex64"):
        k[(1,)](t, 16, BLOCK=16)


def test_int_argument_past_64_bits(mode, buf):
    """As Triton: int32 when it fits, int64 beyond, uint64 from 2**63; past that a LaunchError."""
    k = spvjit.interpret(simple_kernel) if mode == "interpreter" else simple_kernel
    with pytest.raises(spvjit.LaunchError, match="does not fit in 64 bits"):
        k[(1,)](buf, 2 ** 64, BLOCK=16)
    with pytest.raises(spvjit.LaunchError, match="does not fit in 64 bits"):
        k[(1,)](buf, -(2 ** 63) - 1, BLOCK=16)
    for n in (-(2 ** 31), 2 ** 31 - 1, 2 ** 31, -(2 ** 63), 2 ** 64 - 1):    # i32, i64, u64 arguments
        k[(1,)](buf, n, BLOCK=16)


def test_unsupported_argument_type(mode, buf):
    k = spvjit.interpret(simple_kernel) if mode == "interpreter" else simple_kernel
    with pytest.raises(spvjit.LaunchError, match="unsupported type str"):
        k[(1,)](buf, "16", BLOCK=16)


def test_calling_a_kernel_without_a_grid(mode, buf):
    k = spvjit.interpret(simple_kernel) if mode == "interpreter" else simple_kernel
    with pytest.raises(spvjit.LaunchError, match=r"simple_kernel\[grid\]"):
        k(buf, 16, BLOCK=16)


def test_bad_grid(mode, buf):
    k = spvjit.interpret(simple_kernel) if mode == "interpreter" else simple_kernel
    with pytest.raises(spvjit.LaunchError, match="grid"):
        k[(1, 1, 1, 1)](buf, 16, BLOCK=16)
    with pytest.raises(spvjit.LaunchError, match="grid"):
        k[(-1,)](buf, 16, BLOCK=16)


def test_grid_of_non_numbers(buf):
    with pytest.raises(spvjit.LaunchError, match="grid"):
        spvjit.interpret(simple_kernel)[("x",)](buf, 16, BLOCK=16)


def test_interpreter_reports_out_of_bounds_access(buf):
    # the interpreter checks every unmasked access (a device would silently read or write
    # whatever is there); the tail mask is what makes the access legal
    with pytest.raises(IndexError, match="out-of-bounds access at element 64"):
        spvjit.interpret(simple_kernel)[(1,)](buf, 128, BLOCK=128)
    spvjit.interpret(simple_kernel)[(1,)](buf, 64, BLOCK=128)


# ---- no Vulkan device -------------------------------------------------------------------
_NO_DEVICE_SCRIPT = textwrap.dedent("""
    import sys, numpy as np
    import spvjit
    sys.path.insert(0, {tests!r})
    from test_errors import simple_kernel, scalar_only_kernel
    for what, call in [("tensor", lambda: spvjit.tensor(np.zeros(16, np.float32))),
                       ("launch", lambda: scalar_only_kernel[(1,)](3))]:
        try:
            call()
        except spvjit.DeviceError as e:
            print(what, "DeviceError:", e)
        else:
            print(what, "no error")
""")


@spvjit.kernel
def scalar_only_kernel(n):
    x = n + 1


def test_no_vulkan_device_raises_device_error():
    env = dict(os.environ, VK_ICD_FILENAMES="/nonexistent.json", VK_DRIVER_FILES="/nonexistent.json")
    env.pop("SPVJIT_INTERPRET", None)
    script = _NO_DEVICE_SCRIPT.format(tests=os.path.dirname(THIS_FILE))
    p = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, (p.returncode, p.stderr)          # no crash, no segfault
    assert "Traceback" not in p.stderr and "Segmentation" not in p.stderr, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 2, p.stdout                            # one line per attempt: one-line messages
    for what, line in zip(("tensor", "launch"), lines):
        assert line.startswith(f"{what} DeviceError: "), line
        assert "Vulkan" in line, line


# ---- recursion and grids (issue 13) ---------------------------------------------------------
@spvjit.kernel
def count_down(x, n):
    if n > 0:
        x = count_down(x + 1.0, n - 1)  # E-recursion
    return x


@spvjit.kernel
def runtime_recursion_kernel(x_ptr, n):
    sl.store(x_ptr + sl.arange(0, 16), count_down(sl.zeros((16,), sl.float32), n))


@spvjit.kernel
def count_down_constexpr(x, n: sl.constexpr):
    if n > 0:
        x = count_down_constexpr(x + 1.0, n - 1)
    return x


@spvjit.kernel
def constexpr_recursion_kernel(x_ptr, N: sl.constexpr):
    sl.store(x_ptr + sl.arange(0, 16), count_down_constexpr(sl.zeros((16,), sl.float32), N))


def test_recursion_with_a_runtime_depth_names_the_call(mode, buf):
    # Helpers are inlined: a depth known only at run time used to end in a bare
    # RecursionError with no kernel line.
    expect_compile_error(runtime_recursion_kernel, "E-recursion", mode, buf, 5, match="nested more than")


def test_recursion_with_a_constexpr_depth_still_works(buf):
    k = spvjit.interpret(constexpr_recursion_kernel)
    k[(1,)](buf, N=12)
    np.testing.assert_array_equal(buf.numpy()[:16], np.full(16, 12.0, np.float32))


@pytest.mark.parametrize("grid", [(3.9,), "123", (np.float32(2),), (True,), (1, 2, 3, 4), (), None, 2.0])
def test_check_grid_refuses_non_ints(grid):
    # k[(3.9,)] ran 3 programs and k["123"] ran a (1, 2, 3) grid: both are mistakes.
    from spvjit.launch import check_grid
    with pytest.raises(spvjit.LaunchError, match="grid of kernel k must"):
        check_grid(grid, "k")


def test_check_grid_accepts_ints_and_numpy_ints():
    from spvjit.launch import check_grid
    assert check_grid((np.int64(3), np.uint32(2)), "k") == (3, 2)
    assert check_grid(np.int32(4), "k") == (4,)
    assert check_grid([1, 2, 3], "k") == (1, 2, 3)
    assert all(type(x) is int for x in check_grid((np.int64(3),), "k"))


@pytest.mark.parametrize("grid", [(3.9,), "abc", (2, "1"), (True,), 2.0, (1, 2, 3, 4), ()])
def test_launch_refuses_grids_that_are_not_ints(grid):
    # k[(3.9,)] used to run 3 programs; a string grid used to be taken as sizes
    x = spvjit.zeros(8, np.float32)
    with pytest.raises(spvjit.LaunchError, match="grid of kernel"):
        _grid_probe[grid](x)


def test_launch_accepts_numpy_int_grids():
    x = spvjit.zeros(8, np.float32)
    _grid_probe[(np.int64(2),)](x)
    _grid_probe[np.int32(1)](x)
    np.testing.assert_array_equal(x.numpy(), [1, 1, 0, 0, 0, 0, 0, 0])


@spvjit.kernel
def _grid_probe(x_ptr):
    sl.store(x_ptr + sl.program_id(0), 1.0)


@spvjit.kernel
def _huge_block(x_ptr, BLOCK: sl.constexpr):
    offs = sl.arange(0, BLOCK)
    sl.store(x_ptr + offs, offs.to(sl.float32), mask=offs < 4)


def test_a_huge_block_is_refused_at_its_line_before_any_large_allocation():
    import resource
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(spvjit.CompilationError, match=r"test_errors.py:\d+.*1073741824 elements.*at most 1048576"):
        _huge_block[(1,)](spvjit.zeros(4, np.float32), BLOCK=2 ** 30)
    # peak RSS (KiB) grew by far less than one element per byte of the asked-for tile
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000
