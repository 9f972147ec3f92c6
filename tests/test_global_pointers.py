"""Global-address pointers: `Tensor.data_ptr()` values turned back into pointers inside
kernels with `.to(tl.pointer_type(T))` (Triton's tutorial 08), on the device
(PhysicalStorageBuffer64, spirv-val checked by the conftest hook) and in the interpreter
(addresses mapped back to live tensors), each against numpy.  Results are copies of the
inputs or integer arithmetic, so they must match exactly."""
import numpy as np
import pytest

import spvjit
import spvjit.language as tl
from spvjit.errors import CompilationError

DTYPES = [np.float32, np.float16, np.int32, np.uint8, np.int64]


def run(kernel, mode):
    return spvjit.interpret(kernel) if mode == "interpreter" else kernel


def addresses(*tensors):
    return spvjit.tensor(np.array([t.data_ptr() for t in tensors], np.int64))


@spvjit.jit
def copy_through_table(table, n, fill, BLOCK: tl.constexpr):
    """dst = src where offs < n, else untouched; loaded where offs < n, else `fill`."""
    pid = tl.program_id(0)
    src = tl.load(table + 0).to(tl.pointer_type(tl.float32))
    dst = tl.load(table + 1).to(tl.pointer_type(tl.float32))
    seen = tl.load(table + 2).to(tl.pointer_type(tl.float32))
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(src + offs, mask=offs < n, other=fill)
    tl.store(dst + offs, x * 2.0, mask=offs < n)
    tl.store(seen + offs, x)            # every lane: the masked-off ones hold `fill`


@pytest.mark.parametrize("mode", ["device", "interpreter"])
def test_masked_load_store_through_addresses(mode, request):
    if mode == "device":
        request.getfixturevalue("needs_device")
    n, block = 37, 16
    src = spvjit.tensor(np.arange(n, dtype=np.float32) - 5)
    dst = spvjit.zeros(64)
    seen = spvjit.zeros(64)
    table = addresses(src, dst, seen)
    run(copy_through_table, mode)[(4,)](table, n, -7.5, BLOCK=block)
    want_dst = np.zeros(64, np.float32)
    want_dst[:n] = (np.arange(n) - 5) * 2
    want_seen = np.full(64, -7.5, np.float32)
    want_seen[:n] = np.arange(n) - 5
    np.testing.assert_array_equal(dst.numpy(), want_dst)
    np.testing.assert_array_equal(seen.numpy(), want_seen)


@spvjit.jit
def copy_typed(addr_in, addr_out, n, BLOCK: tl.constexpr, DT: tl.constexpr):
    """Addresses passed as plain int64 scalar arguments (data_ptr() > 2**31)."""
    src = addr_in.to(tl.pointer_type(DT))
    dst = addr_out.to(tl.pointer_type(DT))
    offs = tl.arange(0, BLOCK)
    v = tl.load(src + offs, mask=offs < n)
    tl.store(dst + (n - 1 - offs), v, mask=offs < n)      # reversed


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_dtypes_and_scalar_address_arguments(mode, dtype):
    n = 21
    data = (np.arange(n) * 3 + 1).astype(dtype)
    src = spvjit.tensor(data)
    dst = spvjit.zeros(n, dtype)
    dt = {np.float32: tl.float32, np.float16: tl.float16, np.int32: tl.int32,
          np.uint8: tl.uint8, np.int64: tl.int64}[dtype]
    run(copy_typed, mode)[(1,)](src.data_ptr(), dst.data_ptr(), n, BLOCK=32, DT=dt)
    np.testing.assert_array_equal(dst.numpy(), data[::-1])


@spvjit.jit
def tile_arith(table, out, rows, cols, ld, BR: tl.constexpr, BC: tl.constexpr, STEPS: tl.constexpr):
    """2-D address tiles, int64 offsets, a negative offset, pointer -> int -> pointer, and a
    loop-carried pointer tile advanced each step."""
    base = tl.load(table).to(tl.pointer_type(tl.float32))
    r = tl.arange(0, BR)
    c = tl.arange(0, BC)
    mask = (r[:, None] < rows) & (c[None, :] < cols)
    end = base + (rows * ld).to(tl.int64)                  # one past the last row
    start = (end.to(tl.int64) - 4 * rows * ld).to(tl.pointer_type(tl.float32))   # == base
    ptrs = start + r[:, None] * ld + c[None, :]
    acc = tl.zeros((BR, BC), tl.float32)
    for _ in range(STEPS):
        acc += tl.load(ptrs, mask=mask, other=0.0)
        ptrs += 1
    q = (end + (-ld)).to(tl.int64) - base.to(tl.int64)    # bytes to the last row
    tl.store(out + r[:, None] * BC + c[None, :], acc + q.to(tl.float32))


def test_pointer_arithmetic(mode):
    rows, cols, ld, steps = 5, 6, 9, 3
    a = np.random.default_rng(0).integers(-8, 8, (rows, ld)).astype(np.float32)
    t = spvjit.tensor(a)
    out = spvjit.zeros((8, 8))
    run(tile_arith, mode)[(1,)](addresses(t), out, rows, cols, ld, BR=8, BC=8, STEPS=steps)
    flat = np.concatenate([a.reshape(-1), np.zeros(steps, np.float32)])
    want = np.zeros((8, 8), np.float32)
    for s in range(steps):
        for i in range(rows):
            want[i, :cols] += flat[i * ld + s: i * ld + s + cols]
    want += 4 * (rows - 1) * ld
    np.testing.assert_array_equal(out.numpy(), want)


@spvjit.jit
def _bad_int_width(table):
    p = tl.load(table).to(tl.int32).to(tl.pointer_type(tl.float32))
    tl.store(p, 1.0)


@spvjit.jit
def _bad_arg_pointer(x):
    tl.store(x, x.to(tl.int64).to(tl.float32))


@spvjit.jit
def _bad_reinterpret(x):
    p = x.to(tl.pointer_type(tl.int32))
    tl.store(p, 1)


@spvjit.jit
def _bad_atomic(table):
    p = tl.load(table).to(tl.pointer_type(tl.float32))
    tl.atomic_add(p, 1.0)


@pytest.mark.parametrize("kernel, message", [
    (_bad_int_width, "only 64-bit integers convert to pointers"),
    (_bad_arg_pointer, "pass the tensor's data_ptr() as an int64 argument"),
    (_bad_reinterpret, "cannot reinterpret a tensor argument's pointer"),
    (_bad_atomic, "atomic_add through a global-address pointer"),
])
def test_bad_uses_are_one_clear_line(mode, kernel, message):
    t = spvjit.zeros(4, np.int64) if kernel in (_bad_int_width, _bad_atomic) else spvjit.zeros(4)
    with pytest.raises(CompilationError) as e:
        run(kernel, mode)[(1,)](t)
    first = str(e.value).splitlines()[0]     # then the quoted source line and a caret
    assert message in first and "test_global_pointers.py:" in first


@spvjit.jit
def _read_one(addr, out):
    tl.store(out, tl.load(addr.to(tl.pointer_type(tl.float32))))


def test_interpreter_refuses_unknown_and_freed_addresses():
    out = spvjit.zeros(1)
    t = spvjit.tensor(np.ones(4, np.float32))
    addr = t.data_ptr()
    k = spvjit.interpret(_read_one)
    k[(1,)](addr + 12, out)
    assert out.numpy()[0] == 1.0
    with pytest.raises(IndexError, match="outside"):
        k[(1,)](addr + 16, out)
    del t
    import gc
    gc.collect()
    with pytest.raises(IndexError, match="not inside any live tensor"):
        k[(1,)](addr, out)


def test_data_ptr_without_device_addresses_is_a_device_error():
    from spvjit.errors import DeviceError
    from spvjit.runtime import device_address

    class Caps:
        name = "a device without bufferDeviceAddress"
        buffer_device_address = False
    with pytest.raises(DeviceError, match="bufferDeviceAddress"):
        device_address.require(Caps(), "Tensor.data_ptr()")


@spvjit.jit
def _plain_copy(x, y, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(y + offs, tl.load(x + offs))


def _spirv_text(kernel, args, kwargs):
    from spvjit.codegen.spirv.tools import disassemble
    from spvjit.compiler import compile
    from spvjit.runtime import get_device
    spec, _ = kernel.specialize(list(args), dict(kwargs))
    return disassemble(compile(kernel, spec, get_device()).compiled.spirv)


def test_only_kernels_with_addresses_use_physical_addressing(needs_device):
    """The pointer kind is opt-in: a plain kernel keeps Logical addressing and its bindings."""
    x, y = spvjit.zeros(16), spvjit.zeros(16)
    text = _spirv_text(copy_typed, [x.data_ptr(), y.data_ptr(), 4], {"BLOCK": 16, "DT": tl.float32})
    assert "OpMemoryModel PhysicalStorageBuffer64" in text and "Aligned 4" in text
    plain = _spirv_text(_plain_copy, [x, y], {"BLOCK": 16})
    assert "OpMemoryModel Logical" in plain and "PhysicalStorageBuffer" not in plain


@spvjit.jit
def _print_address(table):
    p = tl.load(table).to(tl.pointer_type(tl.float32))
    tl.device_print("p", p)


def test_device_print_of_an_address_is_refused_on_the_device(needs_device):
    t = spvjit.zeros(4)
    with pytest.raises(CompilationError, match="device_print of gptr<f32> values is not supported"):
        _print_address[(1,)](addresses(t))


def test_device_print_of_an_address_in_the_interpreter(capsys):
    t = spvjit.zeros(4)
    spvjit.interpret(_print_address)[(1,)](addresses(t))
    assert str(t.data_ptr()) in capsys.readouterr().out


@spvjit.jit
def _fill_through(table, value, BLOCK: tl.constexpr):
    p = tl.load(table).to(tl.pointer_type(tl.float32))
    offs = tl.arange(0, BLOCK)
    tl.store(p + offs, tl.full((BLOCK,), value, tl.float32))


def test_a_batch_keeps_addressed_tensors_alive_until_it_runs(needs_device):
    """Inside spvjit.batch() the launch runs at the batch's end: a tensor reachable only
    through its address, dropped by the caller after the launch call, must survive until then
    (else the kernel writes freed memory).  Its memory is read back through a second view
    taken from the registry-independent host mapping, after the batch."""
    import gc
    import weakref
    out = spvjit.zeros(256)
    table = addresses(out)
    watch = weakref.ref(out)
    keep_view = out.view_host()          # holds the tensor (the view references it)...
    del out
    with spvjit.batch():
        _fill_through[(1,)](table, 3.0, BLOCK=256)
        del keep_view                    # ...until here: now only the batch's pin holds it
        gc.collect()
        assert watch() is not None, "the launch's pin must hold the tensor until the batch ran"
    gc.collect()
    assert watch() is None               # released once the batch has run


@spvjit.jit
def _scale_rows(table, n, ld, BLOCK: tl.constexpr):
    """Row r of src (through its address) times 2 into row r of dst, masked at n columns."""
    r = tl.program_id(0)
    src = tl.load(table).to(tl.pointer_type(tl.float16))
    dst = tl.load(table + 1).to(tl.pointer_type(tl.float16))
    offs = tl.arange(0, BLOCK)
    x = tl.load(src + r * ld + offs, mask=offs < n, other=1.0)
    tl.store(dst + r * ld + offs, x * 2.0, mask=offs < n)


@pytest.mark.parametrize("n", [64, 48, 37])
def test_vector_accesses_through_addresses(mode, n):
    """With 4 consecutive addresses per 4 registers and a mask constant over each 4 (n a
    multiple of 4), accesses go 4 at a time (one vector OpLoad/OpStore through a
    PhysicalStorageBuffer pointer to a 4-vector); n = 37 takes the per-element path."""
    rows, ld = 3, 72
    a = np.random.default_rng(1).uniform(-4, 4, (rows, ld)).astype(np.float16)
    src, dst = spvjit.tensor(a), spvjit.zeros((rows, ld), np.float16)
    run(_scale_rows, mode)[(rows,)](addresses(src, dst), n, ld, BLOCK=64)
    want = np.zeros_like(a)
    want[:, :n] = a[:, :n] * 2          # exact: doubling an f16
    np.testing.assert_array_equal(dst.numpy(), want)
    if mode == "device":
        text = _spirv_text(_scale_rows, [addresses(src, dst), n, ld], {"BLOCK": 64})
        vector = "_ptr_PhysicalStorageBuffer_v4half" in text
        assert vector == (n % 4 == 0), text[-2000:]


@spvjit.jit
def _gather_heads(table, out, G: tl.constexpr):
    """A tile of addresses, one per tensor: element 1 of each, written back doubled in place."""
    g = tl.arange(0, G)
    p = tl.load(table + g).to(tl.pointer_type(tl.int32)) + 1
    x = tl.load(p)
    tl.store(out + g, x)
    tl.store(p, x * 2, mask=g % 2 == 0)


def test_a_tile_of_addresses_into_different_tensors(mode):
    ts = [spvjit.tensor(np.arange(3, dtype=np.int32) + 10 * i) for i in range(4)]
    out = spvjit.zeros(4, np.int32)
    run(_gather_heads, mode)[(1,)](addresses(*ts), out, G=4)
    np.testing.assert_array_equal(out.numpy(), [1, 11, 21, 31])
    np.testing.assert_array_equal([t.numpy()[1] for t in ts], [2, 11, 42, 31])
