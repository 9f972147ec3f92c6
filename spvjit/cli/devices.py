"""`spvjit devices`: every Vulkan device and what it can do."""

from __future__ import annotations

import json
import sys

from spvjit.loop_limit import loop_iteration_limit
from spvjit.runtime import DeviceError, choose_device, get_device, list_devices
from spvjit.runtime.capabilities import SUBGROUP_OPS, for_kernels


def add_parser(subparsers):
    p = subparsers.add_parser("devices", help="list Vulkan devices and their capabilities",
                              description="List every Vulkan physical device with its "
                              "capabilities; '*' marks the one spvjit uses (SPVJIT_DEVICE "
                              "overrides the choice).")
    p.add_argument("--json", action="store_true", help="print the capabilities as JSON")
    return p


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} B"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


_UNPROBED = object()


def _loop_limit_text(caps, limit) -> str:
    if limit is _UNPROBED:
        # only CPU drivers are probed (loop_limit.py), and only the device spvjit opens
        return "none" if caps.device_type != "cpu" else "not measured (measured on the selected device only)"
    if limit is None:
        return "none"
    return f"{limit} loop-header visits per invocation, all loops together (measured)"


def describe(caps, selected: bool, loop_limit=_UNPROBED) -> list[str]:
    """Human-readable lines for one device; `loop_limit` as loop_limit.loop_iteration_limit
    measured it, when it was."""
    mark = "*" if selected else " "
    tail = "  (selected)" if selected else ""
    ops = ", ".join(op for op in SUBGROUP_OPS.values() if op in caps.subgroup_ops) or "none"
    control = (f"; size control {caps.subgroup_size_control[0]}..{caps.subgroup_size_control[1]}"
               if caps.subgroup_size_control else "")
    accel = ", ".join(caps.integer_dot_product_accelerated) or "none"
    wg = caps.max_workgroup_size
    cnt = caps.max_workgroup_count
    rows = [
        ("type", f"{caps.device_type}, vendor 0x{caps.vendor_id:04x}, device 0x{caps.device_id:04x}"),
        ("driver", f"{caps.driver_name or '?'} {caps.driver_version}"
                   + (f" ({caps.driver_info})" if caps.driver_info else "")),
        ("vulkan", ".".join(map(str, caps.api_version))),
        ("subgroup", f"{caps.subgroup_size} ({ops}){control}"),
        ("workgroup", f"max {wg[0]}x{wg[1]}x{wg[2]}, {caps.max_workgroup_invocations} invocations; "
                      f"grid max {cnt[0]}x{cnt[1]}x{cnt[2]}"),
        ("compute units", str(caps.compute_units) if getattr(caps, "compute_units", 0) else "not reported"),
        ("shared memory", _size(caps.max_shared_memory)),
        ("push constants", f"{caps.max_push_constants_size} B"),
        ("buffers", f"storage range {_size(caps.max_storage_buffer_range)}, "
                    f"texel buffer {caps.max_texel_buffer_elements} elements"),
        ("arithmetic", f"fp16 {_yes(caps.float16)}, fp64 {_yes(caps.float64)}, int8 {_yes(caps.int8)}, "
                       f"int16 {_yes(caps.int16)}, int64 {_yes(caps.int64)}"),
        ("16/8-bit storage", f"buffers {_yes(caps.storage_buffer_16bit)}/{_yes(caps.storage_buffer_8bit)}, "
                             f"push constants {_yes(caps.push_constant_16bit)}/{_yes(caps.push_constant_8bit)}"),
        ("float atomics", f"f32 add {_yes(caps.float32_atomic_add)}, f32 min/max {_yes(caps.float32_atomic_minmax)}"),
        ("integer dot", f"{_yes(caps.integer_dot_product)} (accelerated: {accel})"),
        ("memory model", "vulkan" if caps.vulkan_memory_model else "glsl450 only"),
        ("device addresses", f"{_yes(caps.buffer_device_address)} (Tensor.data_ptr, tl.pointer_type)"),
        ("loop limit", _loop_limit_text(caps, loop_limit)),
        ("timestamps", f"{_yes(caps.timestamps_supported)}, period {caps.timestamp_period_ns:g} ns"),
        ("memory heaps", ", ".join(f"{_size(size)}{' device-local' if local else ' host'}"
                                   for size, local in caps.memory_heaps)),
    ]
    lines = [f"{mark} [{caps.index}] {caps.name}{tail}"]
    lines += [f"    {key:<18}{value}" for key, value in rows]
    if caps.cooperative_matrix:
        unused = "" if for_kernels(caps).cooperative_matrix else \
            "; emulated on this CPU driver, so kernels do not use them (SPVJIT_CPU_COOPMAT=1 to use them)"
        lines.append(f"    {'coop matrix':<18}{len(caps.cooperative_matrix)} configurations (MxNxK A*B+C->R){unused}")
        for c in caps.cooperative_matrix:
            sat = ", saturating" if c.saturating else ""
            lines.append(f"      {c.m}x{c.n}x{c.k} {c.a_type}*{c.b_type}+{c.c_type}->{c.result_type}"
                         f" ({c.scope}{sat})")
    else:
        lines.append(f"    {'coop matrix':<18}none")
    cm2 = caps.cooperative_matrix2
    if cm2 is None:
        lines.append(f"    {'coop matrix 2':<18}no")
    else:
        lines.append(f"    {'coop matrix 2':<18}{', '.join(cm2.features)}")
        lines.append(f"      flexible max dimension {cm2.flexible_max_dimension}; workgroup scope: max "
                     f"{cm2.workgroup_scope_max_workgroup_size} invocations, "
                     f"{cm2.workgroup_scope_reserved_shared_memory} B shared memory reserved")
        for c in cm2.flexible:
            sat = ", saturating" if c.saturating else ""
            wg = f", {c.workgroup_invocations} invocations" if c.scope == "workgroup" else ""
            lines.append(f"      {c.m_granularity}x{c.n_granularity}x{c.k_granularity} granules "
                         f"{c.a_type}*{c.b_type}+{c.c_type}->{c.result_type} ({c.scope}{sat}{wg})")
    return lines


def run(args) -> int:

    devices = list_devices()
    try:
        selected, problem = choose_device(devices), None
    except DeviceError as e:  # still list the devices: that is what the user needs
        selected, problem = None, e
    limit = _UNPROBED
    if selected is not None:
        try:
            limit = loop_iteration_limit(get_device())
        except DeviceError as e:
            selected, problem = None, e
    if args.json:
        info = [c.to_dict() for c in devices]
        for c, d in zip(devices, info):
            # false for a CPU driver's emulated matrices unless SPVJIT_CPU_COOPMAT=1 (for_kernels)
            d["kernels_use_cooperative_matrices"] = bool(for_kernels(c).cooperative_matrix)
            if c.index == selected:
                d["loop_iteration_limit"] = limit
        print(json.dumps({"selected": selected, "devices": info}, indent=2))
    else:
        print("\n\n".join("\n".join(describe(c, c.index == selected, limit if c.index == selected else _UNPROBED))
                            for c in devices))
    if problem is not None:
        print(f"spvjit: error: {problem}", file=sys.stderr)
        return 2
    return 0
