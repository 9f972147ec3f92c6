"""Dispatch compiled kernels: grid splitting, push constants, batches and recordings.

Grids larger than maxComputeWorkGroupCount are split into several dispatches
whose program-id offset travels in the push constants.  Launches inside a
`spvjit.batch()` block are recorded into one command buffer and submitted
together (each submit costs ~80 us on lavapipe; a recorded dispatch ~20 us).
"""
from __future__ import annotations

import os
import struct
import threading
from contextlib import contextmanager

from . import knobs
from .codegen.compiler import CompiledKernel
from .codegen.memory import PUSH_HEADER_WORDS
from .errors import CompilationError
from .runtime import get_device

_state = threading.local()


@contextmanager
def batch(timestamps: bool = False):
    """Record every kernel launch inside the block into one submission."""
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
    if getattr(_state, "batch", None) is not None:
        raise RuntimeError("spvjit.record() cannot be nested inside batch() or record()")
    graph = get_device().record(timestamps=timestamps)
    with graph:
        _state.batch = graph
        try:
            yield graph
        finally:
            _state.batch = None


def _pack(ck: CompiledKernel, spec, offset, grid, programs_per_workgroup: int = 1) -> bytes:
    values = dict(spec.runtime)
    head = struct.pack(f"<{PUSH_HEADER_WORDS}I", *offset, *grid, programs_per_workgroup)
    body = b"".join(struct.pack("<i" if m.dtype.is_int else "<f", values[m.name]) for m in ck.push_members)
    return head + body


def launch_on_device(kernel, spec, grid, dev, label: str):
    """Dispatch a compiled DeviceKernel over `grid` (recorded into the current batch, if any)."""
    ck, pipe = kernel.compiled, kernel.pipeline
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
                             label=label)
        return
    with dev.batch() as b:
        for off, size in chunks:
            b.dispatch(pipe, tensors, _pack(ck, spec, off, grid, per_wg), size, formats, label=label)


_HOST_CPUS = os.cpu_count() or 1     # lavapipe's default thread count (LP_NUM_THREADS overrides)


def programs_per_workgroup(ck: CompiledKernel, grid_x: int) -> int:
    """Enough programs per workgroup to amortize its fixed cost on a CPU driver, while
    leaving at least 8 workgroups per host thread so that the threads stay balanced."""
    if not ck.program_loop:
        return 1
    most = knobs.get("SPVJIT_PROGRAMS_PER_WORKGROUP")
    threads = knobs.env_int("LP_NUM_THREADS", _HOST_CPUS)
    return max(1, min(most, grid_x // (8 * threads)))
