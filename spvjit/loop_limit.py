"""The loop-iteration limit of a device, measured once and kept as a device fact.

llvmpipe (lavapipe) before Mesa 26 breaks out of loops silently once one shader invocation
has made 65535 loop-header visits, over all its loops together (Mesa's loop limiter,
LP_MAX_TGSI_LOOP_ITERATIONS); Mesa 26.1 has no such limit, and GPUs never had one.  No
Vulkan property reports it, so a probe measures it: one invocation counts through a loop of
2**20 trips whose bound arrives as a push constant (so the driver cannot unroll it); a count
short of 2**20 is the limit.  Only CPU drivers are probed.

The result is cached per device and driver (`cache.device_fingerprint`) in the shared cache
store, and in memory per Device; `spvjit.compiler.target_key` includes it, so kernels compiled
for a limited device never share a cache entry with unlimited ones.
"""
from __future__ import annotations

import struct
import threading

import numpy as np

from . import cache
from .codegen import compile_hooks
from .codegen.compiler import compile_kernel
from .codegen.memory import PUSH_HEADER_WORDS
from .ir.parser import parse
from .runtime.tensor import zeros

PROBE_TRIPS = 1 << 20
FACTS = cache.Store("device_facts")
_FACT = "loop_iteration_limit"

# one invocation counts to n; the loop has a runtime bound and a body the driver cannot drop
_PROBE_IR = """
kernel @loop_limit_probe(%out_ptr: ptr<i32>, %n: i32) {
  %0 = constant {value = 0} : i32
  %1 = constant {value = 1} : i32
  %c = for %0, %n, %1, %0 : i32 {
  ^(%i: i32, %c_1: i32):
    %2 = add %c_1, %1 : i32
    yield %2
  }
  store %out_ptr, %c
  return
}
"""

_lock = threading.Lock()


def loop_iteration_limit(dev) -> int | None:
    """How many loop-header visits one invocation may make on `dev`; None: no limit."""
    known = getattr(dev, "_loop_iteration_limit", False)
    if known is not False:
        return known
    with _lock:
        known = getattr(dev, "_loop_iteration_limit", False)
        if known is False:
            known = _cached_or_measured(dev)
            dev._loop_iteration_limit = known
    return known


def _cached_or_measured(dev) -> int | None:
    caps = dev.caps
    if caps.device_type != "cpu":
        return None
    name = cache.device_fingerprint(caps)
    entry = FACTS.read(name)
    if entry is not None and entry.get("device") == caps.name and _FACT in entry:
        value = entry[_FACT]
        # the entry is untrusted: only a count the probe could have produced is used
        if value is None or (type(value) is int and 0 < value < PROBE_TRIPS):
            return value
    value = measure(dev)
    FACTS.write(name, {"device": caps.name, "driver": caps.driver_info, _FACT: value,
                       "probe_trips": PROBE_TRIPS})
    return value


def measure(dev, trips: int = PROBE_TRIPS) -> int | None:
    """Run the probe on `dev`: the iterations one loop of `trips` completed, or None if all did."""
    ck = compile_kernel(parse(_PROBE_IR), dev.caps, num_warps=1, program_loop=False)
    for hook in list(compile_hooks):
        hook(ck)
    pipe = dev.create_pipeline(ck.spirv, [bd.kind for bd in ck.bindings], ck.push_size)
    out = zeros(1, np.int32, device=dev)
    push = struct.pack(f"<{PUSH_HEADER_WORDS}I", 0, 0, 0, 1, 1, 1, 1) + struct.pack("<i", trips)
    formats = {bd.index: bd.texel_format for bd in ck.bindings if bd.texel} or None
    dev.dispatch(pipe, [out], push, (1, 1, 1), formats)
    count = int(out.numpy()[0])
    return None if count >= trips else count
