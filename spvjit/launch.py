"""Compile a specialization for the current device and dispatch it.

Grids larger than maxComputeWorkGroupCount are split into several dispatches
whose program-id offset travels in the push constants.  Launches inside a
`spvjit.batch()` block are recorded into one command buffer and submitted
together (each submit costs ~80 us on lavapipe; a recorded dispatch ~20 us).
"""
from __future__ import annotations

import os
import struct
import sys
import threading
import time
from contextlib import contextmanager

from .codegen import compile_hooks, lowering_env
from .codegen.compiler import CompiledKernel, compile_kernel
from .codegen.lower import LoweringError
from .frontend import build_ir
from .frontend.errors import CompilationError
from .ir.passes import run_passes
from .ir.verifier import verify

_state = threading.local()


@contextmanager
def batch(timestamps: bool = False):
    """Record every kernel launch inside the block into one submission."""
    from .runtime import get_device
    outer = getattr(_state, "batch", None)
    if outer is not None:
        yield outer
        return
    with get_device().batch(timestamps=timestamps) as b:
        _state.batch = b
        try:
            yield b
        finally:
            _state.batch = None


@contextmanager
def record(timestamps: bool = False):
    """Record every kernel launch inside the block into a graph; `graph.replay()` reruns it.

    Scalars passed to kernels are frozen into the recording: values that change
    between replays must be read from tensors the host updates."""
    from .runtime import get_device
    if getattr(_state, "batch", None) is not None:
        raise RuntimeError("spvjit.record() cannot be nested inside batch() or record()")
    graph = get_device().record(timestamps=timestamps)
    with graph:
        _state.batch = graph
        try:
            yield graph
        finally:
            _state.batch = None


def check_grid(grid, name: str) -> tuple[int, ...]:
    """A launch grid (after calling a callable grid) as a tuple of 1 to 3 Python ints.

    Only ints count, numpy integers included: ``k[(3.9,)]`` must not run 3 programs, and a
    string is not a sequence of sizes. Meant for ``JITFunction._grid`` in place of its
    ``int(x)`` conversion; sign and size limits stay there.
    """
    import numbers
    from .jit import LaunchError      # jit imports this module
    items = (grid,) if isinstance(grid, numbers.Integral) and not isinstance(grid, bool) else grid
    if not isinstance(items, (tuple, list)) or not 1 <= len(items) <= 3:
        raise LaunchError(f"grid of kernel {name} must be an int or a tuple of 1 to 3 ints, got {grid!r}")
    for size in items:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral):
            raise LaunchError(f"grid of kernel {name} must hold ints, got {size!r} "
                              f"({type(size).__name__}) in {grid!r}")
    return tuple(int(size) for size in items)


def compile_for_device(jitfn, spec, dev) -> tuple[CompiledKernel, object]:
    from . import cache
    from .jit import dump_flags
    t0 = time.perf_counter()
    flags = dump_flags()
    key = cache.kernel_key(jitfn, spec, dev.caps)
    ck = None if flags else cache.load(key)
    if ck is None:
        ck = _compile(jitfn, spec, dev, flags)
        cache.store(key, ck)
    check_device_support(ck, dev.caps)
    for hook in list(compile_hooks):
        hook(ck)
    if "spirv" in flags:
        from .codegen.spirv.tools import disassemble
        print(disassemble(ck.spirv), file=sys.stderr)
    pipe = dev.create_pipeline(ck.spirv, [bd.kind for bd in ck.bindings], ck.push_size)
    jitfn.compile_seconds.append(time.perf_counter() - t0)
    return ck, pipe


def _compile(jitfn, spec, dev, flags) -> CompiledKernel:
    kernel = build_ir(jitfn, spec.kinds)
    verify(kernel)
    kernel = run_passes(kernel)
    if "ir" in flags:
        from .ir.printer import print_kernel
        print(print_kernel(kernel), file=sys.stderr)
    notes = {} if "lowered" in flags else None
    try:
        ck = compile_kernel(kernel, dev.caps, spec.num_warps, spec.divisibility or {}, notes)
    except LoweringError as e:
        raise CompilationError(f"in kernel {jitfn.__name__}: {e}") from None
    if notes is not None:
        from .ir.printer import print_kernel
        loop = ", runs several programs in turn (program loop)" if ck.program_loop else ""
        print(f"// lowered for {dev.caps.name}: workgroup of {ck.workgroup_size} invocations{loop}, "
              f"{ck.scratch_bytes} bytes of shared scratch", file=sys.stderr)
        print(print_kernel(kernel, notes=notes), file=sys.stderr)
    return ck


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
}


def check_device_support(ck: CompiledKernel, caps) -> None:
    """A clear DeviceError when the kernel needs a feature the device lacks."""
    from .runtime import DeviceError
    for cap in sorted(ck.capabilities):
        field, what = _CAPABILITY_FEATURES.get(cap, (None, None))
        if field is not None and not getattr(caps, field, False):
            raise DeviceError(f"kernel {ck.name} needs {what}, which {caps.name} does not support")


def _pack(ck: CompiledKernel, spec, offset, grid, programs_per_workgroup: int = 1) -> bytes:
    values = dict(spec.runtime)
    head = struct.pack("<7I", *offset, *grid, programs_per_workgroup)
    body = b"".join(struct.pack("<i" if m.dtype.is_int else "<f", values[m.name]) for m in ck.push_members)
    return head + body


def launch_on_device(jitfn, spec, grid):
    from .runtime import get_device
    dev = get_device()
    key = spec.key((dev.caps.index, dev.caps.name) + lowering_env())
    entry = jitfn._compiled.get(key)
    if entry is None:
        entry = jitfn._compiled[key] = compile_for_device(jitfn, spec, dev)
    ck, pipe = entry
    if 0 in grid:
        return
    values = dict(spec.runtime)
    tensors = [values[bd.name] for bd in ck.bindings]
    formats = {bd.index: bd.texel_format for bd in ck.bindings if bd.texel} or None
    limit = dev.caps.max_texel_buffer_elements
    for bd in ck.bindings:
        if bd.texel and tensors[bd.index].size // bd.vec > limit:
            raise CompilationError(f"tensor '{bd.name}' has {tensors[bd.index].size} elements, more than "
                                   f"the {limit} a texel buffer on {dev.caps.name} can address")
    limits = dev.caps.max_workgroup_count
    per_wg = programs_per_workgroup(ck, grid[0])
    chunks = []
    for z in range(0, grid[2], limits[2]):
        for y in range(0, grid[1], limits[1]):
            # chunks of whole workgroups: only the last one's final workgroup runs past the
            # grid, and the kernel skips programs >= the grid
            for x in range(0, grid[0], limits[0] * per_wg):
                size = (-(-min(limits[0] * per_wg, grid[0] - x) // per_wg),
                        min(limits[1], grid[1] - y), min(limits[2], grid[2] - z))
                chunks.append(((x, y, z), size))
    current = getattr(_state, "batch", None)
    if current is not None:
        for off, size in chunks:
            current.dispatch(pipe, tensors, _pack(ck, spec, off, grid, per_wg), size, formats,
                             label=jitfn.__name__)
        return
    with dev.batch() as b:
        for off, size in chunks:
            b.dispatch(pipe, tensors, _pack(ck, spec, off, grid, per_wg), size, formats, label=jitfn.__name__)


# Programs one workgroup runs in turn, at most (kernels compiled with a program loop);
# SPVJIT_PROGRAMS_PER_WORKGROUP overrides it
MAX_PROGRAMS_PER_WORKGROUP = 256
_HOST_CPUS = os.cpu_count() or 1     # lavapipe's default thread count (LP_NUM_THREADS overrides)


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        from .jit import LaunchError      # jit imports this module
        raise LaunchError(f"{name} must be a positive integer, got {text!r}")
    return value


def programs_per_workgroup(ck: CompiledKernel, grid_x: int) -> int:
    """Enough programs per workgroup to amortize its fixed cost on a CPU driver, while
    leaving at least 8 workgroups per host thread so that the threads stay balanced."""
    if not ck.program_loop:
        return 1
    most = _env_int("SPVJIT_PROGRAMS_PER_WORKGROUP", MAX_PROGRAMS_PER_WORKGROUP)
    threads = _env_int("LP_NUM_THREADS", _HOST_CPUS)
    return max(1, min(most, grid_x // (8 * threads)))
