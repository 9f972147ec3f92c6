"""Device buffers: one VkBuffer bound to its own VkDeviceMemory.

Memory type preference (see choose order in `Buffer.__init__`):
DEVICE_LOCAL|HOST_VISIBLE|HOST_COHERENT first (lavapipe, resizable-BAR GPUs:
kernels read fast memory and the host reads/writes it directly), then
DEVICE_LOCAL alone (discrete GPUs without BAR: uploads go through a staging
buffer), then HOST_VISIBLE|HOST_COHERENT (anything else). Host-visible memory
is mapped once, persistently.

Buffers are freed by a weakref.finalize callback, which keeps the Device
alive until the last buffer is gone and runs (before the device's own) at
interpreter exit.
"""

from __future__ import annotations

import itertools
import weakref

import numpy as np

from . import device_address
from .errors import DeviceError, OUT_OF_MEMORY, result_name

DEVICE_LOCAL, HOST_VISIBLE, HOST_COHERENT, HOST_CACHED = 0x1, 0x2, 0x4, 0x8

# TRANSFER_SRC | TRANSFER_DST | UNIFORM_TEXEL | STORAGE_BUFFER: every tensor
# can be bound either way, so kernels choose per launch.
_TENSOR_USAGE = 0x1 | 0x2 | 0x4 | 0x20
_STAGING_USAGE = 0x1 | 0x2

_uids = itertools.count(1)

# (format name) -> (VkFormat, bytes per texel)
TEXEL_FORMATS = {
    "r8ui": (13, 1), "r8i": (14, 1), "r16ui": (74, 2), "r16i": (75, 2), "r16f": (76, 2),
    "r32ui": (98, 4), "r32i": (99, 4), "r32f": (100, 4),
    "rg32ui": (101, 8), "rg32f": (103, 8), "rgba16f": (97, 8),
    "rgba8ui": (41, 4), "rgba8i": (42, 4), "rgba16ui": (95, 8), "rgba16i": (96, 8),
    "rgba32ui": (107, 16), "rgba32i": (108, 16), "rgba32f": (109, 16),
}

# element type (IR name) -> (texel format of one element, of four): the one table both the
# code generator (texel views it declares) and the runtime (default views) read
ELEMENT_TEXEL_FORMATS = {
    "f32": ("r32f", "rgba32f"), "f16": ("r16f", "rgba16f"), "bf16": ("r16ui", "rgba16ui"),
    "i32": ("r32i", "rgba32i"), "u32": ("r32ui", "rgba32ui"), "i16": ("r16i", "rgba16i"),
    "u16": ("r16ui", "rgba16ui"), "i8": ("r8i", "rgba8i"), "u8": ("r8ui", "rgba8ui"),
    "i1": ("r8ui", "rgba8ui"),
}


def check_texel_count(caps, count: int, fmt: str, what: str) -> None:
    """The one check of maxTexelBufferElements: a DeviceError naming `what` and the limit."""
    if count > caps.max_texel_buffer_elements:
        raise DeviceError(f"{what} needs {count} {fmt} texels, more than the {caps.max_texel_buffer_elements} "
                          f"a texel buffer on {caps.name!r} can address (maxTexelBufferElements)")


class Buffer:
    """A VkBuffer with its memory. `host` is a uint8 view of mapped memory or None."""

    __slots__ = ("device", "handle", "memory", "size", "uid", "host", "address", "flags",
                 "views", "device_address", "_finalizer", "__weakref__")

    def __init__(self, device, nbytes: int, staging: bool = False):
        ffi, lib, vk = device.ffi, device.lib, device.vk
        caps = device.caps
        # Zero-size buffers are invalid; round up so views of any format fit.
        size = max(16, (int(nbytes) + 15) // 16 * 16)
        if not staging and size > caps.max_storage_buffer_range:
            raise DeviceError(
                f"tensor of {nbytes} bytes exceeds maxStorageBufferRange "
                f"({caps.max_storage_buffer_range} bytes) of device {caps.name!r}")
        self.device, self.size, self.uid = device, size, next(_uids)
        self.host, self.address, self.views = None, 0, {}
        # tensors get a device address where the device has them (Tensor.data_ptr, tutorial 08)
        addressable = not staging and device_address.supported(caps)
        usage = _STAGING_USAGE if staging else _TENSOR_USAGE
        if addressable:
            usage |= device_address.SHADER_DEVICE_ADDRESS_USAGE
        handle = ffi.new("VkBuffer*")
        info = ffi.new("VkBufferCreateInfo*", {
            "sType": vk.VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, "size": size,
            "usage": usage,
            "sharingMode": vk.VK_SHARING_MODE_EXCLUSIVE})
        _check_alloc(lib.vkCreateBuffer(device.handle, info, ffi.NULL, handle), nbytes, caps,
                     "creating a buffer")
        self.handle = handle[0]
        try:
            self.memory, flags = _allocate(device, self.handle, nbytes, staging, addressable)
            self.flags = flags
        except BaseException:
            lib.vkDestroyBuffer(device.handle, self.handle, ffi.NULL)
            raise
        # The callback holds the device (not self), so the device outlives its buffers.
        self._finalizer = weakref.finalize(self, _release, device, self.uid, self.handle,
                                           self.memory, self.views)
        _check_alloc(lib.vkBindBufferMemory(device.handle, self.handle, self.memory, 0),
                     nbytes, caps, "binding buffer memory")
        self.device_address = device_address.buffer_address(device, self.handle) if addressable else 0
        if flags & HOST_VISIBLE and flags & HOST_COHERENT:
            ptr = ffi.new("void**")
            # An explicit size: the package's VK_WHOLE_SIZE is -1 and overflows.
            _check_alloc(lib.vkMapMemory(device.handle, self.memory, 0, size, 0, ptr),
                         nbytes, caps, "mapping memory")
            self.address = int(ffi.cast("uintptr_t", ptr[0]))
            self.host = np.frombuffer(ffi.buffer(ptr[0], size), dtype=np.uint8)

    @property
    def slow_host_reads(self) -> bool:
        """Mapped but uncached device memory of a discrete GPU (a PCIe BAR):
        host writes are fine, host reads crawl, so read back via staging."""
        return (self.flags & (DEVICE_LOCAL | HOST_CACHED) == DEVICE_LOCAL
                and self.device.caps.device_type == "discrete")

    def view(self, fmt: str):
        """A VkBufferView of the whole buffer in texel format `fmt` (cached)."""
        view = self.views.get(fmt)
        if view is None:
            view = self.device._create_buffer_view(self, fmt)
            self.views[fmt] = view
        return view


def _allocate(device, buffer, nbytes, staging, addressable=False):
    """Allocate memory for `buffer`, trying memory types in preference order."""
    ffi, lib, vk, caps = device.ffi, device.lib, device.vk, device.caps
    reqs = ffi.new("VkMemoryRequirements*")
    lib.vkGetBufferMemoryRequirements(device.handle, buffer, reqs)
    order = device.staging_types if staging else device.tensor_types
    memory = ffi.new("VkDeviceMemory*")
    flags_info = device_address.allocate_flags_info(device) if addressable else None
    result = -2
    for type_index, flags in order:
        if not reqs.memoryTypeBits & (1 << type_index):
            continue
        alloc = ffi.new("VkMemoryAllocateInfo*", {
            "sType": vk.VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
            "pNext": flags_info if flags_info is not None else ffi.NULL,
            "allocationSize": reqs.size, "memoryTypeIndex": type_index})
        result = lib.vkAllocateMemory(device.handle, alloc, ffi.NULL, memory)
        if result == 0:
            return memory[0], flags
        if result not in OUT_OF_MEMORY:  # a full heap is worth another try; other errors are not
            break
    _check_alloc(result, nbytes, caps, "allocating memory")
    raise DeviceError(f"no memory type fits a buffer of {nbytes} bytes on {caps.name!r}")


def _release(device, uid, handle, memory, views):
    lib, ffi = device.lib, device.ffi
    device.descriptors.forget_buffer(uid)
    for view in views.values():
        lib.vkDestroyBufferView(device.handle, view, ffi.NULL)
    lib.vkDestroyBuffer(device.handle, handle, ffi.NULL)
    lib.vkFreeMemory(device.handle, memory, ffi.NULL)


def _check_alloc(result, nbytes, caps, what):
    if result in OUT_OF_MEMORY:
        kind = "host" if result == -1 else "device"
        raise DeviceError(f"out of {kind} memory allocating {nbytes} bytes on {caps.name!r} "
                          f"({result_name(result)} while {what})")
    if result < 0:
        raise DeviceError(f"{what} ({nbytes} bytes) failed: {result_name(result)}")


def memory_type_orders(ffi, lib, phys):
    """(tensor order, staging order): lists of (type index, flags) to try in turn."""
    mem = ffi.new("VkPhysicalDeviceMemoryProperties*")
    lib.vkGetPhysicalDeviceMemoryProperties(phys, mem)
    types = [(i, mem.memoryTypes[i].propertyFlags) for i in range(mem.memoryTypeCount)]
    host = HOST_VISIBLE | HOST_COHERENT

    def pick(want, avoid=0):
        return [(i, f) for i, f in types if f & want == want and not f & avoid]
    def unique(entries):  # keep first occurrence; unusual types go last
        seen, out = set(), []
        for i, f in entries + types:
            if i not in seen:
                seen.add(i)
                out.append((i, f))
        return out
    tensor = unique(pick(DEVICE_LOCAL | host) + pick(DEVICE_LOCAL, host) + pick(host))
    # Staging wants plain host memory, cached where offered (read-backs).
    staging = unique(pick(host | HOST_CACHED, DEVICE_LOCAL) + pick(host, DEVICE_LOCAL) + pick(host))
    return tensor, staging
