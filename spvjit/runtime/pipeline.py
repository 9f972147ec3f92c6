"""Compute pipelines: SPIR-V module + descriptor set 0 layout + push constants.

Descriptor set layouts and pipeline layouts depend only on the binding kinds
and the push-constant size, so the Device shares them between pipelines
(and descriptor sets can then be shared too).
"""

from __future__ import annotations

import struct
import weakref

from .descriptors import DESCRIPTOR_TYPES
from .errors import DeviceError, check, result_name

SPIRV_MAGIC = 0x07230203
_STAGE_COMPUTE = 0x20
# VkPipelineShaderStageCreateFlags
_ALLOW_VARYING_SUBGROUP_SIZE, _REQUIRE_FULL_SUBGROUPS = 0x1, 0x2
_REQUIRED_SUBGROUP_SIZE_INFO = 1000225001  # VkPipelineShaderStageRequiredSubgroupSizeCreateInfo


def _spec_bytes(value) -> bytes:
    # bool first: it is an int subclass but must become a VkBool32.
    if isinstance(value, bool):
        return struct.pack("<I", int(value))
    if isinstance(value, int):
        return struct.pack("<i" if value < 2**31 else "<I", value)
    if isinstance(value, float):
        return struct.pack("<f", value)
    raise DeviceError(f"specialization constant value {value!r} is not an int, float or bool")


class Pipeline:
    """A compiled compute pipeline; freed when garbage-collected."""

    def __init__(self, device, spirv: bytes, bindings, push_constant_size: int,
                 spec_constants=None, entry: str = "main", subgroup_size: int | None = None):
        ffi, lib, vk = device.ffi, device.lib, device.vk
        caps = device.caps
        self.device = device
        self.bindings = tuple(bindings)
        for kind in self.bindings:
            if kind not in DESCRIPTOR_TYPES:
                raise DeviceError(f"unknown binding kind {kind!r}; expected one of {sorted(DESCRIPTOR_TYPES)}")
        self.texel_slots = tuple(i for i, k in enumerate(self.bindings) if k == "uniform_texel")
        # Push ranges are multiples of 4 bytes.
        self.push_constant_size = (int(push_constant_size) + 3) // 4 * 4
        if self.push_constant_size > caps.max_push_constants_size:
            raise DeviceError(f"push constants of {push_constant_size} bytes exceed the "
                              f"{caps.max_push_constants_size}-byte limit of {caps.name!r}")
        spirv = bytes(spirv)
        if len(spirv) % 4 or len(spirv) < 20 or struct.unpack_from("<I", spirv)[0] != SPIRV_MAGIC:
            raise DeviceError("create_pipeline: not a SPIR-V module (bad magic number or length)")
        self.set_layout = device._set_layout(self.bindings)
        self.layout = device._pipeline_layout(self.bindings, self.push_constant_size)

        code = ffi.new("uint32_t[]", len(spirv) // 4)
        ffi.memmove(code, spirv, len(spirv))
        module_info = ffi.new("VkShaderModuleCreateInfo*", {
            "sType": vk.VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
            "codeSize": len(spirv), "pCode": code})  # codeSize counts bytes
        module = ffi.new("VkShaderModule*")
        result = lib.vkCreateShaderModule(device.handle, module_info, ffi.NULL, module)
        if result < 0:
            raise DeviceError(f"creating a shader module ({len(spirv)} bytes) failed: {result_name(result)}")

        keep = []  # cdata that must live until vkCreateComputePipelines returns
        spec_info = ffi.NULL
        if spec_constants:
            entries = ffi.new("VkSpecializationMapEntry[]", len(spec_constants))
            data = b""
            for i, (spec_id, value) in enumerate(sorted(spec_constants.items())):
                raw = _spec_bytes(value)
                entries[i].constantID, entries[i].offset, entries[i].size = int(spec_id), len(data), len(raw)
                data += raw
            data_buf = ffi.new("char[]", data)
            spec_info = ffi.new("VkSpecializationInfo*", {
                "mapEntryCount": len(spec_constants), "pMapEntries": entries,
                "dataSize": len(data), "pData": data_buf})  # dataSize counts bytes
            keep += [entries, data_buf]

        stage_flags, stage_next = 0, ffi.NULL
        if subgroup_size is not None:
            if caps.subgroup_size_control is None:
                raise DeviceError(f"{caps.name!r} cannot set a pipeline's subgroup size")
            lo, hi = caps.subgroup_size_control
            if not lo <= subgroup_size <= hi:
                raise DeviceError(f"subgroup size {subgroup_size} outside {lo}..{hi} on {caps.name!r}")
            stage_next = ffi.new("VkPipelineShaderStageRequiredSubgroupSizeCreateInfo*", {
                "sType": _REQUIRED_SUBGROUP_SIZE_INFO, "requiredSubgroupSize": subgroup_size})
            keep.append(stage_next)
            if "computeFullSubgroups" in caps.features:
                stage_flags = _REQUIRE_FULL_SUBGROUPS
        name = ffi.new("char[]", entry.encode())
        info = ffi.new("VkComputePipelineCreateInfo*", {
            "sType": vk.VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
            "stage": {"sType": vk.VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                      "pNext": stage_next, "flags": stage_flags,
                      "stage": _STAGE_COMPUTE, "module": module[0], "pName": name,
                      "pSpecializationInfo": spec_info},
            "layout": self.layout})
        handle = ffi.new("VkPipeline*")
        result = lib.vkCreateComputePipelines(device.handle, ffi.NULL, 1, info, ffi.NULL, handle)
        # The module is only needed while the pipeline is created.
        lib.vkDestroyShaderModule(device.handle, module[0], ffi.NULL)
        if result < 0:
            raise DeviceError(f"creating a compute pipeline (entry {entry!r}, bindings "
                              f"{list(self.bindings)}) failed: {result_name(result)}")
        self.handle = handle[0]
        weakref.finalize(self, lib.vkDestroyPipeline, device.handle, self.handle, ffi.NULL)

    def __repr__(self):
        return f"Pipeline(bindings={list(self.bindings)}, push_constant_size={self.push_constant_size})"


def create_set_layout(device, bindings):
    ffi, lib, vk = device.ffi, device.lib, device.vk
    n = len(bindings)
    entries = ffi.new("VkDescriptorSetLayoutBinding[]", max(n, 1))
    for i, kind in enumerate(bindings):
        entries[i].binding, entries[i].descriptorType = i, DESCRIPTOR_TYPES[kind]
        entries[i].descriptorCount, entries[i].stageFlags = 1, _STAGE_COMPUTE
    info = ffi.new("VkDescriptorSetLayoutCreateInfo*", {
        "sType": vk.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        "bindingCount": n, "pBindings": entries if n else ffi.NULL})
    out = ffi.new("VkDescriptorSetLayout*")
    check(lib.vkCreateDescriptorSetLayout(device.handle, info, ffi.NULL, out),
          f"creating a descriptor set layout for {list(bindings)}")
    return out[0]


def create_pipeline_layout(device, set_layout, push_size):
    ffi, lib, vk = device.ffi, device.lib, device.vk
    layouts = ffi.new("VkDescriptorSetLayout[1]", [set_layout])
    push = ffi.new("VkPushConstantRange*", {"stageFlags": _STAGE_COMPUTE, "offset": 0, "size": push_size})
    info = ffi.new("VkPipelineLayoutCreateInfo*", {
        "sType": vk.VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        "setLayoutCount": 1, "pSetLayouts": layouts,
        "pushConstantRangeCount": 1 if push_size else 0,
        "pPushConstantRanges": push if push_size else ffi.NULL})
    out = ffi.new("VkPipelineLayout*")
    check(lib.vkCreatePipelineLayout(device.handle, info, ffi.NULL, out), "creating a pipeline layout")
    return out[0]
