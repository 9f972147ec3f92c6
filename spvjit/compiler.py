"""One compile pipeline for every target: `compile(fn, spec, target)`.

Stages, in order: key -> in-memory cache -> disk cache (device targets) -> tile IR ->
verify -> passes (device targets) -> lowering to a SPIR-V module -> dumps -> hooks and
device checks -> pipeline.  The interpreter target stops after `verify`: it runs the IR as
the frontend built it, so that it checks the passes instead of sharing their mistakes.

The specialization key is computed once per launch (`spec_key`) and serves both caches:
the in-memory dict keys on it directly, the disk entry on its hash with the kernel's source
key and the compiler's fingerprint (`cache.disk_key`).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace

from . import cache, knobs
from .codegen import compile_hooks
from .codegen.compiler import CompiledKernel, compile_kernel, rewrite_for_target
from .codegen.dot_forms import extra_visits
from .codegen.debug_print import PRINT_PARAM, print_table
from .codegen.loop_budget import STATUS_PARAM, VisitCounter
from .codegen.spirv.tools import disassemble
from .codegen.target import Target
from .codegen.values import LoweringError
from .errors import CompilationError, DeviceError
from .frontend import build_ir
from .ir.passes import run_passes
from .ir.printer import print_kernel
from .ir.verifier import verify
from .loop_limit import loop_iteration_limit

INTERPRETER = "interpreter"


@dataclass
class DeviceKernel:
    """A kernel compiled for one device: its module, launch layout and Vulkan pipeline."""
    compiled: CompiledKernel
    pipeline: object
    loop_status: object = None      # launch.loop_status: hidden buffer of loop-limited drivers
    loop_limit: tuple = ()          # (device name, limit), for launch.check_loop_status's message
    visits: object = None           # loop_budget.VisitCounter where launch.budget_programs needs it
    prints: list | None = None      # debug_print.print_table of a kernel that prints, to decode its records
    print_buffers: list = field(default_factory=list)   # launch.take_print_buffer: one per launch of a batch
    prints_used: int = 0            # how many of them launches since the last host read wrote


def target_key(target) -> tuple:
    if target == INTERPRETER:
        return (INTERPRETER,)
    caps = target.caps
    return (("vulkan", caps.index, cache.device_fingerprint(caps), loop_iteration_limit(target))
            + knobs.lowering_env())


def spec_key(jitfn, spec, target) -> tuple:
    return spec.key() + target_key(target)


def compile(jitfn, spec, target):
    """The compiled form of `jitfn` for `spec` on `target` (a Device, or INTERPRETER):
    a verified KernelIR for the interpreter, a DeviceKernel for a device."""
    key = spec_key(jitfn, spec, target)
    found = jitfn._compiled.get(key)
    if found is not None:
        return found
    t0 = time.perf_counter()
    if target == INTERPRETER:
        result = _build_ir(jitfn, spec, optimize=False)
    else:
        result = _compile_for_device(jitfn, spec, target, key)
    jitfn._compiled[key] = result
    jitfn.compile_seconds.append(time.perf_counter() - t0)
    return result


def _build_ir(jitfn, spec, optimize: bool, dump: bool = True):
    kernel = build_ir(jitfn, spec.kinds)
    verify(kernel)
    if optimize:
        kernel = run_passes(kernel)
    if dump and "ir" in knobs.get("SPVJIT_DUMP"):
        print(print_kernel(kernel), file=sys.stderr)
    return kernel


def _compile_for_device(jitfn, spec, dev, key) -> DeviceKernel:
    dumps = knobs.get("SPVJIT_DUMP")
    disk = cache.disk_key(jitfn.cache_key, key)
    ck = None if dumps else cache.load_kernel(disk)     # a dump asks to see the compiler run
    kernel = None
    if ck is None:
        ck, kernel = _lower(jitfn, spec, dev, "lowered" in dumps)
        cache.store_kernel(disk, ck)
    visits = None
    if ck.program_loop and any(bd.name == STATUS_PARAM for bd in ck.bindings):
        # loops whose trip counts follow from the arguments share the budget of a program loop:
        # the launcher counts their header visits per launch, from the IR as it was lowered
        if kernel is None:
            kernel, _ = rewrite_for_target(_build_ir(jitfn, spec, optimize=True), device_target(dev),
                                           spec.num_warps)
        visits = VisitCounter(kernel, extra_visits(ck.workgroup_size, device_target(dev), kernel))
    prints = None
    if any(bd.name == PRINT_PARAM for bd in ck.bindings):
        if kernel is None:          # a disk-cache hit: the table comes from the same IR
            kernel = _build_ir(jitfn, spec, optimize=True)
        prints = print_table(kernel, asserts=knobs.get("SPVJIT_DEBUG"))
    check_device_support(ck, dev.caps)
    for hook in list(compile_hooks):
        hook(ck)
    if "spirv" in dumps:
        print(disassemble(ck.spirv), file=sys.stderr)
    pipe = dev.create_pipeline(ck.spirv, [bd.kind for bd in ck.bindings], ck.push_size)
    return DeviceKernel(ck, pipe, visits=visits, prints=prints)


def device_target(dev) -> Target:
    """What the lowering may assume about `dev`, with the settings that change lowering."""
    return replace(Target.of(dev.kernel_caps), loop_iteration_limit=loop_iteration_limit(dev),
                   dot_unroll_limit=knobs.get("SPVJIT_DOT_UNROLL_LIMIT"),
                   chunk_big_tiles=not knobs.get("SPVJIT_WHOLE_TILES"))


def _lower(jitfn, spec, dev, show_lowering: bool):
    """(the compiled kernel, its IR as lowered: compile_kernel rewrites loops in place)"""
    kernel = _build_ir(jitfn, spec, optimize=True)
    notes = {} if show_lowering else None
    try:
        target = device_target(dev)
        ck = compile_kernel(kernel, target, spec.num_warps, spec.divisibility or {}, notes,
                            assume_nonneg=spec.assume_nonneg)
    except LoweringError as e:
        raise CompilationError(f"in kernel {jitfn.__name__}: {e}") from None
    if notes is not None:
        loop = ", runs several programs in turn (program loop)" if ck.program_loop else ""
        print(f"// lowered for {dev.caps.name}: workgroup of {ck.workgroup_size} invocations{loop}, "
              f"{ck.scratch_bytes} bytes of shared scratch", file=sys.stderr)
        print(print_kernel(kernel, notes=notes), file=sys.stderr)
    return ck, kernel


# SPIR-V capability -> (DeviceCaps field, what to call it in the error)
_CAPABILITY_FEATURES = {
    "Float16": ("float16", "16-bit float arithmetic (shaderFloat16)"),
    "Float64": ("float64", "64-bit floats (shaderFloat64)"),
    "Int8": ("int8", "8-bit integers (shaderInt8)"),
    "Int16": ("int16", "16-bit integers (shaderInt16)"),
    "Int64": ("int64", "64-bit integers (shaderInt64)"),
    "StorageBuffer16BitAccess": ("storage_buffer_16bit", "16-bit storage buffers (storageBuffer16BitAccess)"),
    "StorageBuffer8BitAccess": ("storage_buffer_8bit", "8-bit storage buffers (storageBuffer8BitAccess)"),
    "CooperativeMatrixKHR": ("cooperative_matrix", "cooperative matrices (VK_KHR_cooperative_matrix)"),
    "VulkanMemoryModel": ("vulkan_memory_model", "the Vulkan memory model"),
    "PhysicalStorageBufferAddresses": ("buffer_device_address", "buffer device addresses (bufferDeviceAddress)"),
    "AtomicFloat32AddEXT": ("float32_atomic_add", "float atomic add (shaderBufferFloat32AtomicAdd)"),
    "Int64Atomics": ("int64_atomics", "64-bit atomics (shaderBufferInt64Atomics)"),
    "RoundingModeRTE": ("rounding_rte_float16", "round-to-nearest-even float16 results "
                        "(shaderRoundingModeRTEFloat16)"),
}


def check_device_support(ck: CompiledKernel, caps) -> None:
    """A clear DeviceError when the kernel needs a feature the device lacks."""
    for cap in sorted(ck.capabilities):
        field, what = _CAPABILITY_FEATURES.get(cap, (None, None))
        if field is not None and not getattr(caps, field, False):
            raise DeviceError(f"kernel {ck.name} needs {what}, which {caps.name} does not support")
