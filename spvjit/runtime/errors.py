"""DeviceError and the helper that turns VkResult codes into it.

Every Vulkan failure the runtime can see surfaces as a DeviceError whose
message is one line saying what was being done and which VkResult came back,
so the CLI can print it without a traceback.
"""

from __future__ import annotations


from ..errors import DeviceError  # noqa: F401  (defined at the bottom, re-exported here)


# The common VkResult codes, by value. Anything else is looked up in the
# `vulkan` package's constants on demand (it has every name, but scanning its
# ~20k attributes is only worth doing on the error path).
_RESULT_NAMES = {
    0: "VK_SUCCESS", 1: "VK_NOT_READY", 2: "VK_TIMEOUT", 5: "VK_INCOMPLETE",
    -1: "VK_ERROR_OUT_OF_HOST_MEMORY", -2: "VK_ERROR_OUT_OF_DEVICE_MEMORY",
    -3: "VK_ERROR_INITIALIZATION_FAILED", -4: "VK_ERROR_DEVICE_LOST",
    -6: "VK_ERROR_LAYER_NOT_PRESENT", -7: "VK_ERROR_EXTENSION_NOT_PRESENT",
    -8: "VK_ERROR_FEATURE_NOT_PRESENT", -9: "VK_ERROR_INCOMPATIBLE_DRIVER",
    -10: "VK_ERROR_TOO_MANY_OBJECTS", -11: "VK_ERROR_FORMAT_NOT_SUPPORTED",
    -12: "VK_ERROR_FRAGMENTED_POOL", -13: "VK_ERROR_UNKNOWN",
    -1000069000: "VK_ERROR_OUT_OF_POOL_MEMORY",
    -1000012000: "VK_ERROR_INVALID_SHADER_NV",
}

OUT_OF_MEMORY = (-1, -2)


def result_name(code: int) -> str:
    name = _RESULT_NAMES.get(code)
    if name is not None:
        return name
    try:
        import vulkan as vk
    except Exception:  # the loader may be missing; the number still helps
        return f"VkResult {code}"
    for attr in dir(vk):
        if attr.startswith("VK_ERROR_") and getattr(vk, attr) == code:
            _RESULT_NAMES[code] = attr
            return attr
    return f"VkResult {code}"


def check(result: int, what: str) -> int:
    """Raise DeviceError when a vk call returned an error code (< 0)."""
    if result < 0:
        raise DeviceError(f"{what} failed: {result_name(result)}")
    return result
