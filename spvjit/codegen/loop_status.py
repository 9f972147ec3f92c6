"""The hidden status buffer through which a program reports a loop the driver cut short.

On drivers with a loop-iteration limit (lavapipe before Mesa 26, docs/ARCHITECTURE.md "Loop
limits") `loop_budget.add_exit_checks` appends this i32 buffer parameter; loops that may be
stopped by the limiter (K loops, looped dots, compare-and-swap retry loops) write 1 into it,
and the launcher turns that into a DeviceError.  A leaf module, so that the lowerings that
report (atomics.py, block_loops.py) and loop_budget.py, which decides where reports are
needed, do not import each other."""
from __future__ import annotations

STATUS_PARAM = "__loop_budget_status"    # hidden i32 buffer: 1 when a loop was cut short


def status_binding(mem):
    """The status buffer's binding in `mem` (codegen.memory.Memory), or None when the kernel
    has none (no limit, or no loop that could be cut)."""
    return next((b for b in mem.bindings if b.name == STATUS_PARAM and b.vec == 1), None)
