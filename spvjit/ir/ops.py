"""The op set of the tile IR and the type rule of each op.

`check_op(op)` returns an error string or None; the verifier and the parser
use it, so an op's rule lives in exactly one place.
"""
from __future__ import annotations

from dataclasses import dataclass

from .types import DType, PointerType, TileType, i1, i32, i64

BINARY = {"add", "sub", "mul", "truediv", "floordiv", "mod", "and", "or", "xor",
          "shl", "shr", "maximum", "minimum", "pow", "atan2", "umulhi"}
# math functions beyond the basic set (triton.language.math and libdevice names)
MATH_UNARY = {"erf", "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh",
              "trunc", "rint", "round"}
UNARY = {"neg", "not", "exp", "exp2", "log", "log2", "sqrt", "rsqrt", "sin", "cos",
         "abs", "sigmoid", "floor", "ceil", "tanh"} | MATH_UNARY
FLOAT_ONLY = {"truediv", "exp", "exp2", "log", "log2", "sqrt", "rsqrt", "sin", "cos",
              "sigmoid", "floor", "ceil", "tanh", "pow", "atan2", "fma"} | MATH_UNARY
# GLSL.std.450 defines these for 16- and 32-bit floats only: no float64 meaning anywhere (a
# float32 computation would silently lose the precision; sqrt, floor, fma, fmod, ... are fine)
NO_FLOAT64 = frozenset({"exp", "exp2", "log", "log2", "sin", "cos", "tan", "tanh", "asin", "acos", "atan",
                        "sinh", "cosh", "asinh", "acosh", "atanh", "erf", "sigmoid", "pow", "atan2"})
INT_ONLY = {"and", "or", "xor", "shl", "shr", "floordiv", "umulhi"}
BOOL_BINARY = {"and", "or", "xor", "maximum", "minimum"}
CMP_PREDICATES = {"lt", "le", "gt", "ge", "eq", "ne"}
REDUCE_KINDS = {"sum", "max", "min", "argmax", "argmin"}
ATOMIC_KINDS = {"add", "max", "min", "and", "or", "xor", "xchg"}
# Triton's memory orders and scopes (atomics take them as attributes `sem` and `scope`)
ATOMIC_SEMS = {"relaxed", "acquire", "release", "acq_rel"}
ATOMIC_SCOPES = {"gpu", "cta", "sys"}
SCAN_KINDS = {"sum", "prod", "max", "min"}

# name -> (number of operands or None for variable, attrs required, number of regions)
OPS = {
    **{n: (2, (), 0) for n in BINARY},
    **{n: (1, (), 0) for n in UNARY},
    "fma": (3, (), 0),         # x * y + z with one rounding
    "cmp": (2, ("pred",), 0),
    "select": (3, (), 0),
    "cast": (1, (), 0),
    "bitcast": (1, (), 0),
    "constant": (0, ("value",), 0),
    "program_id": (0, ("axis",), 0),
    "num_programs": (0, ("axis",), 0),
    "arange": (0, ("start", "end"), 0),
    "splat": (1, (), 0),
    "broadcast": (1, (), 0),
    "expand_dims": (1, ("axis",), 0),
    "reshape": (1, (), 0),
    "trans": (1, (), 0),
    "permute": (1, ("order",), 0),   # order: the source dim of each result dim, as "2,0,1"
    "flip": (1, ("axis",), 0),
    "extract": (1, ("axis", "index"), 0),   # x[..., index, ...]: drops `axis`
    # out[.., i, ..] = x[.., i - d, ..] where i >= d (i + d where i + d < n with reverse), else x itself
    "shift": (1, ("axis", "d"), 0),
    "assume": (1, (), 0),      # identity carrying sl.multiple_of / sl.max_contiguous facts
    "addptr": (2, (), 0),
    "int_to_ptr": (1, (), 0),     # 64-bit integer tile -> global-address pointer tile (gptr<T>)
    "ptr_to_int": (1, (), 0),     # global-address pointer tile -> its i64 addresses
    "load": (None, (), 0),
    "store": (None, (), 0),
    "atomic_rmw": (None, ("kind",), 0),  # attrs sem, scope optional (default acq_rel, gpu)
    "atomic_cas": (3, (), 0),             # pointer, cmp, val -> old values; sem, scope optional
    "histogram": (None, ("num_bins",), 0),  # 1-D ints, optional mask -> i32 [num_bins]
    "gather": (2, ("axis",), 0),          # out[.., i, ..] = src[.., index[.., i, ..], ..]
    "reduce": (1, ("kind", "axis"), 0),
    "dot": (3, (), 0),
    "scan": (1, ("kind", "axis"), 0),    # inclusive prefix combine along axis (attr reverse=True: suffix)
    "for": (None, (), 1),
    # while: operands are the carried inits; region 0 computes the condition from the carried
    # values (`yield %c`, one i1 scalar), region 1 is the body (yields the next carried values);
    # the results are the carried values when the condition turned false
    "while": (None, (), 2),
    "if": (1, (), 2),
    "yield": (None, (), 0),
    "return": (0, (), 0),
    "barrier": (0, (), 0),                # tl.debug_barrier(): all lanes of the program meet
    "assert": (1, ("msg",), 0),           # tl.device_assert: checked by the interpreter only, as
                                          # Triton checks it only in debug builds
    "print": (None, ("prefix",), 0),      # tl.device_print: the interpreter prints
}


# What the rest of the compiler needs to know of each op, declared here once: its category
# (how it moves data), whether its lowering may stage a tile in shared memory, and whether it
# only takes floats or only integers (from FLOAT_ONLY / INT_ONLY above).  Elementwise ops
# (BINARY, UNARY and the ones in ELEMENTWISE_OTHER) need a scalar rule in the interpreter
# (interpreter/ops.py) and in the lowering (codegen/lower.py scalar_op); every other op needs
# an `op_<name>` lowering and a case in the interpreter's executor.  tests/test_op_table.py
# checks both for every op, and an op missing from this table fails at import.
ELEMENTWISE_OTHER = {"cmp", "select", "cast", "bitcast", "fma"}
OTHER_OPS = {            # name -> (category, stages a tile in shared memory)
    "constant": ("value", False), "program_id": ("value", False), "num_programs": ("value", False),
    "arange": ("value", False), "assume": ("value", False),
    "splat": ("shape", False), "broadcast": ("shape", True), "expand_dims": ("shape", False),
    "reshape": ("shape", True), "trans": ("shape", True), "permute": ("shape", True),
    "flip": ("shape", True), "extract": ("shape", True), "shift": ("shape", True),
    "addptr": ("pointer", False), "int_to_ptr": ("pointer", False), "ptr_to_int": ("pointer", False),
    "load": ("memory", False), "store": ("memory", False),
    "atomic_rmw": ("memory", True), "atomic_cas": ("memory", True),
    "histogram": ("reduction", True), "gather": ("reduction", True),
    "reduce": ("reduction", True), "dot": ("reduction", True), "scan": ("reduction", True),
    "for": ("control", False), "while": ("control", False), "if": ("control", False), "yield": ("control", False),
    "return": ("control", False),
    # side effects for debugging (kept by DCE and CSE: ir/passes/util.py IMPURE)
    "barrier": ("control", False), "assert": ("control", False), "print": ("control", False),
}


@dataclass(frozen=True)
class OpInfo:
    name: str
    category: str           # elementwise | value | shape | pointer | memory | reduction | control
    scratch: bool           # its lowering may stage a tile in shared memory
    float_only: bool
    int_only: bool


def _info(name: str) -> OpInfo:
    if name in BINARY or name in UNARY or name in ELEMENTWISE_OTHER:
        category, scratch = "elementwise", False
    elif name in OTHER_OPS:
        category, scratch = OTHER_OPS[name]
    else:
        raise KeyError(f"op '{name}' is in OPS but has no category in ir/ops.py's table")
    return OpInfo(name, category, scratch, name in FLOAT_ONLY, name in INT_ONLY)


OP_INFO: dict[str, OpInfo] = {name: _info(name) for name in OPS}


def ops_of(category: str) -> frozenset[str]:
    return frozenset(n for n, i in OP_INFO.items() if i.category == category)


def _same(a: TileType, b: TileType) -> bool:
    return a.shape == b.shape and a.elem == b.elem


def check_op(op) -> str | None:
    """Type-check one op (not its regions' contents). Returns a message or None."""
    if op.name not in OPS:
        return f"unknown op '{op.name}'"
    n_operands, attrs, n_regions = OPS[op.name]
    if n_operands is not None and len(op.operands) != n_operands:
        return f"'{op.name}' takes {n_operands} operands, got {len(op.operands)}"
    for a in attrs:
        if a not in op.attrs:
            return f"'{op.name}' needs attribute '{a}'"
    if len(op.regions) != n_regions:
        return f"'{op.name}' needs {n_regions} regions, got {len(op.regions)}"
    t = [v.type for v in op.operands]
    r = [v.type for v in op.results]
    name = op.name
    if name in BINARY:
        if not _same(t[0], t[1]) or not _same(t[0], r[0]):
            return f"'{name}' operands and result must have one type, got {t[0]}, {t[1]} -> {r[0]}"
        if t[0].is_pointer:
            return f"'{name}' on pointers; use addptr"
        if name in FLOAT_ONLY and not t[0].elem.is_float:
            return f"'{name}' needs float operands, got {t[0]}"
        if name in INT_ONLY and t[0].elem.is_float:
            return f"'{name}' needs integer operands, got {t[0]}"
        if t[0].elem.is_bool and name not in BOOL_BINARY:
            return f"'{name}' on booleans; convert them to an integer type first"
        return None
    if name in UNARY:
        if not _same(t[0], r[0]):
            return f"'{name}' result type {r[0]} differs from operand {t[0]}"
        if name in FLOAT_ONLY and not t[0].elem.is_float:
            return f"'{name}' needs a float operand, got {t[0]}"
        if name == "not" and t[0].elem.is_float:
            return f"'not' needs an integer or boolean operand, got {t[0]}"
        if t[0].elem.is_bool and name != "not":
            return f"'{name}' on booleans; convert them to an integer type first"
        return None
    if name == "fma":
        if not (_same(t[0], t[1]) and _same(t[0], t[2]) and _same(t[0], r[0])) or not t[0].elem.is_float:
            return f"'fma' needs three float operands and a result of one type, got {t} -> {r[0]}"
        return None
    if name == "cmp":
        if op.attrs["pred"] not in CMP_PREDICATES:
            return f"unknown predicate {op.attrs['pred']!r}"
        if not _same(t[0], t[1]) or r[0] != TileType(t[0].shape, i1):
            return f"'cmp' needs equal operand types and an i1 result, got {t[0]}, {t[1]} -> {r[0]}"
        return None
    if name == "select":
        if t[0] != TileType(t[1].shape, i1) or not _same(t[1], t[2]) or not _same(t[1], r[0]):
            return f"'select' needs an i1 condition and equal value types, got {t[0]}, {t[1]}, {t[2]}"
        return None
    if name in ("cast", "bitcast"):
        if t[0].shape != r[0].shape or t[0].is_pointer or r[0].is_pointer:
            return f"'{name}' changes only the element type of non-pointers, got {t[0]} -> {r[0]}"
        if name == "bitcast" and t[0].elem.bits != r[0].elem.bits:
            return f"'bitcast' needs equal bit widths, got {t[0]} -> {r[0]}"
        return None
    if name == "constant":
        return None if not r[0].is_pointer else "pointer constants are not allowed"
    if name in ("program_id", "num_programs"):
        if op.attrs["axis"] not in (0, 1, 2) or r[0] != TileType((), i32):
            return f"'{name}' needs axis 0, 1 or 2 and an i32 result"
        return None
    if name == "arange":
        n = op.attrs["end"] - op.attrs["start"]
        if r[0] != TileType((n,), i32):
            return f"'arange' result must be tensor<{n}xi32>, got {r[0]}"
        return None
    if name == "splat":
        if not t[0].is_scalar or r[0].elem != t[0].elem:
            return f"'splat' takes a scalar to a tensor of its type, got {t[0]} -> {r[0]}"
        return None
    if name == "broadcast":
        s, d = t[0].shape, r[0].shape
        if len(s) != len(d) or any(a not in (1, b) for a, b in zip(s, d)) or t[0].elem != r[0].elem:
            return f"cannot broadcast {t[0]} to {r[0]}"
        return None
    if name == "expand_dims":
        ax = op.attrs["axis"]
        want = t[0].shape[:ax] + (1,) + t[0].shape[ax:]
        if r[0] != TileType(want, t[0].elem):
            return f"'expand_dims' axis {ax} of {t[0]} gives {TileType(want, t[0].elem)}, not {r[0]}"
        return None
    if name == "reshape":
        if t[0].numel != r[0].numel or t[0].elem != r[0].elem:
            return f"cannot reshape {t[0]} to {r[0]}"
        return None
    if name == "assume":
        if not _same(t[0], r[0]) or t[0].is_pointer or not t[0].elem.is_int:
            return f"'assume' takes an integer tensor to itself, got {t[0]} -> {r[0]}"
        for key in op.attrs:
            if key not in ("div", "contig") or not isinstance(op.attrs[key], int) or op.attrs[key] < 1:
                return f"'assume' attributes are positive ints div and contig, got {op.attrs}"
        return None
    if name == "permute":
        try:
            order = [int(p) for p in str(op.attrs["order"]).split(",")]
        except ValueError:
            return f"'permute' order must be comma-separated dims, got {op.attrs['order']!r}"
        if sorted(order) != list(range(len(t[0].shape))) or \
                r[0] != TileType(tuple(t[0].shape[p] for p in order), t[0].elem):
            return f"'permute' by {order} of {t[0]} cannot give {r[0]}"
        return None
    if name == "shift":
        if not 0 <= op.attrs["axis"] < len(t[0].shape) or op.attrs["d"] < 1 or not _same(t[0], r[0]):
            return f"'shift' by {op.attrs['d']} along axis {op.attrs['axis']} of {t[0]} must keep the type"
        return None
    if name == "flip":
        if not 0 <= op.attrs["axis"] < len(t[0].shape) or not _same(t[0], r[0]):
            return f"'flip' axis {op.attrs['axis']} of {t[0]} must keep the type, got {r[0]}"
        return None
    if name == "extract":
        ax, i = op.attrs["axis"], op.attrs["index"]
        if not 0 <= ax < len(t[0].shape) or not 0 <= i < t[0].shape[ax] or \
                r[0] != TileType(t[0].shape[:ax] + t[0].shape[ax + 1:], t[0].elem):
            return f"'extract' of index {i} along axis {ax} of {t[0]} cannot give {r[0]}"
        return None
    if name == "trans":
        if len(t[0].shape) != 2 or r[0] != TileType(t[0].shape[::-1], t[0].elem):
            return f"'trans' takes a 2-D tile to its transpose, got {t[0]} -> {r[0]}"
        return None
    if name == "addptr":
        if not t[0].is_pointer or t[1].is_pointer or not t[1].elem.is_int:
            return f"'addptr' takes pointers and integer offsets, got {t[0]}, {t[1]}"
        if t[0].shape != t[1].shape or not _same(t[0], r[0]):
            return f"'addptr' shapes differ: {t[0]}, {t[1]} -> {r[0]}"
        return None
    if name == "int_to_ptr":
        if t[0].is_pointer or not t[0].elem.is_int or t[0].elem.bits != 64 or not r[0].is_pointer \
                or not r[0].elem.global_address or r[0].shape != t[0].shape:
            return f"'int_to_ptr' takes 64-bit integers to global-address pointers, got {t[0]} -> {r[0]}"
        return None
    if name == "ptr_to_int":
        if not t[0].is_pointer or not t[0].elem.global_address or r[0] != t[0].with_elem(i64):
            return f"'ptr_to_int' takes global-address pointers to i64, got {t[0]} -> {r[0]}"
        return None
    if name == "load":
        if not 1 <= len(t) <= 3 or not t[0].is_pointer:
            return "'load' takes a pointer, an optional mask and an optional other value"
        if r[0] != TileType(t[0].shape, t[0].elem.pointee):
            return f"'load' of {t[0]} gives {TileType(t[0].shape, t[0].elem.pointee)}, not {r[0]}"
        if len(t) >= 2 and t[1] != TileType(t[0].shape, i1):
            return f"'load' mask must be {TileType(t[0].shape, i1)}, got {t[1]}"
        if len(t) == 3 and not _same(t[2], r[0]):
            return f"'load' other must be {r[0]}, got {t[2]}"
        return None
    if name == "store":
        if not 2 <= len(t) <= 3 or not t[0].is_pointer or r:
            return "'store' takes a pointer, a value and an optional mask, and has no result"
        if t[1] != TileType(t[0].shape, t[0].elem.pointee):
            return f"'store' of {t[1]} through {t[0]}: value must be {TileType(t[0].shape, t[0].elem.pointee)}"
        if len(t) == 3 and t[2] != TileType(t[0].shape, i1):
            return f"'store' mask must be {TileType(t[0].shape, i1)}, got {t[2]}"
        return None
    if name in ("atomic_rmw", "atomic_cas"):
        return _check_atomic(op, t, r)
    if name == "histogram":
        if not 1 <= len(t) <= 2 or len(t[0].shape) != 1 or t[0].is_pointer or not t[0].elem.is_int \
                or t[0].elem.is_bool:
            return f"'histogram' takes a 1-D integer tensor and an optional mask, got {t[0]}"
        if len(t) == 2 and t[1] != TileType(t[0].shape, i1):
            return f"'histogram' mask must be {TileType(t[0].shape, i1)}, got {t[1]}"
        nb = op.attrs["num_bins"]
        if not isinstance(nb, int) or nb < 1 or r[0] != TileType((nb,), i32):
            return f"'histogram' with {nb} bins gives tensor<{nb}xi32>, not {r[0]}"
        return None
    if name == "gather":
        src, index, ax = t[0], t[1], op.attrs["axis"]
        if len(src.shape) != len(index.shape) or not 0 <= ax < len(src.shape) or src.is_pointer \
                or index.is_pointer or not index.elem.is_int or index.elem.is_bool:
            return f"'gather' takes a tensor and an integer index tensor of its rank, got {src}, {index}"
        if any(a != b for d, (a, b) in enumerate(zip(src.shape, index.shape)) if d != ax):
            return f"'gather' index {index} must match source {src} outside axis {ax}"
        if r[0] != TileType(index.shape, src.elem):
            return f"'gather' gives {TileType(index.shape, src.elem)}, not {r[0]}"
        return None
    if name == "reduce":
        kind, ax = op.attrs["kind"], op.attrs["axis"]
        if kind not in REDUCE_KINDS or not 0 <= ax < len(t[0].shape):
            return f"'reduce' kind {kind!r} axis {ax} invalid for {t[0]}"
        shape = t[0].shape[:ax] + t[0].shape[ax + 1:]
        elem = i32 if kind in ("argmax", "argmin") else t[0].elem
        if r[0] != TileType(shape, elem):
            return f"'reduce' of {t[0]} along {ax} gives {TileType(shape, elem)}, not {r[0]}"
        return None
    if name == "scan":
        kind, ax = op.attrs["kind"], op.attrs["axis"]
        if kind not in SCAN_KINDS or not 0 <= ax < len(t[0].shape) or not _same(t[0], r[0]) or t[0].is_pointer:
            return f"'scan' kind {kind!r} axis {ax} of {t[0]} must give the same type, got {r[0]}"
        return None
    if name == "dot":
        a, b, c = t
        if len(a.shape) != 2 or len(b.shape) != 2 or a.shape[1] != b.shape[0]:
            return f"'dot' needs [M,K] x [K,N], got {a} and {b}"
        if c.shape != (a.shape[0], b.shape[1]) or not _same(c, r[0]) or a.elem != b.elem:
            return f"'dot' accumulator must be [M,N] like the result, got {a}, {b}, {c} -> {r[0]}"
        return None
    if name == "for":
        if len(t) < 3 or any(x != TileType((), i32) for x in t[:3]):
            return "'for' takes i32 scalars lower bound, upper bound and step first"
        body = op.regions[0]
        inits = t[3:]
        if [a.type for a in body.args] != [TileType((), i32)] + inits or r != inits:
            return "'for' region arguments and results must match the induction variable and inits"
        return _check_yield(body, r, "for")
    if name == "while":
        before, body = op.regions
        if [a.type for a in before.args] != t or [a.type for a in body.args] != t or r != t:
            return "'while' region arguments and results must match its carried inits"
        term = before.terminator
        if term is None or term.name != "yield" or [v.type for v in term.operands] != [TileType((), i1)]:
            return "'while' condition region must end in `yield` of one i1 scalar"
        return _check_yield(body, r, "while")
    if name == "if":
        if t[0] != TileType((), i1):
            return f"'if' condition must be an i1 scalar, got {t[0]}"
        for region in op.regions:
            err = _check_yield(region, r, "if")
            if err:
                return err
        return None
    if name in ("yield", "return", "barrier", "print"):
        return None if not r else f"'{name}' has no result"
    if name == "assert":
        if r or not t[0].elem.is_bool:
            return f"'assert' takes a boolean condition and has no result, got {t[0]}"
        return None
    return None


# element types of each atomic, as Triton allows them (semantic.py atom_red_typechecking_impl):
# 16-bit floats only for add, no 8/16-bit integers; compare-and-swap on any 16- or 32-bit type
_ATOMIC_TYPES = {"add": {"f32", "i32", "u32", "f16", "bf16", "i64", "u64", "f64"},
                 "max": {"f32", "i32", "u32", "i64", "u64", "f64"},
                 "min": {"f32", "i32", "u32", "i64", "u64", "f64"},
                 "xchg": {"f32", "i32", "u32", "i64", "u64", "f64"},
                 "and": {"i32", "u32", "i64", "u64"}, "or": {"i32", "u32", "i64", "u64"},
                 "xor": {"i32", "u32", "i64", "u64"},
                 "cas": {"f32", "i32", "u32", "f16", "bf16", "i16", "u16", "i64", "u64", "f64"}}


def atomic_type_error(kind: str, elem) -> str | None:
    """Why atomic `kind` ('cas' for compare-and-swap) cannot act on elements of `elem`, or None."""
    allowed = _ATOMIC_TYPES[kind]
    if elem.name in allowed:
        return None
    names = ", ".join(sorted(allowed))
    what = "atomic_cas" if kind == "cas" else f"atomic_{kind}"
    return f"{what} does not support {elem}; it takes {names}"


def _check_atomic(op, t, r) -> str | None:
    name = op.name
    if op.attrs.get("sem", "acq_rel") not in ATOMIC_SEMS or op.attrs.get("scope", "gpu") not in ATOMIC_SCOPES:
        return f"'{name}' sem must be one of {sorted(ATOMIC_SEMS)} and scope one of {sorted(ATOMIC_SCOPES)}"
    if name == "atomic_rmw":
        kind = op.attrs["kind"]
        if kind not in ATOMIC_KINDS or not 2 <= len(t) <= 3 or not t[0].is_pointer:
            return "'atomic_rmw' takes a kind, a pointer, a value and an optional mask"
        values = t[1:2]
        if len(t) == 3 and t[2] != TileType(t[0].shape, i1):
            return f"'atomic_rmw' mask must be {TileType(t[0].shape, i1)}, got {t[2]}"
    else:
        kind = "cas"
        if not t[0].is_pointer:
            return "'atomic_cas' takes a pointer, a compare value and a new value"
        values = t[1:3]
    want = TileType(t[0].shape, t[0].elem.pointee)
    if any(v != want for v in values) or len(r) != 1 or r[0] != want:
        return f"'{name}' values and result must be {want}, got {', '.join(map(str, values))} -> {r}"
    return atomic_type_error(kind, want.elem)


def _check_yield(block, result_types, owner: str) -> str | None:
    term = block.terminator
    if term is None:
        return f"'{owner}' region must end in yield or return"
    if term.name == "yield" and [v.type for v in term.operands] != list(result_types):
        got = ", ".join(str(v.type) for v in term.operands)
        want = ", ".join(map(str, result_types))
        return f"'{owner}' yields ({got}) but its results are ({want})"
    return None


def pointer_type(elem: DType) -> PointerType:
    return PointerType(elem)
