"""DeviceCaps: what one physical device can do, read from the driver.

Features and properties are read with vkGetPhysicalDeviceFeatures2 /
Properties2 through pNext chains. Each chained struct is flattened into a
dict keyed by its field names (they are unique across the structs used
here), so the same field is found whether it came from a Vulkan 1.2/1.3 core
struct or, on older drivers, from the extension struct it was promoted from.

The chain is described as data (FEATURE_STRUCTS) because device creation
rebuilds it with the wanted features switched on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .. import knobs
from .errors import check
from .vkapi import vk_api

DEVICE_TYPES = {0: "other", 1: "integrated", 2: "discrete", 3: "virtual", 4: "cpu"}

SUBGROUP_OPS = {0x1: "basic", 0x2: "vote", 0x4: "arithmetic", 0x8: "ballot",
                0x10: "shuffle", 0x20: "shuffle_relative", 0x40: "clustered",
                0x80: "quad", 0x200: "rotate", 0x400: "rotate_clustered"}

COMPONENT_TYPES = {0: "f16", 1: "f32", 2: "f64", 3: "i8", 4: "i16", 5: "i32", 6: "i64",
                   7: "u8", 8: "u16", 9: "u32", 10: "u64", 1000141000: "bf16",
                   1000491000: "i8_packed", 1000491001: "u8_packed",
                   1000491002: "e4m3", 1000491003: "e5m2"}
SCOPES = {1: "device", 2: "workgroup", 3: "subgroup", 5: "queue_family"}

_SHADER_STAGE_COMPUTE = 0x20
_QUEUE_GRAPHICS, _QUEUE_COMPUTE = 0x1, 0x2


@dataclass(frozen=True)
class CoopMatConfig:
    """One VkCooperativeMatrixPropertiesKHR entry: C[m,n] += A[m,k] @ B[k,n]."""
    m: int
    n: int
    k: int
    a_type: str
    b_type: str
    c_type: str
    result_type: str
    saturating: bool
    scope: str


@dataclass(frozen=True)
class FlexConfig:
    """One VkCooperativeMatrixFlexibleDimensionsPropertiesNV entry: matrices of any M, N, K
    that are multiples of these granularities (up to CoopMat2.max_dimension)."""
    m_granularity: int
    n_granularity: int
    k_granularity: int
    a_type: str
    b_type: str
    c_type: str
    result_type: str
    saturating: bool
    scope: str
    workgroup_invocations: int     # workgroup scope: the workgroup size it needs (else 0)


# VkPhysicalDeviceCooperativeMatrix2FeaturesNV's fields, in struct order
COOPMAT2_FEATURES = ("cooperativeMatrixWorkgroupScope", "cooperativeMatrixFlexibleDimensions",
                     "cooperativeMatrixReductions", "cooperativeMatrixConversions",
                     "cooperativeMatrixPerElementOperations", "cooperativeMatrixTensorAddressing",
                     "cooperativeMatrixBlockLoads")
COOPMAT2_PROPERTIES = ("cooperativeMatrixWorkgroupScopeMaxWorkgroupSize",
                       "cooperativeMatrixFlexibleDimensionsMaxDimension",
                       "cooperativeMatrixWorkgroupScopeReservedSharedMemory")


@dataclass(frozen=True)
class CoopMat2:
    """What VK_NV_cooperative_matrix2 adds on this device (None in DeviceCaps where absent).
    `features` holds the short names of the supported features ("flexible_dimensions",
    "tensor_addressing", ...); the device enables all of them."""
    features: tuple
    workgroup_scope_max_workgroup_size: int
    flexible_max_dimension: int
    workgroup_scope_reserved_shared_memory: int
    flexible: tuple                # FlexConfig entries

    def has(self, feature: str) -> bool:
        return feature in self.features


def _short_feature(name: str) -> str:
    """cooperativeMatrixFlexibleDimensions -> flexible_dimensions"""
    tail = name[len("cooperativeMatrix"):]
    return "".join("_" + ch.lower() if ch.isupper() else ch for ch in tail).lstrip("_")


@dataclass(frozen=True)
class DeviceCaps:
    index: int
    name: str
    vendor_id: int
    device_id: int
    device_type: str
    driver_name: str
    driver_info: str
    driver_version: str
    api_version: tuple
    subgroup_size: int
    subgroup_ops: frozenset
    subgroup_size_control: tuple | None
    max_shared_memory: int
    max_push_constants_size: int
    max_workgroup_count: tuple
    max_workgroup_size: tuple
    max_workgroup_invocations: int
    max_storage_buffer_range: int
    max_texel_buffer_elements: int
    float16: bool
    float64: bool
    int8: bool
    int16: bool
    int64: bool
    storage_buffer_16bit: bool
    storage_buffer_8bit: bool
    push_constant_16bit: bool
    push_constant_8bit: bool
    float32_atomic_add: bool
    float32_atomic_minmax: bool
    integer_dot_product: bool
    integer_dot_product_accelerated: tuple
    vulkan_memory_model: bool
    cooperative_matrix: tuple
    cooperative_matrix2: CoopMat2 | None
    timestamp_period_ns: float
    timestamps_supported: bool
    memory_heaps: tuple
    extensions: frozenset = field(repr=False)
    # Every supported Vulkan feature by its struct field name
    # ("shaderFloat16", "cooperativeMatrix", ...), for codegen decisions and
    # for enabling them at device creation.
    features: frozenset = field(repr=False)
    compute_queue_family: int = field(repr=False)
    # subgroup arithmetic on 8/16/64-bit integers (VK_KHR_shader_subgroup_extended_types)
    subgroup_extended_types: bool = False
    # VkPhysicalDeviceFloatControlsProperties (core in 1.2): f16 results may be declared RTE
    rounding_rte_float16: bool = False
    # Vulkan 1.2 bufferDeviceAddress: tensors have device addresses (Tensor.data_ptr, tl.pointer_type)
    buffer_device_address: bool = False
    # SMs / compute units / shader cores, where an extension reports them (compute_unit_count);
    # 0: unknown (no core Vulkan property has it). spvjit/layouts.py sizes grids with it.
    compute_units: int = 0
    # shaderBufferInt64Atomics (core in 1.2): 64-bit integer atomics on storage buffers, which
    # also carry the f64 atomics (on the bits, as the f32 ones are on 32-bit words)
    int64_atomics: bool = False

    def to_dict(self) -> dict:
        """JSON-ready view (sets become sorted lists)."""
        out = {}
        for key, value in self.__dict__.items():
            if isinstance(value, frozenset):
                value = sorted(value)
            elif key == "cooperative_matrix":
                value = [c.__dict__ for c in value]
            elif key == "cooperative_matrix2":
                value = None if value is None else dict(
                    value.__dict__, features=list(value.features),
                    flexible=[c.__dict__ for c in value.flexible])
            elif isinstance(value, tuple):
                value = [list(v) if isinstance(v, tuple) else v for v in value]
            out[key] = value
        return out


# (struct, sType, when to chain it, extension that must be enabled with it).
# `when` gets (device api version tuple, extension names). Promoted structs
# are chained only where their core replacement is not, as the spec requires.
_V12, _V13 = (1, 2), (1, 3)
FEATURE_STRUCTS = [
    ("VkPhysicalDeviceVulkan11Features", 49, lambda a, e: a >= _V12, None),
    ("VkPhysicalDevice16BitStorageFeatures", 1000083000, lambda a, e: a < _V12, None),
    ("VkPhysicalDeviceVulkan12Features", 51, lambda a, e: a >= _V12, None),
    ("VkPhysicalDeviceShaderFloat16Int8Features", 1000082000,
     lambda a, e: a < _V12 and "VK_KHR_shader_float16_int8" in e, "VK_KHR_shader_float16_int8"),
    ("VkPhysicalDevice8BitStorageFeatures", 1000177000,
     lambda a, e: a < _V12 and "VK_KHR_8bit_storage" in e, "VK_KHR_8bit_storage"),
    ("VkPhysicalDeviceVulkan13Features", 53, lambda a, e: a >= _V13, None),
    ("VkPhysicalDeviceSubgroupSizeControlFeatures", 1000225002,
     lambda a, e: a < _V13 and "VK_EXT_subgroup_size_control" in e, "VK_EXT_subgroup_size_control"),
    ("VkPhysicalDeviceShaderIntegerDotProductFeatures", 1000280000,
     lambda a, e: a < _V13 and "VK_KHR_shader_integer_dot_product" in e,
     "VK_KHR_shader_integer_dot_product"),
    ("VkPhysicalDeviceShaderAtomicFloatFeaturesEXT", 1000260000,
     lambda a, e: "VK_EXT_shader_atomic_float" in e, "VK_EXT_shader_atomic_float"),
    ("VkPhysicalDeviceShaderAtomicFloat2FeaturesEXT", 1000273000,
     lambda a, e: "VK_EXT_shader_atomic_float2" in e, "VK_EXT_shader_atomic_float2"),
    ("VkPhysicalDeviceCooperativeMatrixFeaturesKHR", 1000506000,
     lambda a, e: "VK_KHR_cooperative_matrix" in e, "VK_KHR_cooperative_matrix"),
    # Newer than the package's headers: laid out by hand (sType, pNext, VkBool32...).
    (COOPMAT2_FEATURES, 1000593000,
     lambda a, e: "VK_NV_cooperative_matrix2" in e and "VK_KHR_cooperative_matrix" in e,
     "VK_NV_cooperative_matrix2"),
    # VK_KHR_shader_bfloat16: bf16 cooperative matrices (codegen/coopmat.py)
    (("shaderBFloat16Type", "shaderBFloat16DotProduct", "shaderBFloat16CooperativeMatrix"), 1000141000,
     lambda a, e: "VK_KHR_shader_bfloat16" in e, "VK_KHR_shader_bfloat16"),
    (("shaderSubgroupRotate", "shaderSubgroupRotateClustered"), 1000416000,
     lambda a, e: "VK_KHR_shader_subgroup_rotate" in e, "VK_KHR_shader_subgroup_rotate"),
]

PROPERTY_STRUCTS = [
    ("VkPhysicalDeviceVulkan11Properties", 50, lambda a, e: a >= _V12),
    ("VkPhysicalDeviceSubgroupProperties", 1000094000, lambda a, e: a < _V12),
    ("VkPhysicalDeviceVulkan12Properties", 52, lambda a, e: a >= _V12),
    ("VkPhysicalDeviceDriverProperties", 1000196000,
     lambda a, e: a < _V12 and "VK_KHR_driver_properties" in e),
    ("VkPhysicalDeviceVulkan13Properties", 54, lambda a, e: a >= _V13),
    ("VkPhysicalDeviceSubgroupSizeControlProperties", 1000225000,
     lambda a, e: a < _V13 and "VK_EXT_subgroup_size_control" in e),
    ("VkPhysicalDeviceShaderIntegerDotProductProperties", 1000280001,
     lambda a, e: a < _V13 and "VK_KHR_shader_integer_dot_product" in e),
    # Newer than the package's headers: laid out by hand (sType, pNext, uint32...).
    (COOPMAT2_PROPERTIES, 1000593002,
     lambda a, e: "VK_NV_cooperative_matrix2" in e and "VK_KHR_cooperative_matrix" in e),
    # How many SMs / compute units / shader cores (compute_unit_count below). Property
    # structs of device extensions may be chained wherever the device lists the extension.
    ("VkPhysicalDeviceShaderSMBuiltinsPropertiesNV", 1000154001, lambda a, e: "VK_NV_shader_sm_builtins" in e),
    ("VkPhysicalDeviceShaderCorePropertiesAMD", 1000185000, lambda a, e: "VK_AMD_shader_core_properties" in e),
    ("VkPhysicalDeviceShaderCoreProperties2AMD", 1000227000, lambda a, e: "VK_AMD_shader_core_properties2" in e),
    ("VkPhysicalDeviceShaderCoreBuiltinsPropertiesARM", 1000497001, lambda a, e: "VK_ARM_shader_core_builtins" in e),
]


def compute_unit_count(props: dict) -> int:
    """SMs (VK_NV_shader_sm_builtins), active compute units (VK_AMD_shader_core_properties2,
    else engines x arrays x CUs per array from VK_AMD_shader_core_properties) or shader cores
    (VK_ARM_shader_core_builtins) from the flattened property chain; 0 where none is reported.
    Vendor extensions the device lists, never its name: a device without them gets 0."""
    if props.get("shaderSMCount"):
        return int(props["shaderSMCount"])
    if props.get("activeComputeUnitCount"):
        return int(props["activeComputeUnitCount"])
    amd = [props.get(k, 0) for k in ("shaderEngineCount", "shaderArraysPerEngineCount",
                                       "computeUnitsPerShaderArray")]
    if all(amd):
        return int(amd[0] * amd[1] * amd[2])
    return int(props.get("shaderCoreCount", 0) or 0)


class ChainLink:
    """One struct in a pNext chain, typed (from the cdef) or hand-laid-out."""

    def __init__(self, ffi, struct, stype):
        self.ffi = ffi
        if isinstance(struct, str):
            self.ptr = ffi.new(struct + "*")
            self.ptr.sType = stype
            self.fields = [f for f, _ in ffi.typeof(struct).fields if f not in ("sType", "pNext")]
            self.raw = None
        else:
            # uint32 words: [0]=sType, [1]=padding, [2:4]=pNext, [4:]=VkBool32 / uint32 fields
            self.raw = ffi.new("uint32_t[]", 4 + len(struct))
            self.raw[0] = stype
            self.ptr = ffi.cast("VkBaseOutStructure*", self.raw)
            self.fields = list(struct)

    def get(self, name):
        if self.raw is not None:
            return self.raw[4 + self.fields.index(name)]
        return getattr(self.ptr, name)

    def set(self, name, value):
        if self.raw is not None:
            self.raw[4 + self.fields.index(name)] = int(value)
        else:
            setattr(self.ptr, name, value)

    def link(self, nxt):
        self.ffi.cast("VkBaseOutStructure*", self.ptr).pNext = self.ffi.cast(
            "VkBaseOutStructure*", nxt.ptr)


def build_chain(ffi, head, specs, api, extensions):
    """Chain the structs of `specs` that apply behind `head`; returns (links, exts)."""
    links, exts = [], []
    prev = head
    for spec in specs:
        struct, stype, when = spec[0], spec[1], spec[2]
        if not when(api, extensions):
            continue
        link = ChainLink(ffi, struct, stype)
        prev.link(link)
        prev = link
        links.append(link)
        exts.append(spec[3] if len(spec) > 3 else None)
    return links, exts


def _flatten(ffi, links, out):
    for link in links:
        for name in link.fields:
            value = link.get(name)
            if isinstance(value, ffi.CData):
                if ffi.typeof(value).kind == "array" and ffi.typeof(value).item.cname == "char":
                    out[name] = ffi.string(value).decode("utf-8", "replace")
                continue
            out[name] = value
    return out


def decode_driver_version(vendor_id: int, driver_id: int, raw: int) -> str:
    """Drivers pack driverVersion differently; decode the known schemes."""
    if vendor_id == 0x10DE:  # NVIDIA: 10.8.8.6 bits
        return f"{raw >> 22}.{(raw >> 14) & 0xFF}.{(raw >> 6) & 0xFF}.{raw & 0x3F}"
    if driver_id == 5:  # Intel proprietary Windows: 18.14 bits
        return f"{raw >> 14}.{raw & 0x3FFF}"
    if driver_id in (1, 2, 3, 6, 10, 13, 14, 18, 19, 20, 22, 23, 24, 25, 26):
        # AMD, Mesa drivers, SwiftShader, MoltenVK use VK_MAKE_VERSION.
        return f"{raw >> 22}.{(raw >> 12) & 0x3FF}.{raw & 0xFFF}"
    return f"0x{raw:08x}"


def _cooperative_matrix_configs(inst, phys, extensions):
    # Only where the device lists the extension: the loader hands back a
    # pointer even without it, and calling that pointer segfaults.
    if "VK_KHR_cooperative_matrix" not in extensions:
        return ()
    ffi, lib = inst.ffi, inst.lib
    name = b"vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR"
    pfn = lib.vkGetInstanceProcAddr(inst.handle, name)
    if pfn == ffi.NULL:
        return ()
    fn = ffi.cast("PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR", pfn)
    count = ffi.new("uint32_t*")
    check(fn(phys, count, ffi.NULL), "querying cooperative matrix properties")
    props = ffi.new("VkCooperativeMatrixPropertiesKHR[]", count[0])
    for i in range(count[0]):
        props[i].sType = 1000506001  # VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_KHR
    check(fn(phys, count, props), "querying cooperative matrix properties")

    def t(v):
        return COMPONENT_TYPES.get(v, f"type{v}")
    return tuple(CoopMatConfig(p.MSize, p.NSize, p.KSize, t(p.AType), t(p.BType), t(p.CType),
                               t(p.ResultType), bool(p.saturatingAccumulation),
                               SCOPES.get(p.scope, str(p.scope)))
                 for p in props[0:count[0]])


# VkCooperativeMatrixFlexibleDimensionsPropertiesNV as uint32 words: sType, padding, pNext
# (2 words), then MGranularity NGranularity KGranularity AType BType CType ResultType
# saturatingAccumulation scope workgroupInvocations; 56 bytes, 8-byte aligned.
_FLEX_WORDS = 14


def _flexible_configs(inst, phys, extensions, features):
    """vkGetPhysicalDeviceCooperativeMatrixFlexibleDimensionsPropertiesNV's entries (newer
    than the package's cdef: called through a cast pointer, with the structs laid out by hand)."""
    if "VK_NV_cooperative_matrix2" not in extensions or "cooperativeMatrixFlexibleDimensions" not in features:
        return ()
    ffi, lib = inst.ffi, inst.lib
    pfn = lib.vkGetInstanceProcAddr(inst.handle, b"vkGetPhysicalDeviceCooperativeMatrixFlexibleDimensionsPropertiesNV")
    if pfn == ffi.NULL:
        return ()
    fn = ffi.cast("VkResult(*)(VkPhysicalDevice, uint32_t*, void*)", pfn)
    count = ffi.new("uint32_t*")
    check(fn(phys, count, ffi.NULL), "querying flexible cooperative matrix properties")
    n = min(count[0], 4096)              # bound what a driver's count makes us allocate
    count[0] = n
    words = ffi.new("uint64_t[]", max(1, n * _FLEX_WORDS // 2))   # 8-byte aligned
    raw = ffi.cast("uint32_t*", words)
    for i in range(n):
        raw[i * _FLEX_WORDS] = 1000593001   # VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_FLEXIBLE_DIMENSIONS_PROPERTIES_NV
    check(fn(phys, count, raw), "querying flexible cooperative matrix properties")

    def t(v):
        return COMPONENT_TYPES.get(v, f"type{v}")
    out = []
    for i in range(min(n, count[0])):
        w = [raw[i * _FLEX_WORDS + 4 + j] for j in range(10)]
        out.append(FlexConfig(w[0], w[1], w[2], t(w[3]), t(w[4]), t(w[5]), t(w[6]), bool(w[7]),
                              SCOPES.get(w[8], str(w[8])), w[9]))
    return tuple(out)


def _coopmat2(inst, phys, extensions, features, props):
    if "VK_NV_cooperative_matrix2" not in extensions or "cooperativeMatrix" not in features:
        return None
    have = tuple(_short_feature(n) for n in COOPMAT2_FEATURES if n in features)
    if not have:
        return None
    return CoopMat2(
        features=have,
        workgroup_scope_max_workgroup_size=props.get("cooperativeMatrixWorkgroupScopeMaxWorkgroupSize", 0),
        flexible_max_dimension=props.get("cooperativeMatrixFlexibleDimensionsMaxDimension", 0),
        workgroup_scope_reserved_shared_memory=props.get("cooperativeMatrixWorkgroupScopeReservedSharedMemory", 0),
        flexible=_flexible_configs(inst, phys, extensions, features))


def _compute_queue_family(ffi, lib, phys):
    count = ffi.new("uint32_t*")
    lib.vkGetPhysicalDeviceQueueFamilyProperties(phys, count, ffi.NULL)
    fams = ffi.new("VkQueueFamilyProperties[]", count[0])
    lib.vkGetPhysicalDeviceQueueFamilyProperties(phys, count, fams)
    # Prefer families with timestamps, then compute-only ones (async compute
    # queues on discrete GPUs), then the lowest index.
    best = sorted((f.timestampValidBits == 0, bool(f.queueFlags & _QUEUE_GRAPHICS), i)
                  for i, f in enumerate(fams[0:count[0]]) if f.queueFlags & _QUEUE_COMPUTE)
    if not best:
        return None, 0
    index = best[0][2]
    return index, fams[index].timestampValidBits


def query_caps(inst, index: int, phys) -> DeviceCaps:
    vk, ffi, lib = vk_api()
    count = ffi.new("uint32_t*")
    check(lib.vkEnumerateDeviceExtensionProperties(phys, ffi.NULL, count, ffi.NULL),
          "listing device extensions")
    ext_props = ffi.new("VkExtensionProperties[]", count[0])
    check(lib.vkEnumerateDeviceExtensionProperties(phys, ffi.NULL, count, ext_props),
          "listing device extensions")
    extensions = frozenset(ffi.string(p.extensionName).decode() for p in ext_props)

    base = ffi.new("VkPhysicalDeviceProperties*")
    lib.vkGetPhysicalDeviceProperties(phys, base)
    v = base.apiVersion
    api = ((v >> 22) & 0x7F, (v >> 12) & 0x3FF, v & 0xFFF)

    head = ChainLink(ffi, "VkPhysicalDeviceProperties2", vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2)
    links, _ = build_chain(ffi, head, PROPERTY_STRUCTS, api[:2], extensions)
    lib.vkGetPhysicalDeviceProperties2(phys, head.ptr)
    p = _flatten(ffi, links, {})
    limits = head.ptr.properties.limits

    fhead = ChainLink(ffi, "VkPhysicalDeviceFeatures2", vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2)
    flinks, _ = build_chain(ffi, fhead, FEATURE_STRUCTS, api[:2], extensions)
    lib.vkGetPhysicalDeviceFeatures2(phys, fhead.ptr)
    core = fhead.ptr.features
    f = {name: getattr(core, name) for name, _ in ffi.typeof("VkPhysicalDeviceFeatures").fields}
    _flatten(ffi, flinks, f)
    features = frozenset(k for k, val in f.items() if val)

    mem = ffi.new("VkPhysicalDeviceMemoryProperties*")
    lib.vkGetPhysicalDeviceMemoryProperties(phys, mem)
    heaps = tuple((int(h.size), bool(h.flags & vk.VK_MEMORY_HEAP_DEVICE_LOCAL_BIT))
                  for h in mem.memoryHeaps[0:mem.memoryHeapCount])

    queue_family, ts_bits = _compute_queue_family(ffi, lib, phys)
    ops_mask = p.get("subgroupSupportedOperations", 0)
    size_control = None
    if "subgroupSizeControl" in features and p.get("requiredSubgroupSizeStages", 0) & _SHADER_STAGE_COMPUTE:
        size_control = (p["minSubgroupSize"], p["maxSubgroupSize"])
    accelerated = tuple(k[len("integerDotProduct"):-len("Accelerated")]
                        for k, val in p.items()
                        if k.startswith("integerDotProduct") and k.endswith("Accelerated") and val)
    props = head.ptr.properties
    return DeviceCaps(
        index=index,
        name=ffi.string(props.deviceName).decode("utf-8", "replace"),
        vendor_id=props.vendorID, device_id=props.deviceID,
        device_type=DEVICE_TYPES.get(props.deviceType, "other"),
        driver_name=p.get("driverName", ""), driver_info=p.get("driverInfo", ""),
        driver_version=decode_driver_version(props.vendorID, p.get("driverID", 0), props.driverVersion),
        api_version=api,
        subgroup_size=p.get("subgroupSize", 1),
        subgroup_ops=frozenset(n for bit, n in SUBGROUP_OPS.items() if ops_mask & bit),
        subgroup_size_control=size_control,
        max_shared_memory=limits.maxComputeSharedMemorySize,
        max_push_constants_size=limits.maxPushConstantsSize,
        max_workgroup_count=tuple(limits.maxComputeWorkGroupCount),
        max_workgroup_size=tuple(limits.maxComputeWorkGroupSize),
        max_workgroup_invocations=limits.maxComputeWorkGroupInvocations,
        max_storage_buffer_range=limits.maxStorageBufferRange,
        max_texel_buffer_elements=limits.maxTexelBufferElements,
        float16="shaderFloat16" in features, float64="shaderFloat64" in features,
        int8="shaderInt8" in features, int16="shaderInt16" in features,
        int64="shaderInt64" in features,
        subgroup_extended_types="shaderSubgroupExtendedTypes" in features,
        rounding_rte_float16=bool(p.get("shaderRoundingModeRTEFloat16", 0)),
        compute_units=compute_unit_count(p),
        storage_buffer_16bit="storageBuffer16BitAccess" in features,
        storage_buffer_8bit="storageBuffer8BitAccess" in features,
        push_constant_16bit="storagePushConstant16" in features,
        push_constant_8bit="storagePushConstant8" in features,
        float32_atomic_add="shaderBufferFloat32AtomicAdd" in features,
        int64_atomics="shaderBufferInt64Atomics" in features,
        float32_atomic_minmax="shaderBufferFloat32AtomicMinMax" in features,
        integer_dot_product="shaderIntegerDotProduct" in features,
        integer_dot_product_accelerated=accelerated,
        vulkan_memory_model="vulkanMemoryModel" in features,
        buffer_device_address="bufferDeviceAddress" in features,
        cooperative_matrix=tuple(
            c for c in _cooperative_matrix_configs(inst, phys, extensions)
            # bf16 matrices need VK_KHR_shader_bfloat16's features, which the device then enables
            if "bf16" not in (c.a_type, c.b_type, c.c_type, c.result_type)
            or {"shaderBFloat16Type", "shaderBFloat16CooperativeMatrix"} <= set(features))
        if "cooperativeMatrix" in features else (),
        cooperative_matrix2=_coopmat2(inst, phys, extensions, features, p),
        timestamp_period_ns=float(limits.timestampPeriod),
        timestamps_supported=ts_bits > 0 and limits.timestampPeriod > 0,
        memory_heaps=heaps,
        extensions=extensions,
        features=features,
        compute_queue_family=queue_family if queue_family is not None else -1,
    )


def for_kernels(caps: DeviceCaps) -> DeviceCaps:
    """The capabilities kernels are compiled for: a CPU driver's cooperative matrices are left
    out unless SPVJIT_CPU_COOPMAT=1.  lavapipe emulates them (DESIGN.md: correct, slow); on
    Mesa 26.1 an f16 512^3 matmul ran at 2.5 GFLOP/s on them against 7.1 without, and an
    attention step (32x64 scores, HEAD_DIM 64) took 354 s to compile instead of 8.5 s."""
    if caps.device_type != "cpu" or knobs.get("SPVJIT_CPU_COOPMAT"):
        return caps
    if not caps.cooperative_matrix and caps.cooperative_matrix2 is None:
        return caps
    return replace(caps, cooperative_matrix=(), cooperative_matrix2=None)
