"""Tests for spvjit.runtime on the machine's Vulkan device (lavapipe here).

The compute shaders are assembled by hand below so these tests do not depend
on the compiler's SPIR-V builder.
"""

import dataclasses
import gc
import os
import re
import struct
import subprocess
import sys
import weakref

import numpy as np
import pytest

import spvjit.runtime as rt
from spvjit.runtime import DeviceError


class Asm:
    """Just enough of a SPIR-V assembler for the runtime tests' shaders."""

    def __init__(self):
        self.words, self.next_id = [], 1

    def id(self):
        self.next_id += 1
        return self.next_id - 1

    def op(self, opcode, *operands):
        words = []
        for o in operands:
            if isinstance(o, str):  # literal string: nul-terminated, padded to words
                raw = o.encode() + b"\0" * (4 - len(o) % 4)
                words += struct.unpack(f"<{len(raw) // 4}I", raw)
            elif isinstance(o, float):
                words.append(struct.unpack("<I", struct.pack("<f", o))[0])
            else:
                words.append(o)
        self.words += [(len(words) + 1) << 16 | opcode] + words

    def result(self, opcode, type_id, *operands):
        rid = self.id()
        self.op(opcode, *((type_id, rid) if type_id is not None else (rid,)), *operands)
        return rid

    def binary(self):
        header = [0x07230203, 0x00010300, 0, self.next_id, 0]
        return struct.pack(f"<{len(header) + len(self.words)}I", *header, *self.words)


def scale_add_shader(texel=False, local_size=64):
    """dst[i] = src[i] * SCALE + push.add for i < push.n.

    Bindings: 0 = src (storage buffer of float, or a uniform texel buffer
    when `texel`), 1 = dst (storage buffer of float). Push constants:
    {uint n; float add}. SCALE is specialization constant 0 (default 1.0).
    """
    a = Asm()
    (main, gid, void, fn, uint, flt, v3, p_in_v3, p_in_u, rtarr, sbuf, p_sb, src, dst, pc, p_pc,
     pcv, p_pc_u, p_pc_f, p_sb_f, boolean, c0, c1, scale, img, p_uc_img, v4) = (a.id() for _ in range(27))
    a.op(17, 1)                                   # OpCapability Shader
    if texel:
        a.op(17, 46)                              # OpCapability SampledBuffer
    a.op(14, 0, 1)                                # OpMemoryModel Logical GLSL450
    a.op(15, 5, main, "main", gid)                # OpEntryPoint GLCompute
    a.op(16, main, 17, local_size, 1, 1)          # OpExecutionMode LocalSize
    a.op(71, gid, 11, 28)                         # BuiltIn GlobalInvocationId
    a.op(71, rtarr, 6, 4)                         # ArrayStride 4
    a.op(72, sbuf, 0, 35, 0)                      # member 0 Offset 0
    a.op(71, sbuf, 2)                             # Block
    for var, binding in ((src, 0), (dst, 1)):
        a.op(71, var, 34, 0)                      # DescriptorSet 0
        a.op(71, var, 33, binding)                # Binding
    a.op(72, pc, 0, 35, 0)
    a.op(72, pc, 1, 35, 4)
    a.op(71, pc, 2)
    a.op(71, scale, 1, 0)                         # SpecId 0
    a.op(19, void)
    a.op(33, fn, void)
    a.op(21, uint, 32, 0)
    a.op(22, flt, 32)
    a.op(20, boolean)
    a.op(23, v3, uint, 3)
    a.op(23, v4, flt, 4)
    a.op(32, p_in_v3, 1, v3)
    a.op(32, p_in_u, 1, uint)
    a.op(29, rtarr, flt)
    a.op(30, sbuf, rtarr)
    a.op(32, p_sb, 12, sbuf)
    a.op(32, p_sb_f, 12, flt)
    a.op(30, pc, uint, flt)
    a.op(32, p_pc, 9, pc)
    a.op(32, p_pc_u, 9, uint)
    a.op(32, p_pc_f, 9, flt)
    a.op(43, uint, c0, 0)
    a.op(43, uint, c1, 1)
    a.op(50, flt, scale, 1.0)                     # OpSpecConstant
    a.op(59, p_in_v3, gid, 1)
    if texel:
        a.op(25, img, flt, 5, 0, 0, 0, 1, 0)      # OpTypeImage float Buffer sampled=1 Unknown
        a.op(32, p_uc_img, 0, img)
        a.op(59, p_uc_img, src, 0)
    else:
        a.op(59, p_sb, src, 12)
    a.op(59, p_sb, dst, 12)
    a.op(59, p_pc, pcv, 9)
    label, body, end = a.id(), a.id(), a.id()
    a.op(54, void, main, 0, fn)                   # OpFunction
    a.op(248, label)
    p, i, npt, n, cond = (a.id() for _ in range(5))
    a.op(65, p_in_u, p, gid, c0)
    a.op(61, uint, i, p)
    a.op(65, p_pc_u, npt, pcv, c0)
    a.op(61, uint, n, npt)
    a.op(176, boolean, cond, i, n)                # OpULessThan
    a.op(247, end, 0)                             # OpSelectionMerge
    a.op(250, cond, body, end)
    a.op(248, body)
    x, ap, add, y, z, dp = (a.id() for _ in range(6))
    if texel:
        im, v = a.id(), a.id()
        a.op(61, img, im, src)
        a.op(95, v4, v, im, i)                    # OpImageFetch
        a.op(81, flt, x, v, 0)                    # OpCompositeExtract
    else:
        sp = a.id()
        a.op(65, p_sb_f, sp, src, c0, i)
        a.op(61, flt, x, sp)
    a.op(65, p_pc_f, ap, pcv, c1)
    a.op(61, flt, add, ap)
    a.op(133, flt, y, x, scale)                   # OpFMul
    a.op(129, flt, z, y, add)                     # OpFAdd
    a.op(65, p_sb_f, dp, dst, c0, i)
    a.op(62, dp, z)                               # OpStore
    a.op(249, end)
    a.op(248, end)
    a.op(253)
    a.op(56)
    return a.binary()


@pytest.fixture(scope="module")
def dev():
    try:
        return rt.get_device()
    except DeviceError as e:
        pytest.skip(f"no Vulkan device: {e}")


@pytest.fixture(scope="module")
def scale_add(dev):
    return dev.create_pipeline(scale_add_shader(), ["storage", "storage"], 8, {0: 2.0})


def _push(n, add):
    return struct.pack("<If", n, add)


def _run_python(code, **env):
    full_env = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full_env, timeout=120)


# -- capabilities and device selection --------------------------------------

def test_lavapipe_caps_match_design_table(dev):
    caps = dev.caps
    assert isinstance(caps, rt.DeviceCaps)
    if "llvmpipe" not in caps.name:
        pytest.skip(f"not lavapipe: {caps.name}")
    assert caps.device_type == "cpu"
    assert caps.subgroup_size == 8
    assert {"basic", "vote", "arithmetic", "ballot", "shuffle", "shuffle_relative",
            "quad"} <= caps.subgroup_ops
    assert caps.max_shared_memory == 32 * 1024
    assert caps.max_push_constants_size in (128, 256)
    assert caps.float16 and caps.int8 and caps.int64 and caps.float64
    assert caps.storage_buffer_16bit and caps.storage_buffer_8bit
    assert caps.integer_dot_product and not caps.integer_dot_product_accelerated
    mesa = tuple(map(int, re.match(r"Mesa (\d+)\.(\d+)", caps.driver_info).groups()))
    if mesa >= (26, 1):   # trixie-backports (scripts/coopmat-env): 8x8x8, subgroup scope
        assert {(c.m, c.n, c.k, c.a_type, c.b_type, c.c_type, c.result_type, c.scope)
                for c in caps.cooperative_matrix} == {
            (8, 8, 8, "f16", "f16", "f16", "f16", "subgroup"), (8, 8, 8, "f16", "f16", "f32", "f32", "subgroup"),
            (8, 8, 8, "i8", "i8", "i32", "i32", "subgroup"), (8, 8, 8, "u8", "u8", "u32", "u32", "subgroup")}
        assert "VK_KHR_cooperative_matrix" in caps.extensions
        # VK_NV_cooperative_matrix2: 26.1 reports flexible dimensions (granules of 8 for the same
        # types; asserted loosely, a later Mesa may report more) and the device enables it
        cm2 = caps.cooperative_matrix2
        assert cm2 is not None and cm2.has("flexible_dimensions") and cm2.flexible_max_dimension >= 16
        assert any((f.a_type, f.c_type, f.scope) == ("f16", "f32", "subgroup") and f.m_granularity <= 8
                   for f in cm2.flexible)
        assert "VK_NV_cooperative_matrix2" in dev.enabled_extensions
    else:                 # Mesa 22.3 (Debian 12), 25.0 (Debian 13)
        assert caps.cooperative_matrix == () and not caps.cooperative_matrix2
        assert "VK_KHR_cooperative_matrix" not in caps.extensions
    assert caps.timestamps_supported and caps.timestamp_period_ns == 1.0
    assert caps.api_version >= (1, 3, 0)
    assert caps.driver_info.startswith("Mesa")
    assert caps.memory_heaps and all(isinstance(s, int) and isinstance(local, bool)
                                     for s, local in caps.memory_heaps)


def test_caps_are_frozen_and_listed(dev):
    devices = rt.list_devices()
    assert [c.index for c in devices] == list(range(len(devices)))
    assert dev.caps in devices
    with pytest.raises(dataclasses.FrozenInstanceError):
        dev.caps.subgroup_size = 4
    hash(dev.caps)
    assert dev.caps.to_dict()["name"] == dev.caps.name


def test_choose_device_preference_and_selectors(dev):
    base = dev.caps
    fake = [dataclasses.replace(base, index=0, name="Soft CPU", device_type="cpu"),
            dataclasses.replace(base, index=1, name="Laptop iGPU", device_type="integrated"),
            dataclasses.replace(base, index=2, name="Big dGPU", device_type="discrete")]
    assert rt.choose_device(fake, "") == 2
    assert rt.choose_device(fake[:2], "") == 1
    assert rt.choose_device(fake, "0") == 0
    assert rt.choose_device(fake, "laptop") == 1
    assert rt.choose_device(fake, "GPU") == 2  # both match; the better type wins
    for bad in ("7", "radeon"):
        with pytest.raises(DeviceError, match="Soft CPU.*Laptop iGPU.*Big dGPU"):
            rt.choose_device(fake, bad)


# -- tensors ----------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32, np.int8, np.uint8])
@pytest.mark.parametrize("shape", [(), (1,), (7,), (3, 5), (2, 3, 5), (17, 1, 3)])
def test_tensor_round_trip(dev, dtype, shape):
    rng = np.random.default_rng(0)
    data = (rng.standard_normal(shape) * 50).astype(dtype)
    t = rt.tensor(data)
    assert t.shape == shape and t.dtype == np.dtype(dtype)
    out = t.numpy()
    assert out.dtype == np.dtype(dtype) and out.shape == shape
    np.testing.assert_array_equal(out, data)


def test_tensor_metadata(dev):
    t = rt.empty((2, 3, 4), np.float16)
    assert t.strides == (12, 4, 1) and t.stride(0) == 12 and t.stride(-1) == 1
    assert t.ndim == 3 and t.size == 24 and t.nbytes == 48 and len(t) == 2
    assert t.device is dev
    assert "shape=(2, 3, 4)" in repr(t) and "float16" in repr(t)
    with pytest.raises(TypeError):
        len(rt.zeros(()))


def test_list_defaults_to_32_bit(dev):
    assert rt.tensor([1.5, 2.5]).dtype == np.float32
    assert rt.tensor([1, 2]).dtype == np.int32
    assert rt.tensor(np.arange(3, dtype=np.int64)).dtype == np.int64
    assert rt.tensor([1, 2], dtype=np.uint8).numpy().tolist() == [1, 2]


def test_zero_size_tensor(dev):
    t = rt.empty((0,))
    assert t.nbytes == 0 and t.numpy().shape == (0,)
    t2 = rt.tensor(np.zeros((0, 4), np.int8))
    assert t2.numpy().shape == (0, 4) and t2.size == 0


def test_zeros_like_and_copy_from(dev):
    z = rt.zeros((5, 3), np.int32)
    np.testing.assert_array_equal(z.numpy(), np.zeros((5, 3), np.int32))
    zl = rt.zeros_like(z)
    assert zl.shape == (5, 3) and zl.dtype == np.int32 and not zl.numpy().any()
    el = rt.empty_like(np.ones((2, 2), np.float16))
    assert el.shape == (2, 2) and el.dtype == np.float16
    z.copy_from(np.arange(3))  # broadcast over rows
    np.testing.assert_array_equal(z.numpy(), np.tile(np.arange(3, dtype=np.int32), (5, 1)))


def test_view_host_aliases_memory_and_keeps_tensor_alive(dev):
    t = rt.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    if not t.host_visible:
        pytest.skip("memory not host-visible")
    v = t.view_host()
    v[1, 2] = 42.0
    assert t.numpy()[1, 2] == 42.0
    ref = weakref.ref(t)
    del t
    gc.collect()
    assert ref() is not None  # the array's base holds it
    assert v[1, 2] == 42.0
    del v
    gc.collect()
    assert ref() is None


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_gc_frees_device_memory(dev):
    # 2 GiB in 64 MiB tensors: more than lavapipe's heap if nothing were freed.
    start = _rss_bytes()
    for i in range(32):
        t = rt.empty((64 << 20,), np.uint8)
        t.copy_from(np.uint8(i))  # touch every page
        ref = weakref.ref(t._buf)
        del t
        assert ref() is None
    assert _rss_bytes() - start < 1 << 30


def test_too_large_tensor_is_a_clear_error(dev):
    limit = dev.caps.max_storage_buffer_range
    with pytest.raises(DeviceError, match="maxStorageBufferRange"):
        rt.empty((limit // 4 + 16,), np.float32)


# -- pipelines and dispatch -------------------------------------------------

def test_dispatch_doubles_with_push_and_spec_constants(dev, scale_add):
    n = 1000  # not a multiple of the workgroup size: the shader masks the tail
    x = rt.tensor(np.arange(1024, dtype=np.float32))
    y = rt.tensor(np.full(1024, -1.0, np.float32))
    dev.dispatch(scale_add, [x, y], _push(n, 0.0), ((n + 63) // 64, 1, 1))
    out = y.numpy()
    np.testing.assert_array_equal(out[:n], 2 * np.arange(n, dtype=np.float32))
    assert (out[n:] == -1.0).all()


def test_spec_constant_default_and_push_add(dev):
    pipe = dev.create_pipeline(scale_add_shader(), ["storage", "storage"], 8)
    x = rt.tensor(np.arange(64, dtype=np.float32))
    y = rt.empty_like(x)
    dev.dispatch(pipe, [x, y], _push(64, 0.5), (1, 1, 1))
    np.testing.assert_array_equal(y.numpy(), np.arange(64, dtype=np.float32) + 0.5)


def test_batch_barriers_give_dependent_results(dev, scale_add):
    a = rt.tensor(np.arange(256, dtype=np.float32))
    b, c, d = rt.empty_like(a), rt.empty_like(a), rt.empty_like(a)
    x = rt.tensor(np.ones(256, np.float32))
    with dev.batch() as batch:
        for src, dst in ((a, b), (b, c), (c, d)):
            batch.dispatch(scale_add, [src, dst], _push(256, 1.0), (4, 1, 1))
        for _ in range(5):  # in place
            batch.dispatch(scale_add, [x, x], _push(256, 0.0), (4, 1, 1))
    ref = np.arange(256, dtype=np.float32)
    for _ in range(3):
        ref = 2 * ref + 1
    np.testing.assert_array_equal(d.numpy(), ref)
    np.testing.assert_array_equal(x.numpy(), np.full(256, 32.0, np.float32))


def test_timestamps_are_positive(dev, scale_add):
    x = rt.tensor(np.ones(4096, np.float32))
    with dev.batch(timestamps=True) as batch:
        for _ in range(3):
            batch.dispatch(scale_add, [x, x], _push(4096, 0.0), (64, 1, 1))
    assert len(batch.elapsed_ns) == 3
    assert all(t > 0 for t in batch.elapsed_ns)


def test_uniform_texel_buffer_binding(dev):
    pipe = dev.create_pipeline(scale_add_shader(texel=True), ["uniform_texel", "storage"], 8, {0: 3.0})
    y = rt.empty((128,), np.float32)
    for data, fmt in ((np.arange(128, dtype=np.float32), None),
                      (np.linspace(-2, 2, 128).astype(np.float16), None),
                      (np.arange(128, dtype=np.float32), {0: "r32f"})):
        src = rt.tensor(data)
        dev.dispatch(pipe, [src, y], _push(128, 1.0), (2, 1, 1), texel_format=fmt)
        np.testing.assert_allclose(y.numpy(), data.astype(np.float32) * 3 + 1, rtol=1e-6)


def test_required_subgroup_size(dev):
    lo, hi = dev.caps.subgroup_size_control or (None, None)
    if lo is None:
        pytest.skip("no subgroup size control")
    pipe = dev.create_pipeline(scale_add_shader(), ["storage", "storage"], 8, {0: 2.0}, subgroup_size=hi)
    x = rt.tensor(np.ones(64, np.float32))
    dev.dispatch(pipe, [x, x], _push(64, 0.0), (1, 1, 1))
    assert (x.numpy() == 2).all()


def test_descriptor_sets_freed_with_tensors(dev, scale_add):
    before = len(dev.descriptors.sets)
    for _ in range(3):
        x = rt.tensor(np.ones(64, np.float32))
        y = rt.empty_like(x)
        dev.dispatch(scale_add, [x, y], _push(64, 0.0), (1, 1, 1))
        dev.dispatch(scale_add, [x, y], _push(64, 0.0), (1, 1, 1))  # cache hit
        assert len(dev.descriptors.sets) == before + 1
        del x, y
    gc.collect()
    assert len(dev.descriptors.sets) == before


def test_spec_constant_packing():
    from spvjit.runtime.pipeline import _spec_bytes
    assert _spec_bytes(True) == struct.pack("<I", 1)
    assert _spec_bytes(-3) == struct.pack("<i", -3)
    assert _spec_bytes(2**32 - 1) == struct.pack("<I", 2**32 - 1)
    assert _spec_bytes(0.5) == struct.pack("<f", 0.5)
    with pytest.raises(DeviceError):
        _spec_bytes("x")


def test_usage_errors_are_device_errors(dev, scale_add):
    x = rt.tensor(np.ones(64, np.float32))
    with pytest.raises(DeviceError, match="2 bindings but 1"):
        dev.dispatch(scale_add, [x], _push(64, 0.0), (1, 1, 1))
    with pytest.raises(DeviceError, match="push constants"):
        dev.dispatch(scale_add, [x, x], b"\0" * 12, (1, 1, 1))
    with pytest.raises(DeviceError, match="workgroup count"):
        dev.dispatch(scale_add, [x, x], _push(64, 0.0), (1 << 20, 1, 1))
    with pytest.raises(DeviceError, match="SPIR-V"):
        dev.create_pipeline(b"not spirv at all", ["storage"], 0)
    with pytest.raises(DeviceError, match="binding kind"):
        dev.create_pipeline(scale_add_shader(), ["storage", "image"], 8)
    with pytest.raises(DeviceError, match="push constants"):
        dev.create_pipeline(scale_add_shader(), ["storage", "storage"], 4096)
    with pytest.raises(DeviceError, match="outside"):
        dev.batch().dispatch(scale_add, [x, x], _push(64, 0.0), (1, 1, 1))
    with pytest.raises(DeviceError, match="texel format"):
        pipe = dev.create_pipeline(scale_add_shader(texel=True), ["uniform_texel", "storage"], 8)
        dev.dispatch(pipe, [x, x], _push(64, 0.0), (1, 1, 1), texel_format={0: "bogus"})


def test_exception_in_batch_discards_it(dev, scale_add):
    x = rt.tensor(np.ones(64, np.float32))
    with pytest.raises(KeyError):
        with dev.batch() as batch:
            batch.dispatch(scale_add, [x, x], _push(64, 0.0), (1, 1, 1))
            raise KeyError("boom")
    assert (x.numpy() == 1).all()  # never submitted
    dev.dispatch(scale_add, [x, x], _push(64, 0.0), (1, 1, 1))
    dev.synchronize()
    assert (x.numpy() == 2).all()


# -- environments without a usable device ------------------------------------

_GET_DEVICE = """
import spvjit.runtime as rt
try:
    print("OK", rt.get_device().caps.index)
except rt.DeviceError as e:
    print("ERR", e)
"""


def test_no_driver_is_a_device_error():
    r = _run_python(_GET_DEVICE, VK_ICD_FILENAMES="/nonexistent.json", VK_DRIVER_FILES="/nonexistent.json")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ERR") and "mesa-vulkan-drivers" in r.stdout


def test_missing_loader_is_a_device_error(tmp_path):
    # A `vulkan` package that fails the way the real one does without libvulkan.so.1.
    (tmp_path / "vulkan").mkdir()
    (tmp_path / "vulkan" / "__init__.py").write_text("raise OSError('Cannot find Vulkan SDK version')\n")
    r = _run_python(_GET_DEVICE, PYTHONPATH=str(tmp_path))
    assert r.stdout.startswith("ERR") and "libvulkan1" in r.stdout, r.stdout + r.stderr


def test_spvjit_device_selects_by_name_and_index(dev):
    name = dev.caps.name.split()[0].lower()
    r = _run_python(_GET_DEVICE, SPVJIT_DEVICE=name)
    assert r.stdout.strip() == f"OK {dev.caps.index}", r.stdout + r.stderr
    r = _run_python(_GET_DEVICE, SPVJIT_DEVICE=str(dev.caps.index))
    assert r.stdout.strip() == f"OK {dev.caps.index}", r.stdout + r.stderr
    r = _run_python(_GET_DEVICE, SPVJIT_DEVICE="no-such-gpu")
    assert r.stdout.startswith("ERR") and "no-such-gpu" in r.stdout and dev.caps.name in r.stdout
