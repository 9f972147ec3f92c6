"""What the lowering may assume about a device: one frozen record, built once from DeviceCaps.

Every capability the code generator reads is a field here, with its default in one place,
so lowering code reads `target.subgroup_size` rather than probing a capability object.
A DeviceCaps (or a test's stand-in with some fields missing) becomes a Target with
`Target.of(caps)`; adding a Vulkan capability the lowering uses is one field here plus
its reading in runtime/capabilities.py.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Target:
    name: str = "unknown device"
    device_type: str = "other"             # "cpu" for lavapipe/llvmpipe: one program per subgroup
    subgroup_size: int = 0                 # 0: no subgroup operations at all
    subgroup_ops: tuple = ()
    max_shared_memory: int = 32768
    max_workgroup_invocations: int = 1024
    max_texel_buffer_elements: int = 0     # 0: no uniform texel buffers
    int64: bool = False
    float64: bool = False
    subgroup_extended_types: bool = False  # subgroup arithmetic on 64-bit integers is allowed
    float32_atomic_add: bool = False       # shaderBufferFloat32AtomicAdd (VK_EXT_shader_atomic_float)
    rounding_rte_float16: bool = False     # shaderRoundingModeRTEFloat16: OpFConvert to f16 can be
                                           # made to round to nearest even (execution mode RoundingModeRTE 16)
    cooperative_matrix: tuple = ()         # CoopMatConfig entries (subgroup scope ones are used)
    cooperative_matrix2: object = None     # runtime CoopMat2 (VK_NV_cooperative_matrix2), None: absent
    loop_iteration_limit: int | None = None   # loop-header visits per invocation (lavapipe < Mesa 26:
                                              # 65535); measured by spvjit/loop_limit.py, not in DeviceCaps
    driver_info: str = ""                  # VkPhysicalDeviceDriverProperties.driverInfo ("Mesa 22.3.6 ...")
    dot_unroll_limit: int | None = 8192    # multiply-adds per lane above which a dot is a loop over k
                                           # (dot_loop_plan.py); None: always unrolled.  The compiler
                                           # sets it from SPVJIT_DOT_UNROLL_LIMIT
    chunk_big_tiles: bool = True           # chunking.py may cut big tiles into slices; the compiler
                                           # sets it off with SPVJIT_WHOLE_TILES

    @property
    def cpu(self) -> bool:
        return self.device_type == "cpu"

    @property
    def mesa_version(self) -> tuple[int, int] | None:
        """(major, minor) of a Mesa driver, from driverInfo (lavapipe 22.3 reports driverVersion
        0.0.1, so the version is read there); None for other drivers."""
        m = re.match(r"Mesa (\d+)\.(\d+)", self.driver_info)
        return (int(m.group(1)), int(m.group(2))) if m else None

    @classmethod
    def of(cls, caps) -> "Target":
        if isinstance(caps, Target):
            return caps
        if caps is None:
            return cls()
        values = {}
        for f in fields(cls):
            v = getattr(caps, f.name, None)
            if v is not None:
                values[f.name] = tuple(v) if isinstance(v, (list, set, frozenset)) else v
        return cls(**values)
