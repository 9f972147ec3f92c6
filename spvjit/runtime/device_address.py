"""Buffer device addresses (Vulkan 1.2 `bufferDeviceAddress`): what `Tensor.data_ptr()`
returns, so kernels can load an address from memory and follow it
(`tl.load(a_ptrs + g).to(tl.pointer_type(tl.float16))`, Triton's tutorial 08).

Where the device reports the feature, every tensor buffer is created with
SHADER_DEVICE_ADDRESS usage and its memory allocated with the DEVICE_ADDRESS flag
(`memory.Buffer`); the feature is enabled at device creation (`device.WANTED_FEATURES`).

Lifetime rule, as in Triton/CUDA: an address is only a number.  The user keeps the
tensor alive while any kernel may use its address; a kernel that follows the address of
a freed tensor is the user's bug.  spvjit never frees a buffer behind the user's back:
a buffer is freed only when its Tensor is garbage (and the device waits for work in
flight before freeing at exit).
"""
from __future__ import annotations

from .errors import DeviceError

# Vulkan 1.2 core values (the `vulkan` package names only their KHR/EXT aliases, some as None)
SHADER_DEVICE_ADDRESS_USAGE = 0x20000          # VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT
MEMORY_ALLOCATE_DEVICE_ADDRESS = 0x2           # VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT
STYPE_MEMORY_ALLOCATE_FLAGS_INFO = 1000060000
STYPE_BUFFER_DEVICE_ADDRESS_INFO = 1000244001


def supported(caps) -> bool:
    return bool(getattr(caps, "buffer_device_address", False))


def require(caps, what: str) -> None:
    """A DeviceError naming the device when it has no buffer device addresses."""
    if not supported(caps):
        raise DeviceError(f"{what} needs buffer device addresses (bufferDeviceAddress), which "
                          f"{caps.name!r} does not support")


def allocate_flags_info(device):
    """The VkMemoryAllocateFlagsInfo to chain into a tensor allocation (None without the feature)."""
    if not supported(device.caps):
        return None
    return device.ffi.new("VkMemoryAllocateFlagsInfo*", {
        "sType": STYPE_MEMORY_ALLOCATE_FLAGS_INFO, "flags": MEMORY_ALLOCATE_DEVICE_ADDRESS})


def buffer_address(device, handle) -> int:
    """The device address of a buffer created with SHADER_DEVICE_ADDRESS usage."""
    ffi, lib = device.ffi, device.lib
    info = ffi.new("VkBufferDeviceAddressInfo*", {
        "sType": STYPE_BUFFER_DEVICE_ADDRESS_INFO, "buffer": handle})
    address = int(lib.vkGetBufferDeviceAddress(device.handle, info))
    if address == 0:
        raise DeviceError(f"vkGetBufferDeviceAddress returned 0 on {device.caps.name!r}")
    return address
