"""The `vulkan` package, imported on first use.

It dlopens libvulkan.so.1 at import time and raises OSError when the loader is missing;
that failure becomes a DeviceError that says what to install.
"""
from __future__ import annotations

from .errors import DeviceError

_API = None


def vk_api():
    """(vulkan module, ffi, lib), importing the package on first use."""
    global _API
    if _API is None:
        try:
            import vulkan as vk
            from vulkan._vulkan import ffi, lib
        except OSError:
            raise DeviceError(
                "the Vulkan loader libvulkan.so.1 was not found: install "
                "libvulkan1 (apt-get install libvulkan1 mesa-vulkan-drivers)"
            ) from None
        _API = (vk, ffi, lib)
    return _API
