"""Vulkan loader, the process-wide VkInstance, and physical-device selection.

The `vulkan` package is imported on first use (vkapi.py): a missing loader
becomes a DeviceError that says which package to install.

The runtime talks to Vulkan through the package's cffi `ffi`/`lib` objects
directly rather than its Python wrappers: the wrappers drop falsy struct
fields and add per-call overhead that matters on the dispatch path.
"""

from __future__ import annotations

import os
import weakref

from .. import knobs

from .capabilities import query_caps
from .errors import DeviceError, check, result_name
from .vkapi import vk_api

_INSTANCE = None

# The `vulkan` package's headers stop at Vulkan 1.3, so that is the newest API
# the runtime can describe structs for; newer drivers still accept it.
_API_1_3 = (1 << 22) | (3 << 12)

NO_DRIVER_HINT = (
    "install mesa-vulkan-drivers (lavapipe) or a GPU driver, or check "
    "VK_ICD_FILENAMES / VK_DRIVER_FILES")

def _check_loader(result: int, what: str) -> int:
    """``check`` for the calls that make the loader read the driver manifests.

    The loader reports a manifest it cannot parse (or whose library will not load) as
    VK_ERROR_OUT_OF_HOST_MEMORY or VK_ERROR_INITIALIZATION_FAILED, which on its own
    sends people looking for a memory problem; say which files to look at instead.
    """
    if result in (-1, -3):  # VK_ERROR_OUT_OF_HOST_MEMORY, VK_ERROR_INITIALIZATION_FAILED
        chosen = [f"{var}={os.environ[var]}" for var in ("VK_ICD_FILENAMES", "VK_DRIVER_FILES", "VK_ADD_DRIVER_FILES")
                  if os.environ.get(var)]
        where = ", ".join(chosen) if chosen else "the manifests in /usr/share/vulkan/icd.d and /etc/vulkan/icd.d"
        raise DeviceError(f"{what} failed: {result_name(result)}, which the Vulkan loader reports for a "
                          f"driver manifest (ICD JSON) it cannot parse or load: check {where}")
    return check(result, what)


_TYPE_RANK = {"discrete": 0, "integrated": 1, "virtual": 2, "cpu": 3, "other": 4}


class Instance:
    """One VkInstance plus the capabilities of every physical device."""

    def __init__(self):
        vk, ffi, lib = vk_api()
        self.ffi, self.lib = ffi, lib
        version = ffi.new("uint32_t*")
        check(lib.vkEnumerateInstanceVersion(version), "vkEnumerateInstanceVersion")
        self.api_version = min(version[0], _API_1_3)

        # MoltenVK hides behind the portability enumeration; asking for it
        # costs nothing where the loader does not offer it.
        count = ffi.new("uint32_t*")
        _check_loader(lib.vkEnumerateInstanceExtensionProperties(ffi.NULL, count, ffi.NULL),
                      "listing instance extensions")
        props = ffi.new("VkExtensionProperties[]", count[0])
        _check_loader(lib.vkEnumerateInstanceExtensionProperties(ffi.NULL, count, props),
                      "listing instance extensions")
        available = {ffi.string(p.extensionName).decode() for p in props}
        wanted = [e for e in ("VK_KHR_portability_enumeration",) if e in available]
        ext_names = [ffi.new("char[]", e.encode()) for e in wanted]
        ext_array = ffi.new("char*[]", ext_names)

        app_name = ffi.new("char[]", b"spvjit")
        app = ffi.new("VkApplicationInfo*", {
            "sType": vk.VK_STRUCTURE_TYPE_APPLICATION_INFO,
            "pApplicationName": app_name, "pEngineName": app_name,
            "apiVersion": self.api_version})
        info = ffi.new("VkInstanceCreateInfo*", {
            "sType": vk.VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
            "pApplicationInfo": app,
            "enabledExtensionCount": len(wanted),
            "ppEnabledExtensionNames": ext_array if wanted else ffi.NULL,
            # VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR
            "flags": 1 if wanted else 0})
        handle = ffi.new("VkInstance*")
        result = lib.vkCreateInstance(info, ffi.NULL, handle)
        if result == vk.VK_ERROR_INCOMPATIBLE_DRIVER:
            raise DeviceError(f"no Vulkan driver (ICD) found: {NO_DRIVER_HINT}")
        _check_loader(result, "creating the Vulkan instance")
        self.handle = handle[0]
        weakref.finalize(self, lib.vkDestroyInstance, self.handle, ffi.NULL)

        check(lib.vkEnumeratePhysicalDevices(self.handle, count, ffi.NULL),
              "enumerating physical devices")
        if count[0] == 0:
            raise DeviceError(f"no Vulkan device found: {NO_DRIVER_HINT}")
        handles = ffi.new("VkPhysicalDevice[]", count[0])
        check(lib.vkEnumeratePhysicalDevices(self.handle, count, handles),
              "enumerating physical devices")
        self.physical_devices = [handles[i] for i in range(count[0])]

        self.caps = [query_caps(self, i, pd) for i, pd in enumerate(self.physical_devices)]


def get_instance() -> Instance:
    global _INSTANCE
    if _INSTANCE is None:
        _INSTANCE = Instance()
    return _INSTANCE


def list_devices():
    """DeviceCaps of every physical device, in the driver's order."""
    return list(get_instance().caps)


def choose_device(caps_list, selector: str | None = None) -> int:
    """Index of the device to use.

    `selector` (default: $SPVJIT_DEVICE) is an index or a case-insensitive
    substring of the device name; without one, the best device type wins
    (discrete > integrated > virtual > cpu > other), then the lowest index.
    """
    if selector is None:
        selector = knobs.get("SPVJIT_DEVICE")
    selector = selector.strip()
    ranked = sorted(caps_list, key=lambda c: (_TYPE_RANK.get(c.device_type, 9), c.index))
    if not selector:
        return ranked[0].index
    if selector.isdigit():
        index = int(selector)
        if index < len(caps_list):
            return index
    else:
        for caps in ranked:
            if selector.lower() in caps.name.lower():
                return caps.index
    names = ", ".join(f"{c.index}: {c.name}" for c in caps_list)
    raise DeviceError(f"SPVJIT_DEVICE={selector!r} matches no Vulkan device; available: {names}")
