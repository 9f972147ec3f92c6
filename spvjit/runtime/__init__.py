"""Vulkan runtime: devices and their capabilities, tensors, pipelines, batches.

    dev = get_device()
    pipe = dev.create_pipeline(spirv, ["storage", "storage"], push_constant_size=8)
    with dev.batch() as b:
        b.dispatch(pipe, [x, y], struct.pack("<If", n, 2.0), (groups, 1, 1))
"""

from .capabilities import CoopMatConfig, DeviceCaps
from .commands import CommandBatch
from .device import Device, get_device
from .errors import DeviceError
from .instance import choose_device, list_devices
from .pipeline import Pipeline
from .tensor import Tensor, empty, empty_like, tensor, zeros, zeros_like

__all__ = ["CommandBatch", "CoopMatConfig", "Device", "DeviceCaps", "DeviceError", "Pipeline",
           "Tensor", "choose_device", "empty", "empty_like", "get_device", "list_devices",
           "tensor", "zeros", "zeros_like"]
