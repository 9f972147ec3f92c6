"""Which moves through the shared scratch (memory.exchange) can use uvec4 accesses.

lavapipe runs each per-lane shared-memory access as a loop over the lanes, whatever its
width, so moving 4 words per access cuts the driver's work 4x.  Both plans are decided at
compile time from the index map evaluated for every lane (W and the shapes are constants):

- quad_loads: destination register groups (v=4 layout) that read 4 consecutive, 4-aligned
  words of the source-ordered scratch (a tile stored by uvec4, then read back in order);
- dest_order_stores: a scratch in destination order, written by uvec4 from the source lanes:
  possible where every destination group's 4 elements live in ONE source lane (a transpose:
  the 4x4 block a lane already holds), with store addresses affine in the lane.
"""
from __future__ import annotations

import numpy as np

from .layout import flat_np, lane_np, reg_np


def quad_loads(lw, plan, dst_numel, m) -> set[int]:
    """Destination registers r (r % 4 == 0, v=4 layout) whose group r..r+3 reads, in every
    lane, 4 consecutive source words starting at a multiple of 4: one uvec4 load each."""
    W = lw.W
    if lw.vec(dst_numel) != 4:
        return set()
    lanes = np.arange(W)
    out = set()
    for r in range(0, len(plan) - 3, 4):
        if any(plan[r + k][0] != "shared" for k in range(4)):
            continue
        s = [m.eval(flat_np(lanes, r + k, W, 4)) for k in range(4)]
        if np.all(s[0] % 4 == 0) and all(np.array_equal(s[k], s[0] + k) for k in range(1, 4)):
            out.add(r)
    return out


def dest_order_stores(lw, plan, src_numel, dst_numel, m):
    """Whether the move can go through a scratch in destination order with uvec4 accesses on
    both sides: every destination group (registers 4g..4g+3 of a lane, v=4 layout) takes its 4
    elements from ONE source lane, and the groups sharing a tuple of source registers are
    stored by all W lanes at once at an address affine in the lane.  Returns the stores as
    (source registers, a, b): lane L writes those registers at quad a + b*L; else None."""
    W = lw.W
    if lw.vec(dst_numel) != 4 or any(kind != "shared" for kind, _ in plan) or len(plan) % 4:
        return None
    v_src = lw.vec(src_numel)
    lanes = np.arange(W)
    slots: dict[tuple, list[dict]] = {}
    for g in range(len(plan) // 4):
        s = np.stack([m.eval(flat_np(lanes, 4 * g + k, W, 4)) for k in range(4)])     # [4, W]
        if np.any(s >= src_numel):
            return None
        src_lane, src_reg = lane_np(s, W, v_src), reg_np(s, W, v_src)
        if not np.all(src_lane == src_lane[0]):
            return None
        for lane in range(W):
            regs_ = tuple(int(x) for x in src_reg[:, lane])
            sl = int(src_lane[0, lane])
            for slot in slots.setdefault(regs_, []):
                if sl not in slot:
                    slot[sl] = lane + g * W
                    break
            else:
                slots[regs_].append({sl: lane + g * W})
    out = []
    for regs_, per in slots.items():
        for slot in per:
            if len(slot) != W:
                return None
            addr = np.array([slot[L] for L in range(W)])
            b = int(addr[1] - addr[0]) if W > 1 else 0
            if not np.array_equal(addr, addr[0] + b * lanes):
                return None
            out.append((regs_, int(addr[0]), b))
    return out
