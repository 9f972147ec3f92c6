"""The SPIR-V functions VK_NV_cooperative_matrix2's reductions and per-element operations call.

OpCooperativeMatrixReduceNV takes a *combine function* (two components in, one out) and
OpCooperativeMatrixPerElementOpNV an *element function* (row, column, the component, then one
parameter per extra operand: a scalar as it is, or the same-position component of another
matrix of the same type).  Both are ordinary OpFunctions, built here beside the kernel's entry
point (ModuleBuilder.side_function) and shared by every use of the same key in the module.
SPV_NV_cooperative_matrix2 forbids tangled instructions (barriers, subgroup operations) in
them; the scalar ops of `Lowerer.scalar_op` used here are plain arithmetic and GLSL.std.450.

Where the device reports a feature is decided here too (`reported`): the feature in its
VK_NV_cooperative_matrix2 record, and SPVJIT_DISABLE_COOPMAT2 not set.
"""
from __future__ import annotations

from .. import knobs
from ..ir import types as T
from .coopmat2 import FlexibleTile

# GLSL.std.450 NMax / NMin return the other operand where one is NaN (both NaN: NaN), so the
# combination is commutative even with NaNs (a select on `>` is not: its result would depend
# on the order the device combines in), and a row max ignores NaNs as Triton's default
# `tl.max` (maxnumf) does
_COMBINE_FLOAT = {"sum": ("op", "OpFAdd"), "max": ("ext", "NMax"), "min": ("ext", "NMin")}
_COMBINE_INT = {"sum": ("op", "OpIAdd"), "max": ("ext", "{s}Max"), "min": ("ext", "{s}Min")}


def reported(caps, feature: str) -> bool:
    """The device reports VK_NV_cooperative_matrix2's `feature` ("reductions",
    "per_element_operations") and SPVJIT_DISABLE_COOPMAT2 does not turn the extension off."""
    cm2 = getattr(caps, "cooperative_matrix2", None)
    return cm2 is not None and cm2.has(feature) and not knobs.get("SPVJIT_DISABLE_COOPMAT2")


def granule_shape(cfg) -> bool:
    """Reductions and per-element operations run only on matrices of a shape the device lists
    in its VK_KHR_cooperative_matrix configurations, not on flexible-dimension ones: Mesa 26.1's
    lavapipe crashes compiling either on a matrix larger than its 8x8 granule (stack smashing
    in vkCreateComputePipelines, seen for every 16x16, 16x8, 8x16 and 16x32 case tried), and its
    split of a flexible Row reduction combines only the first row of 8x8 pieces
    (nir_lower_cooperative_matrix.c).  No device at hand runs them on flexible matrices."""
    return not isinstance(cfg, FlexibleTile)


def enable(em, capability: str) -> None:
    em.b.extension("SPV_NV_cooperative_matrix2")
    em.capability(capability)


def _cached(lw, key, build) -> int:
    fid = lw.side_functions.get(key)
    if fid is None:
        with lw.em.b.side_function():
            fid = build()
        lw.side_functions[key] = fid
    return fid


def combine(em, kind: str, elem: T.DType, ct: int, x: int, y: int) -> int:
    """x (+ | max | min) y for a component type elem."""
    table = _COMBINE_FLOAT if elem.is_float else _COMBINE_INT
    how, name = table[kind]
    if how == "op":
        return em.op(name, ct, x, y)
    return em.ext(ct, name.format(s="S" if elem.is_signed else "U"), x, y)


def combine_function(lw, kind: str, elem: T.DType) -> int:
    """The OpFunction (elem, elem) -> elem that combines two partial results of a `kind`
    reduction."""
    return _combining(lw, "combine", kind, elem)


def pair_function(lw, kind: str, elem: T.DType) -> int:
    """The element function (row, col, x, y) -> combine(x, y): two matrices combined per element."""
    return _combining(lw, "pair", kind, elem)


def _combining(lw, role: str, kind: str, elem: T.DType) -> int:
    """combine(x, y) as a function: (x, y) for a reduction ("combine"), or with the element's
    (row, col) first, as a per-element operation calls it ("pair")."""
    em = lw.em
    ct = em.type_of(elem)
    position = [em.u32, em.u32] if role == "pair" else []

    def build():
        b = em.b
        fid = b.begin_function(ct, b.type_function(ct, position + [ct, ct]))
        for t in position:
            b.function_parameter(t)
        x, y = b.function_parameter(ct), b.function_parameter(ct)
        b.label()
        em.op("OpReturnValue", None, combine(em, kind, elem, ct, x, y))
        b.end_function()
        b.name(fid, f"{role}_{kind}_{elem.name}")
        return fid

    return _cached(lw, (role, kind, elem.name), build)


_SCALAR_KINDS = ("uniform", "position")


def element_function(lw, op, in_elem: T.DType, out_elem: T.DType, kinds, first: int, scalar_types,
                     position=None) -> int:
    """The element function of an elementwise op: parameters (row, col, the component of the
    operand at position `first`, then the other operands in order: a matrix's component, a
    scalar as `scalar_types` gives its type; operands of kind "position" have none), then, with
    `position` = (N, scalar leaves), the tile's first row and column and those leaves; result: op
    applied to the operands in their own order (position operands evaluated at the element's
    flat index in the N-column value, coopmat2_position)."""
    em = lw.em
    ct_in, ct_out = em.type_of(in_elem), em.type_of(out_elem)
    order = [first] + [i for i, k in enumerate(kinds) if i != first and k != "position"]
    ptypes = [scalar_types[i] if kinds[i] == "uniform" else ct_in for i in order]
    leaves = position[1] if position else []
    extra = [em.i32, em.i32] + [em.type_of(x.type.elem) for x in leaves] if position else []
    key = ("element", op.name, repr(sorted(op.attrs.items())), in_elem.name, out_elem.name,
           tuple(kinds), first, tuple(ptypes), id(op) if position else None)

    def build():
        b = em.b
        fid = b.begin_function(ct_out, b.type_function(ct_out, [em.u32, em.u32] + ptypes + extra))
        row, col = b.function_parameter(em.u32), b.function_parameter(em.u32)
        params = [b.function_parameter(t) for t in ptypes]
        more = [b.function_parameter(t) for t in extra]
        b.label()
        args = [None] * len(kinds)
        for i, p in zip(order, params):
            args[i] = p
        if position:
            from . import coopmat2_position
            r = em.iadd(more[0], em.op("OpBitcast", em.i32, row))
            c = em.iadd(more[1], em.op("OpBitcast", em.i32, col))
            flat = em.iadd(em.imul(r, em.ci(position[0])), c)
            where = [i for i, k in enumerate(kinds) if k == "position"]
            for i, value in zip(where, coopmat2_position.evaluate(
                    lw, [op.operands[i] for i in where], leaves, more[2:], flat)):
                args[i] = value
        em.op("OpReturnValue", None, lw.scalar_op(op, in_elem, out_elem, *args))
        b.end_function()
        b.name(fid, f"element_{op.name}_{out_elem.name}")
        return fid

    return _cached(lw, key, build)


def per_element(lw, op, in_elem, out_elem, tile_type: int, args, kinds, scalar_types, position=None) -> int:
    """op on one tile with OpCooperativeMatrixPerElementOpNV: `args` per operand, a matrix id
    (of `tile_type`), a scalar id, or None (kind "position"); `position` = (N, scalar leaves,
    their ids, the tile's first row and column ids) where some operand has kind "position".
    The instruction's Matrix is the first matrix operand; the element function puts the
    operands back in the op's order."""
    em = lw.em
    enable(em, "CooperativeMatrixPerElementOperationsNV")
    first = next(i for i, k in enumerate(kinds) if k not in _SCALAR_KINDS)
    fid = element_function(lw, op, in_elem, out_elem, kinds, first, scalar_types,
                           position[:2] if position else None)
    extra = [args[i] for i in range(len(args)) if i != first and kinds[i] != "position"]
    if position:
        extra += [position[3], position[4]] + list(position[2])
    return em.op("OpCooperativeMatrixPerElementOpNV", tile_type, args[first], fid, *extra)
