"""Dispatch compiled kernels: grid splitting, push constants, batches and recordings.

Grids larger than maxComputeWorkGroupCount are split into several dispatches
whose program-id offset travels in the push constants.  Launches inside a
`spvjit.batch()` block are recorded into one command buffer and submitted
together (each submit costs ~80 us on lavapipe; a recorded dispatch ~20 us).
"""
from __future__ import annotations

import numbers
import os
import struct
import sys
import threading
from contextlib import contextmanager

import numpy as np

from . import address_registry, knobs
from .codegen.compiler import CompiledKernel
from .codegen import debug_print
from .codegen.debug_print import PRINT_PARAM
from .codegen.loop_budget import STATUS_PARAM
from .codegen.memory import PUSH_HEADER_WORDS
from .errors import DeviceError, LaunchError
from .loop_limit import loop_iteration_limit
from .runtime import get_device, zeros
from .runtime.memory import check_texel_count

_state = threading.local()
_status_lock = threading.Lock()


@contextmanager
def batch(timestamps: bool = False):
    """Record every kernel launch inside the block into one submission."""
    outer = getattr(_state, "batch", None)
    if outer is not None:
        yield outer
        return
    _state.status_checks = {}
    try:
        with get_device().batch(timestamps=timestamps) as b:
            _state.batch = b
            try:
                yield b
            finally:
                _state.batch = None
        for kernel, label in list(_state.status_checks.values()):
            after_run(kernel, label)
    finally:
        _state.status_checks = None


@contextmanager
def record(timestamps: bool = False):
    """Record every kernel launch inside the block into a graph; `graph.replay()` reruns it.

    Scalars passed to kernels are frozen into the recording: values that change
    between replays must be read from tensors the host updates."""
    if getattr(_state, "batch", None) is not None:
        raise RuntimeError("spvjit.record() cannot be nested inside batch() or record()")
    graph = get_device().record(timestamps=timestamps)
    _state.status_checks = {}
    try:
        with graph:
            _state.batch = graph
            try:
                yield graph
            finally:
                _state.batch = None
        for kernel, label in _state.status_checks.values():
            used, kernel.prints_used = kernel.prints_used, 0    # the graph's launches keep their buffers
            graph.after_replay.append(lambda kernel=kernel, label=label, used=used: after_run(kernel, label, used))
    finally:
        _state.status_checks = None


def check_grid(grid, name: str) -> tuple[int, ...]:
    """A launch grid (after calling a callable grid) as a tuple of 1 to 3 Python ints.

    Only ints count, numpy integers included: ``k[(3.9,)]`` must not run 3 programs, and a
    string is not a sequence of sizes. ``JITFunction._grid`` checks signs and size limits.
    """
    items = (grid,) if isinstance(grid, numbers.Integral) and not isinstance(grid, bool) else grid
    if not isinstance(items, (tuple, list)) or not 1 <= len(items) <= 3:
        raise LaunchError(f"grid of kernel {name} must be an int or a tuple of 1 to 3 ints, got {grid!r}")
    for size in items:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral):
            raise LaunchError(f"grid of kernel {name} must hold ints, got {size!r} "
                              f"({type(size).__name__}) in {grid!r}")
    return tuple(int(size) for size in items)


def _pack(ck: CompiledKernel, spec, offset, grid, programs_per_workgroup: int = 1) -> bytes:
    values = dict(spec.runtime)
    out = bytearray(ck.push_size)
    struct.pack_into(f"<{PUSH_HEADER_WORDS}I", out, 0, *offset, *grid, programs_per_workgroup)
    for m in ck.push_members:
        struct.pack_into(_PUSH_FORMATS[m.dtype.kind, m.dtype.bits], out, m.offset, values[m.name])
    return bytes(out)


# struct formats of scalar arguments by (kind, bits): 64-bit ints were specialized as i64 or,
# from 2**63 on, u64 (jit.py), so each value fits its format
_PUSH_FORMATS = {("int", 32): "<i", ("uint", 32): "<I", ("float", 32): "<f",
                 ("int", 64): "<q", ("uint", 64): "<Q", ("float", 64): "<d"}


def launch_on_device(kernel, spec, grid, dev, label: str):
    """Dispatch a compiled DeviceKernel over `grid` (recorded into the current batch, if any)."""
    ck, pipe = kernel.compiled, kernel.pipeline
    if 0 in grid:
        return
    values = dict(spec.runtime)
    status = loop_status(kernel, dev) if any(bd.name == STATUS_PARAM for bd in ck.bindings) else None
    if status is not None:
        values[STATUS_PARAM] = status
    printing = kernel.prints is not None
    if printing:
        values[PRINT_PARAM] = take_print_buffer(kernel, dev)
    tensors = [values[bd.name] for bd in ck.bindings]
    formats = {bd.index: bd.texel_format for bd in ck.bindings if bd.texel} or None
    for bd in ck.bindings:
        if bd.texel:
            check_texel_count(dev.caps, tensors[bd.index].size // bd.vec, bd.texel_format, f"tensor '{bd.name}'")
    limits = dev.caps.max_workgroup_count
    per_wg = programs_per_workgroup(ck, grid[0])
    if status is not None and per_wg > 1:
        per_wg = min(per_wg, budget_programs(kernel, spec))
    chunks = []
    for z in range(0, grid[2], limits[2]):
        for y in range(0, grid[1], limits[1]):
            # chunks of whole workgroups: only the last one's final workgroup runs past the
            # grid, and the kernel skips programs >= the grid
            for x in range(0, grid[0], limits[0] * per_wg):
                size = (-(-min(limits[0] * per_wg, grid[0] - x) // per_wg),
                        min(limits[1], grid[1] - y), min(limits[2], grid[2] - z))
                chunks.append(((x, y, z), size))
    # A kernel that follows device addresses may reach any tensor whose data_ptr() was taken:
    # those alive now stay alive until the launch has run (a batch or graph runs it later, so
    # a tensor the caller drops right after the launch call must not be freed under it)
    reachable = (address_registry.live_tensors()
                 if "PhysicalStorageBufferAddresses" in ck.capabilities else None)
    current = getattr(_state, "batch", None)
    if current is not None:
        if reachable:
            current.keep_alive(reachable)
        for off, size in chunks:
            current.dispatch(pipe, tensors, _pack(ck, spec, off, grid, per_wg), size, formats,
                             label=label)
        if status is not None or printing:
            _state.status_checks[id(kernel)] = (kernel, label)     # read after the batch ran
        return
    with dev.batch() as b:
        for off, size in chunks:
            b.dispatch(pipe, tensors, _pack(ck, spec, off, grid, per_wg), size, formats, label=label)
    if status is not None or printing:
        after_run(kernel, label)


def after_run(kernel, label: str, prints_used: int | None = None) -> None:
    """What the host does once a kernel's submit has run: print its device_print records,
    then refuse results the loop limiter cut short.  `prints_used`: how many of its debug
    buffers the run wrote (a replayed graph's), else those taken since the last run."""
    if prints_used is None:
        prints_used, kernel.prints_used = kernel.prints_used, 0
    failure = flush_prints(kernel, prints_used)
    check_loop_status(kernel, label)
    if failure is not None:
        raise AssertionError(f"kernel {label}: {failure}")


def budget_programs(kernel, spec) -> int:
    """How many programs of a kernel with loops one workgroup may run in turn on a
    loop-limited driver: all their loop-header visits, plus the program loop's own, must
    fit the limit (one program where its visits do not follow from the arguments)."""
    visits = kernel.visits(dict(spec.runtime)) if kernel.visits is not None else None
    limit = kernel.loop_limit[1]
    if visits is None or not limit:
        return 1
    return max(1, (limit - 1) // (visits + 1))


def loop_status(kernel, dev):
    """The hidden one-word buffer a kernel compiled for a loop-limited driver writes 1 into
    when the driver cut one of its loops short (codegen/loop_budget.py: add_exit_checks)."""
    if kernel.loop_status is None:
        with _status_lock:          # one buffer per kernel, even when threads launch it at once
            if kernel.loop_status is None:
                kernel.loop_limit = dev.caps.name, loop_iteration_limit(dev)
                kernel.loop_status = zeros(1, np.int32, device=dev)
    return kernel.loop_status


def check_loop_status(kernel, label: str) -> None:
    """Never a silent wrong result: raise when the driver's loop limiter stopped a loop."""
    status = kernel.loop_status
    if status is None or not status.numpy()[0]:
        return
    status.copy_from(np.zeros(1, np.int32))         # the next launch starts clean
    device, limit = kernel.loop_limit
    raise DeviceError(f"kernel {label}: {device} stopped one of its loops early, so its results are wrong: "
                      f"the driver allows {limit} loop iterations per program, all loops together; "
                      "give each program fewer iterations (larger blocks or a larger grid) or use a "
                      "driver without the limit (Mesa 26 lavapipe)")


def take_print_buffer(kernel, dev):
    """A hidden debug buffer (codegen/debug_print.py) for one launch of a kernel that prints:
    each launch of a batch or graph gets its own, so the host prints launch after launch."""
    with _status_lock:
        if kernel.prints_used == len(kernel.print_buffers):
            kernel.print_buffers.append(zeros(debug_print.BUFFER_BYTES // 4, np.uint32, device=dev))
        kernel.prints_used += 1
        return kernel.print_buffers[kernel.prints_used - 1]


def flush_prints(kernel, used: int) -> str | None:
    """Print the records of the first `used` debug buffers, in launch order and within each
    in program order (Triton's format), and empty them; the first failed device_assert
    (SPVJIT_DEBUG=1) they hold, or None."""
    failure = None
    for buf in kernel.print_buffers[:used]:
        words = buf.numpy()
        if not words[0]:
            continue
        buf.copy_from(np.zeros(1, np.uint32))           # the next launch starts clean
        lines, dropped, failed = debug_print.format_records(words, kernel.prints)
        failure = failure or failed
        if lines:
            print("\n".join(lines), flush=True)
        if dropped:
            print(f"spvjit: device_print: {dropped} records dropped (the debug buffer holds "
                  f"{debug_print.CAPACITY} per launch)", file=sys.stderr, flush=True)
    return failure


_HOST_CPUS = os.cpu_count() or 1     # lavapipe's default thread count (LP_NUM_THREADS overrides)


def programs_per_workgroup(ck: CompiledKernel, grid_x: int) -> int:
    """Enough programs per workgroup to amortize its fixed cost on a CPU driver, while
    leaving at least 8 workgroups per host thread so that the threads stay balanced."""
    if not ck.program_loop:
        return 1
    most = knobs.get("SPVJIT_PROGRAMS_PER_WORKGROUP")
    threads = knobs.env_int("LP_NUM_THREADS", _HOST_CPUS)
    return max(1, min(most, grid_x // (8 * threads)))
