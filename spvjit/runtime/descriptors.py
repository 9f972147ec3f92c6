"""Descriptor sets, cached per (binding kinds, buffers, texel formats).

A kernel launched repeatedly on the same tensors reuses one VkDescriptorSet,
so the steady-state cost of a dispatch is a dict lookup. Keys use buffer uids
(never reused) rather than VkBuffer handles (which a driver may reuse after a
buffer is destroyed); when a buffer is freed its sets are freed with it.
"""

from __future__ import annotations

from .errors import check

STORAGE_BUFFER, UNIFORM_TEXEL_BUFFER = 7, 4  # VkDescriptorType
DESCRIPTOR_TYPES = {"storage": STORAGE_BUFFER, "uniform_texel": UNIFORM_TEXEL_BUFFER}

_POOL_SETS = 512
_FREE_DESCRIPTOR_SET_BIT = 0x1
_OUT_OF_POOL = (-1000069000, -12)  # VK_ERROR_OUT_OF_POOL_MEMORY, VK_ERROR_FRAGMENTED_POOL


class DescriptorCache:
    def __init__(self, device):
        self.device = device
        self.pools = []        # every pool, destroyed with the device
        self.sets = {}         # key -> (VkDescriptorSet[1], pool)
        self.by_buffer = {}    # buffer uid -> set of keys naming it

    def get(self, pipeline, bufs, formats):
        key = (pipeline.bindings, tuple([b.uid for b in bufs]), formats)
        entry = self.sets.get(key)
        if entry is None:
            entry = self._create(key, pipeline, bufs, formats)
        return entry[0]

    def _new_pool(self):
        d = self.device
        ffi, lib, vk = d.ffi, d.lib, d.vk
        sizes = ffi.new("VkDescriptorPoolSize[2]", [
            {"type": STORAGE_BUFFER, "descriptorCount": _POOL_SETS * 8},
            {"type": UNIFORM_TEXEL_BUFFER, "descriptorCount": _POOL_SETS * 4}])
        info = ffi.new("VkDescriptorPoolCreateInfo*", {
            "sType": vk.VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
            "flags": _FREE_DESCRIPTOR_SET_BIT, "maxSets": _POOL_SETS,
            "poolSizeCount": 2, "pPoolSizes": sizes})
        pool = ffi.new("VkDescriptorPool*")
        check(lib.vkCreateDescriptorPool(d.handle, info, ffi.NULL, pool), "creating a descriptor pool")
        self.pools.append(pool[0])
        return pool[0]

    def _allocate(self, set_layout):
        d = self.device
        ffi, lib, vk = d.ffi, d.lib, d.vk
        layouts = ffi.new("VkDescriptorSetLayout[1]", [set_layout])
        out = ffi.new("VkDescriptorSet[1]")
        # Newest pool first: older ones are usually full. A fresh pool is
        # made when all refuse (sets are freed back to their own pool).
        for pool in reversed(self.pools):
            info = ffi.new("VkDescriptorSetAllocateInfo*", {
                "sType": vk.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                "descriptorPool": pool, "descriptorSetCount": 1, "pSetLayouts": layouts})
            result = lib.vkAllocateDescriptorSets(d.handle, info, out)
            if result == 0:
                return out, pool
            if result not in _OUT_OF_POOL:
                check(result, "allocating a descriptor set")
        pool = self._new_pool()
        info = ffi.new("VkDescriptorSetAllocateInfo*", {
            "sType": vk.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
            "descriptorPool": pool, "descriptorSetCount": 1, "pSetLayouts": layouts})
        check(lib.vkAllocateDescriptorSets(d.handle, info, out), "allocating a descriptor set")
        return out, pool

    def _create(self, key, pipeline, bufs, formats):
        d = self.device
        ffi, lib, vk = d.ffi, d.lib, d.vk
        dset, pool = self._allocate(pipeline.set_layout)
        n = len(bufs)
        infos = ffi.new("VkDescriptorBufferInfo[]", max(n, 1))
        views = ffi.new("VkBufferView[]", max(n, 1))
        writes = ffi.new("VkWriteDescriptorSet[]", max(n, 1))
        fmt_iter = iter(formats or ())
        for i, (kind, buf) in enumerate(zip(pipeline.bindings, bufs)):
            w = writes[i]
            w.sType = vk.VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET
            w.dstSet = dset[0]
            w.dstBinding = i
            w.descriptorCount = 1
            w.descriptorType = DESCRIPTOR_TYPES[kind]
            if kind == "storage":
                infos[i].buffer, infos[i].offset, infos[i].range = buf.handle, 0, buf.size
                w.pBufferInfo = infos + i
            else:
                views[i] = buf.view(next(fmt_iter))
                w.pTexelBufferView = views + i
        if n:
            lib.vkUpdateDescriptorSets(d.handle, n, writes, 0, ffi.NULL)
        entry = (dset, pool)
        self.sets[key] = entry
        for uid in key[1]:
            self.by_buffer.setdefault(uid, set()).add(key)
        return entry

    def forget_buffer(self, uid):
        """Free every cached set naming buffer `uid` (called when it is freed)."""
        keys = self.by_buffer.pop(uid, None)
        if not keys:
            return
        d = self.device
        for key in keys:
            entry = self.sets.pop(key, None)
            if entry is None:
                continue
            for other in key[1]:
                if other != uid and other in self.by_buffer:
                    self.by_buffer[other].discard(key)
            # The spec gives vkFreeDescriptorSets no failure codes.
            d.lib.vkFreeDescriptorSets(d.handle, entry[1], 1, entry[0])

    def destroy(self):
        d = self.device
        for pool in self.pools:
            d.lib.vkDestroyDescriptorPool(d.handle, pool, d.ffi.NULL)
        self.pools.clear()
        self.sets.clear()
        self.by_buffer.clear()
