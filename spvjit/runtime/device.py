"""The logical device: queue, command buffers, shared layouts, caches.

`get_device()` returns the process-wide Device; `SPVJIT_DEVICE` picks it
(see instance.choose_device). All work is submitted to one compute queue and
waited for, so host reads after a batch always see its results.
"""

from __future__ import annotations

import atexit
import signal
import threading
import weakref
from contextlib import contextmanager

from .capabilities import FEATURE_STRUCTS, ChainLink, build_chain, for_kernels
from .commands import CommandBatch
from .descriptors import DescriptorCache
from .errors import DeviceError, check
from .instance import choose_device, get_instance
from .vkapi import vk_api
from .graph import RecordedGraph
from .memory import TEXEL_FORMATS, check_texel_count, memory_type_orders
from .pipeline import Pipeline, create_pipeline_layout, create_set_layout

# Features switched on when the device supports them. Deliberately absent:
# robustBufferAccess (bounds checks cost speed; kernels mask their accesses).
# bufferDeviceAddress is on where reported: tensor buffers then carry device
# addresses (runtime/device_address.py) for kernels that follow raw pointers.
WANTED_FEATURES = frozenset("""
shaderInt16 shaderInt64 shaderFloat64
storageBuffer16BitAccess uniformAndStorageBuffer16BitAccess storagePushConstant16
shaderFloat16 shaderInt8 storageBuffer8BitAccess uniformAndStorageBuffer8BitAccess
storagePushConstant8 vulkanMemoryModel vulkanMemoryModelDeviceScope
shaderSubgroupExtendedTypes shaderBufferInt64Atomics shaderSharedInt64Atomics scalarBlockLayout
subgroupSizeControl computeFullSubgroups shaderIntegerDotProduct maintenance4
shaderBufferFloat32Atomics shaderBufferFloat32AtomicAdd shaderSharedFloat32Atomics
shaderSharedFloat32AtomicAdd shaderBufferFloat16Atomics shaderBufferFloat16AtomicAdd
shaderBufferFloat16AtomicMinMax shaderBufferFloat32AtomicMinMax shaderSharedFloat16Atomics
shaderSharedFloat16AtomicAdd shaderSharedFloat16AtomicMinMax shaderSharedFloat32AtomicMinMax
bufferDeviceAddress
cooperativeMatrix
cooperativeMatrixWorkgroupScope cooperativeMatrixFlexibleDimensions cooperativeMatrixReductions
cooperativeMatrixConversions cooperativeMatrixPerElementOperations
cooperativeMatrixTensorAddressing cooperativeMatrixBlockLoads
shaderSubgroupRotate shaderSubgroupRotateClustered
shaderBFloat16Type shaderBFloat16CooperativeMatrix
""".split())

# Extensions that must be enabled alongside another one (spec dependencies).
_EXTENSION_NEEDS = {"VK_EXT_shader_atomic_float2": "VK_EXT_shader_atomic_float",
                    "VK_NV_cooperative_matrix2": "VK_KHR_cooperative_matrix"}

_DEVICE = None
_DEVICE_LOCK = threading.Lock()


def get_device() -> "Device":
    """The process-wide Device, created on first use."""
    global _DEVICE
    if _DEVICE is None:
        with _DEVICE_LOCK:
            if _DEVICE is None:
                inst = get_instance()
                _DEVICE = Device(inst, choose_device(inst.caps))
    return _DEVICE


class Device:
    def __init__(self, instance, index: int):
        self.vk, self.ffi, self.lib = vk_api()
        vk, ffi, lib = self.vk, self.ffi, self.lib
        self._instance = instance  # the instance must outlive the device
        self.caps = caps = instance.caps[index]
        self.physical = instance.physical_devices[index]
        if caps.compute_queue_family < 0:
            raise DeviceError(f"{caps.name!r} has no compute queue")

        head = ChainLink(ffi, "VkPhysicalDeviceFeatures2", vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2)
        for name, _ in ffi.typeof("VkPhysicalDeviceFeatures").fields:
            if name in WANTED_FEATURES and name in caps.features:
                setattr(head.ptr.features, name, 1)
        links, link_exts = build_chain(ffi, head, FEATURE_STRUCTS, caps.api_version[:2], caps.extensions)
        # Keep only structs that enable something, and enable their extensions;
        # an extension struct in the chain without its extension is invalid.
        kept, extensions = [], []
        for link, ext in zip(links, link_exts):
            on = [n for n in link.fields if n in WANTED_FEATURES and n in caps.features]
            if not on:
                continue
            for n in on:
                link.set(n, 1)
            kept.append(link)
            if ext and ext not in extensions:
                extensions.append(ext)
        for ext, needs in _EXTENSION_NEEDS.items():
            if ext in extensions and needs not in extensions and needs in caps.extensions:
                extensions.append(needs)
        prev = head
        for link in kept:
            prev.link(link)
            prev = link
        ffi.cast("VkBaseOutStructure*", prev.ptr).pNext = ffi.NULL
        self.enabled_extensions = tuple(extensions)

        priority = ffi.new("float[1]", [1.0])
        queue_info = ffi.new("VkDeviceQueueCreateInfo*", {
            "sType": vk.VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
            "queueFamilyIndex": caps.compute_queue_family, "queueCount": 1,
            "pQueuePriorities": priority})
        ext_names = [ffi.new("char[]", e.encode()) for e in extensions]
        ext_array = ffi.new("char*[]", ext_names) if ext_names else ffi.NULL
        info = ffi.new("VkDeviceCreateInfo*", {
            "sType": vk.VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, "pNext": head.ptr,
            "queueCreateInfoCount": 1, "pQueueCreateInfos": queue_info,
            "enabledExtensionCount": len(extensions), "ppEnabledExtensionNames": ext_array})
        handle = ffi.new("VkDevice*")
        check(lib.vkCreateDevice(self.physical, info, ffi.NULL, handle),
              f"creating a logical device on {caps.name!r}")
        self.handle = handle[0]
        queue = ffi.new("VkQueue*")
        lib.vkGetDeviceQueue(self.handle, caps.compute_queue_family, 0, queue)
        self.queue = queue[0]

        pool_info = ffi.new("VkCommandPoolCreateInfo*", {
            "sType": vk.VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
            "flags": vk.VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
            "queueFamilyIndex": caps.compute_queue_family})
        pool = ffi.new("VkCommandPool*")
        check(lib.vkCreateCommandPool(self.handle, pool_info, ffi.NULL, pool), "creating a command pool")
        self.command_pool = pool[0]

        self.tensor_types, self.staging_types = memory_type_orders(ffi, lib, self.physical)
        self.descriptors = DescriptorCache(self)
        self._lock = threading.RLock()
        self._set_layouts, self._pipeline_layouts = {}, {}
        self._free_commands, self._free_query_pools, self._all_query_pools = [], [], []
        self._format_support = {}
        bits = instance_queue_timestamp_bits(ffi, lib, self.physical, caps.compute_queue_family)
        self._timestamp_mask = (1 << bits) - 1 if bits < 64 else (1 << 64) - 1
        # Barriers reused by every batch (see commands.CommandBatch._barrier).
        SHADER_READ, SHADER_WRITE, TRANSFER_READ, TRANSFER_WRITE = 0x20, 0x40, 0x800, 0x1000
        self._compute_barrier = ffi.new("VkMemoryBarrier*", {
            "sType": vk.VK_STRUCTURE_TYPE_MEMORY_BARRIER,
            "srcAccessMask": SHADER_WRITE, "dstAccessMask": SHADER_READ | SHADER_WRITE})
        self._full_barrier = ffi.new("VkMemoryBarrier*", {
            "sType": vk.VK_STRUCTURE_TYPE_MEMORY_BARRIER,
            "srcAccessMask": SHADER_WRITE | TRANSFER_WRITE,
            "dstAccessMask": SHADER_READ | SHADER_WRITE | TRANSFER_READ | TRANSFER_WRITE})
        self._finalizer = weakref.finalize(self, _destroy_device, ffi, lib, self.handle,
                                           self.command_pool, self.descriptors,
                                           self._set_layouts, self._pipeline_layouts,
                                           self._all_query_pools, self._free_commands)
        # At exit, buffers are freed by their finalizers, which run before this device's.  A
        # Ctrl-C can leave a submission running (it broke out of the fence wait): freeing its
        # buffers under it made lavapipe abort.  atexit runs this first (registered after the
        # finalizers' own exit hook), so nothing is freed while the device still works.
        atexit.register(_wait_idle_at_exit, weakref.ref(self))

    def __repr__(self):
        return f"<spvjit Device {self.caps.index}: {self.caps.name}>"

    @property
    def kernel_caps(self):
        """What kernels are compiled for: `caps`, less a CPU driver's emulated cooperative
        matrices unless SPVJIT_CPU_COOPMAT=1 (capabilities.for_kernels)."""
        return for_kernels(self.caps)

    # -- public API --------------------------------------------------------
    def create_pipeline(self, spirv: bytes, bindings, push_constant_size: int = 0,
                        spec_constants=None, entry: str = "main", subgroup_size=None) -> Pipeline:
        return Pipeline(self, spirv, bindings, push_constant_size, spec_constants, entry, subgroup_size)

    def record(self, timestamps: bool = False):
        """Like batch(), but nothing runs at exit: the recorded commands run at each replay()."""
        return RecordedGraph(self, timestamps)

    def batch(self, timestamps: bool = False) -> CommandBatch:
        return CommandBatch(self, timestamps)

    def dispatch(self, pipeline, buffers, push_constants=b"", groups=(1, 1, 1), texel_format=None):
        with CommandBatch(self) as b:
            b.dispatch(pipeline, buffers, push_constants, groups, texel_format)

    def synchronize(self):
        """Wait for the queue to drain (batches already wait; this is for API parity)."""
        with self._lock:
            check(self.lib.vkQueueWaitIdle(self.queue), "waiting for the queue")

    # -- internals used by the other runtime modules -----------------------
    def _set_layout(self, bindings):
        layout = self._set_layouts.get(bindings)
        if layout is None:
            layout = self._set_layouts[bindings] = create_set_layout(self, bindings)
        return layout

    def _pipeline_layout(self, bindings, push_size):
        key = (bindings, push_size)
        layout = self._pipeline_layouts.get(key)
        if layout is None:
            layout = create_pipeline_layout(self, self._set_layout(bindings), push_size)
            self._pipeline_layouts[key] = layout
        return layout

    def _create_buffer_view(self, buf, fmt):
        ffi, lib, vk = self.ffi, self.lib, self.vk
        if fmt not in TEXEL_FORMATS:
            raise DeviceError(f"unknown texel format {fmt!r}; known: {', '.join(TEXEL_FORMATS)}")
        vk_format, texel = TEXEL_FORMATS[fmt]
        if vk_format not in self._format_support:
            props = ffi.new("VkFormatProperties*")
            lib.vkGetPhysicalDeviceFormatProperties(self.physical, vk_format, props)
            # VK_FORMAT_FEATURE_UNIFORM_TEXEL_BUFFER_BIT
            self._format_support[vk_format] = bool(props.bufferFeatures & 0x8)
        if not self._format_support[vk_format]:
            raise DeviceError(f"{self.caps.name!r} cannot read {fmt} through a uniform texel buffer")
        count = buf.size // texel
        check_texel_count(self.caps, count, fmt, f"a buffer view of {buf.size} bytes")
        info = ffi.new("VkBufferViewCreateInfo*", {
            "sType": vk.VK_STRUCTURE_TYPE_BUFFER_VIEW_CREATE_INFO, "buffer": buf.handle,
            "format": vk_format, "offset": 0, "range": count * texel})
        out = ffi.new("VkBufferView*")
        check(lib.vkCreateBufferView(self.handle, info, ffi.NULL, out), f"creating a {fmt} buffer view")
        return out[0]

    def _acquire_command_buffer(self, reusable: bool = False):
        ffi, lib, vk = self.ffi, self.lib, self.vk
        if self._free_commands:
            cmd, fence = self._free_commands.pop()
        else:
            info = ffi.new("VkCommandBufferAllocateInfo*", {
                "sType": vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                "commandPool": self.command_pool, "level": vk.VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                "commandBufferCount": 1})
            out = ffi.new("VkCommandBuffer*")
            check(lib.vkAllocateCommandBuffers(self.handle, info, out), "allocating a command buffer")
            fence_info = ffi.new("VkFenceCreateInfo*", {"sType": vk.VK_STRUCTURE_TYPE_FENCE_CREATE_INFO})
            fence = ffi.new("VkFence[1]")
            check(lib.vkCreateFence(self.handle, fence_info, ffi.NULL, fence), "creating a fence")
            cmd = out[0]
        begin = ffi.new("VkCommandBufferBeginInfo*", {
            "sType": vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
            "flags": 0 if reusable else vk.VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT})
        # The pool's RESET_COMMAND_BUFFER flag makes begin reset the buffer.
        result = lib.vkBeginCommandBuffer(cmd, begin)
        if result < 0:
            self._free_commands.append((cmd, fence))
            check(result, "beginning a command buffer")
        return cmd, fence

    def _release_command_buffer(self, cmd, fence):
        self._free_commands.append((cmd, fence))

    def _submit_and_wait(self, cmd, fence):
        ffi, lib, vk = self.ffi, self.lib, self.vk
        cmds = ffi.new("VkCommandBuffer[1]", [cmd])
        submit = ffi.new("VkSubmitInfo*", {"sType": vk.VK_STRUCTURE_TYPE_SUBMIT_INFO,
                                           "commandBufferCount": 1, "pCommandBuffers": cmds})
        # Ctrl-C is held back until the work is done and the fence reset: a KeyboardInterrupt
        # between submit and wait left work running on buffers and command buffers that
        # were then freed or reused (lavapipe aborted or crashed at exit, about 1 run in 4)
        with _sigint_deferred():
            check(lib.vkQueueSubmit(self.queue, 1, submit, fence[0]), "submitting work")
            check(lib.vkWaitForFences(self.handle, 1, fence, 1, (1 << 64) - 1), "waiting for a fence")
            check(lib.vkResetFences(self.handle, 1, fence), "resetting a fence")

    def _acquire_query_pool(self, count):
        if self._free_query_pools:
            return self._free_query_pools.pop()
        ffi, lib, vk = self.ffi, self.lib, self.vk
        info = ffi.new("VkQueryPoolCreateInfo*", {
            "sType": vk.VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
            "queryType": vk.VK_QUERY_TYPE_TIMESTAMP, "queryCount": count})
        out = ffi.new("VkQueryPool*")
        check(lib.vkCreateQueryPool(self.handle, info, ffi.NULL, out), "creating a timestamp query pool")
        self._all_query_pools.append(out[0])
        return out[0]

    def _release_query_pools(self, pools):
        self._free_query_pools.extend(pools)


def instance_queue_timestamp_bits(ffi, lib, phys, family):
    count = ffi.new("uint32_t*")
    lib.vkGetPhysicalDeviceQueueFamilyProperties(phys, count, ffi.NULL)
    fams = ffi.new("VkQueueFamilyProperties[]", count[0])
    lib.vkGetPhysicalDeviceQueueFamilyProperties(phys, count, fams)
    return fams[family].timestampValidBits


@contextmanager
def _sigint_deferred():
    """Hold Ctrl-C back for the duration; it takes effect (with the handler that was in place)
    once the block is done.

    Blocking SIGINT in the main thread is not enough: the process-wide signal then goes to
    one of the driver's own threads (lavapipe's queue and worker threads do not block it),
    whose C handler flags it, and Python raised KeyboardInterrupt in the main thread at the
    next bytecode, between vkQueueSubmit and the fence wait.  The submission then ran on
    while its buffers and descriptor sets were freed: "double free or corruption" at exit in
    about 1 of 10 interrupted `spvjit run`s.  So the Python-level handler itself is swapped for
    one that only notes the signal, and the signal is raised again afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum))
    except ValueError:          # not the main interpreter's main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if noted:
            signal.raise_signal(signal.SIGINT)


def _wait_idle_at_exit(device_ref) -> None:
    device = device_ref()
    if device is not None and device._finalizer.alive:
        device.lib.vkDeviceWaitIdle(device.handle)


def _destroy_device(ffi, lib, handle, command_pool, descriptors, set_layouts,
                    pipeline_layouts, query_pools, commands):
    lib.vkDeviceWaitIdle(handle)
    descriptors.destroy()
    for layout in pipeline_layouts.values():
        lib.vkDestroyPipelineLayout(handle, layout, ffi.NULL)
    for layout in set_layouts.values():
        lib.vkDestroyDescriptorSetLayout(handle, layout, ffi.NULL)
    for pool in query_pools:
        lib.vkDestroyQueryPool(handle, pool, ffi.NULL)
    for _, fence in commands:
        lib.vkDestroyFence(handle, fence[0], ffi.NULL)
    lib.vkDestroyCommandPool(handle, command_pool, ffi.NULL)
    lib.vkDestroyDevice(handle, ffi.NULL)
