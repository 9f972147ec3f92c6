"""Subgroup operations: cross-lane data movement without shared memory or barriers.

When the whole workgroup is one subgroup (W <= subgroup size), every
exchange the blocked layout needs can be a broadcast or a shuffle, and
reductions become a per-lane fold plus one subgroup reduction.  On lavapipe
barriers are costly (a workgroup is run as a loop over SIMD subgroups), so
this is the path its CPU device type gets; GPUs use it for reductions too.
"""
from __future__ import annotations

from ..ir import types as T

SCOPE_SUBGROUP = 3
REDUCE = 0

_OPS = {("sum", "f"): "OpGroupNonUniformFAdd", ("sum", "i"): "OpGroupNonUniformIAdd",
        ("max", "f"): "OpGroupNonUniformFMax", ("min", "f"): "OpGroupNonUniformFMin",
        ("max", "s"): "OpGroupNonUniformSMax", ("min", "s"): "OpGroupNonUniformSMin",
        ("max", "u"): "OpGroupNonUniformUMax", ("min", "u"): "OpGroupNonUniformUMin"}


def available(caps, w: int) -> dict:
    ops = set(caps.subgroup_ops)
    sg = caps.subgroup_size
    return {"reduce": "arithmetic" in ops, "broadcast": "ballot" in ops,
            "shuffle": "shuffle" in ops, "whole": 0 < w <= sg, "size": sg}


def _work_type(dt: T.DType) -> T.DType:
    """Subgroup arithmetic on 8/16-bit types needs extended-type features: widen to 32 bits."""
    if dt.is_float:
        return T.f32 if dt.bits <= 32 else dt
    if dt.is_bool or dt.bits < 32:
        return T.i32 if (dt.is_signed or dt.is_bool) else T.u32
    return dt


def reduce(lw, kind: str, dt: T.DType, value: int) -> int:
    """Subgroup-wide sum/max/min of `value` (uniform result)."""
    em = lw.em
    em.capability("GroupNonUniformArithmetic")
    wt = _work_type(dt)
    v = lw.convert(value, dt, wt) if wt != dt else value
    key = (kind, "f" if wt.is_float else ("i" if kind == "sum" else ("s" if wt.is_signed else "u")))
    out = em.op(_OPS[key], em.type_of(wt), em.cu(SCOPE_SUBGROUP), REDUCE, v)
    return lw.convert(out, wt, dt) if wt != dt else out


def broadcast(lw, dt: T.DType, value: int, lane: int) -> int:
    """The value `lane` (a compile-time constant) holds, in every lane."""
    em = lw.em
    em.capability("GroupNonUniformBallot")
    wt = _move_type(dt)
    v = lw.convert(value, dt, wt) if wt != dt else value
    out = em.op("OpGroupNonUniformBroadcast", em.type_of(wt), em.cu(SCOPE_SUBGROUP), v, em.cu(lane))
    return lw.convert(out, wt, dt) if wt != dt else out


def shuffle(lw, dt: T.DType, value: int, lane_id: int) -> int:
    """The value held by lane `lane_id` (an i32 id, may differ per lane)."""
    em = lw.em
    em.capability("GroupNonUniformShuffle")
    wt = _move_type(dt)
    v = lw.convert(value, dt, wt) if wt != dt else value
    out = em.op("OpGroupNonUniformShuffle", em.type_of(wt), em.cu(SCOPE_SUBGROUP), v,
                em.op("OpBitcast", em.u32, lane_id))
    return lw.convert(out, wt, dt) if wt != dt else out


def _move_type(dt: T.DType) -> T.DType:
    if dt.is_bool:
        return dt
    return _work_type(dt)
