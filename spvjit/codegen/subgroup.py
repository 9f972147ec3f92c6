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
    if dt.is_int and dt.bits == 64 and not getattr(lw.caps, "subgroup_extended_types", False):
        return _butterfly(lw, kind, dt, value)
    em.capability("GroupNonUniformArithmetic")
    wt = _work_type(dt)
    v = lw.convert(value, dt, wt) if wt != dt else value
    key = (kind, "f" if wt.is_float else ("i" if kind == "sum" else ("s" if wt.is_signed else "u")))
    out = em.op(_OPS[key], em.type_of(wt), em.cu(SCOPE_SUBGROUP), REDUCE, v)
    return lw.convert(out, wt, dt) if wt != dt else out


def _butterfly(lw, kind: str, dt: T.DType, value: int) -> int:
    """sum/max/min of 64-bit integers where the device does not allow subgroup arithmetic on
    them: log2(size) xor-shuffle steps, each moving the two u32 words of the partner's value."""
    em = lw.em
    em.capability("GroupNonUniformShuffle")
    rt = em.type_of(dt)
    step = 1
    while step < max(1, lw.sg.get("size", 1)):
        v, tid = _to_move(lw, dt, value)
        other = _from_move(lw, dt, em.op("OpGroupNonUniformShuffleXor", tid, em.cu(SCOPE_SUBGROUP), v,
                                         em.cu(step)))
        if kind == "sum":
            value = em.op("OpIAdd", rt, value, other)
        else:
            gt = em.op("OpSGreaterThan" if dt.is_signed else "OpUGreaterThan", em.bool, value, other)
            value = em.select(rt, gt, value, other) if kind == "max" else em.select(rt, gt, other, value)
        step *= 2
    return value


def broadcast(lw, dt: T.DType, value: int, lane: int) -> int:
    """The value `lane` (a compile-time constant) holds, in every lane."""
    em = lw.em
    em.capability("GroupNonUniformBallot")
    v, tid = _to_move(lw, dt, value)
    out = em.op("OpGroupNonUniformBroadcast", tid, em.cu(SCOPE_SUBGROUP), v, em.cu(lane))
    return _from_move(lw, dt, out)


def shuffle(lw, dt: T.DType, value: int, lane_id: int) -> int:
    """The value held by lane `lane_id` (an i32 id, may differ per lane)."""
    em = lw.em
    em.capability("GroupNonUniformShuffle")
    v, tid = _to_move(lw, dt, value)
    out = em.op("OpGroupNonUniformShuffle", tid, em.cu(SCOPE_SUBGROUP), v,
                em.op("OpBitcast", em.u32, lane_id))
    return _from_move(lw, dt, out)


def _to_move(lw, dt: T.DType, value: int) -> tuple[int, int]:
    """(value as moved, its type id): 8/16-bit values widen to 32 bits and 64-bit values
    move as a vector of two u32 words, so neither needs shaderSubgroupExtendedTypes."""
    em = lw.em
    if dt.bits == 64:
        v2 = em.b.type_vector(em.u32, 2)
        return em.op("OpBitcast", v2, value), v2
    wt = _move_type(dt)
    return (lw.convert(value, dt, wt) if wt != dt else value), em.type_of(wt)


def _from_move(lw, dt: T.DType, out: int) -> int:
    if dt.bits == 64:
        return lw.em.op("OpBitcast", lw.em.type_of(dt), out)
    wt = _move_type(dt)
    return lw.convert(out, wt, dt) if wt != dt else out


def _move_type(dt: T.DType) -> T.DType:
    if dt.is_bool:
        return dt
    return _work_type(dt)
