"""Word-level encoding of SPIR-V instructions, operands and literals.

Operand encoding is driven by the generated grammar tables: walking an
instruction's operand kinds alongside the caller's Python values lets a string
be resolved as an enumerant where the grammar expects an enum (``"Workgroup"``
for a StorageClass, ``"Aligned"`` for MemoryAccess, ``"BuiltIn",
"GlobalInvocationId"`` for a Decoration and its parameter) and encoded as a
literal string where it expects one.  Ints are always one word: the caller
knows whether that word is an id, a literal or an enum value.
"""

from __future__ import annotations

import difflib
import struct
from collections import deque
from collections.abc import Callable, Iterable

from . import grammar as g

# Instructions that end a block: label() and end_function() check that every
# block ends with one, which catches codegen slips before spirv-val does.
TERMINATORS = frozenset({
    "OpBranch", "OpBranchConditional", "OpSwitch", "OpReturn", "OpReturnValue",
    "OpKill", "OpUnreachable", "OpTerminateInvocation", "OpIgnoreIntersectionKHR",
    "OpTerminateRayKHR", "OpEmitMeshTasksEXT",
})

# Id operands that hold a uint32 constant whose value comes from an enum kind.
ENUM_ID_KINDS = {"IdScope": "Scope", "IdMemorySemantics": "MemorySemantics"}

_RESULT_KINDS = ("IdResultType", "IdResult")


def _unknown(what: str, name: str, choices: Iterable[str]) -> ValueError:
    close = difflib.get_close_matches(name, list(choices), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return ValueError(f"unknown {what} {name!r}{hint}")


def opcode_info(opname: str) -> tuple[int, bool, bool]:
    """(opcode, has_result_type, has_result_id) for a full grammar name such as "OpFAdd"."""
    try:
        return g.OPCODES[opname]
    except KeyError:
        raise _unknown("SPIR-V instruction", opname, g.OPCODES) from None


def canonical_name(opname: str) -> str:
    """The grammar's own name for an instruction, resolving aliases (OpSDotKHR -> OpSDot)."""
    return g.OPCODE_NAMES[opcode_info(opname)[0]]


def enum_value(kind: str, name: str) -> int:
    """Value of an enumerant; bit-mask kinds accept "A|B" combinations."""
    try:
        table = g.ENUMS[kind]
    except KeyError:
        raise _unknown("SPIR-V operand kind", kind, g.ENUMS) from None
    parts = [p.strip() for p in name.split("|")] if kind in g.BIT_ENUMS else [name]
    value = 0
    for part in parts:
        if part not in table:
            raise _unknown(f"{kind} enumerant", part, table)
        value |= table[part]
    return value


def enum_params(kind: str, value: int) -> list[str]:
    """Operand kinds that follow an enumerant (e.g. Decoration Offset -> one LiteralInteger).

    For bit masks, the parameters of each set bit follow in increasing bit order (spec 2.2.2).
    """
    params = g.ENUM_PARAMS.get(kind, {})
    if kind not in g.BIT_ENUMS:
        return list(params.get(value, ()))
    out: list[str] = []
    bit = 1
    while bit <= value:
        if value & bit:
            out += params.get(bit, ())
        bit <<= 1
    return out


def string_words(s: str) -> list[int]:
    """A literal string: UTF-8, NUL-terminated, zero-padded to a whole number of words."""
    data = s.encode("utf-8") + b"\0"
    data += b"\0" * (-len(data) % 4)
    return list(struct.unpack(f"<{len(data) // 4}I", data))


def word(value: int, what: str = "operand") -> int:
    """One 32-bit word; negative ints are taken as two's complement."""
    if not -(1 << 31) <= value < (1 << 32):
        raise ValueError(f"{what} {value} does not fit in a 32-bit word")
    return value & 0xFFFFFFFF


def instruction(opcode: int, operands: list[int]) -> list[int]:
    count = 1 + len(operands)
    if count > 0xFFFF:
        raise ValueError(f"instruction with opcode {opcode} has {count} words (limit 65535)")
    return [(count << 16) | opcode, *operands]


def flatten(values: Iterable) -> list:
    out: list = []
    for v in values:
        if isinstance(v, (list, tuple)):
            out += flatten(v)
        else:
            out.append(v)
    return out


def operand_kinds(opname: str) -> list[str]:
    """The operand kinds of an instruction after its result type and result id."""
    return [k for k in g.OPERANDS[canonical_name(opname)] if k not in _RESULT_KINDS]


def next_operand_kind(queue: deque) -> str | None:
    """Pop the kind of the next operand; '*' kinds repeat, composite kinds expand to their parts."""
    while queue:
        k = queue[0]
        base = k.rstrip("?*")
        if base in g.COMPOSITE_KINDS:
            queue.popleft()
            # A repeated pair stays in the queue behind its two parts.
            queue.extendleft(reversed([*g.COMPOSITE_KINDS[base], *([k] if k.endswith("*") else [])]))
            continue
        if not k.endswith("*"):
            queue.popleft()
        return base
    return None  # past the end of the grammar's list: plain words and strings


def encode_operands(opname: str, operands: Iterable,
                    id_for_enum: Callable[[str, int], int] | None = None) -> list[int]:
    """Encode the operands of ``opname`` (result type and id excluded) into words.

    ``id_for_enum(kind, value)`` turns a string given for an IdScope or
    IdMemorySemantics operand into the id of a uint32 constant.
    """
    queue = deque(operand_kinds(opname))
    words: list[int] = []
    for n, v in enumerate(flatten(operands)):
        kind = next_operand_kind(queue)
        where = f"{opname} operand {n}" + (f" ({kind})" if kind else "")
        if isinstance(v, str):
            if kind in g.ENUMS:
                value = enum_value(kind, v)
                words.append(value)
                queue.extendleft(reversed(enum_params(kind, value)))
            elif kind in ENUM_ID_KINDS and id_for_enum is not None:
                words.append(id_for_enum(kind, enum_value(ENUM_ID_KINDS[kind], v)))
            elif kind == "LiteralExtInstInteger":
                if v not in g.GLSL_STD_450:
                    raise _unknown("GLSL.std.450 instruction", v, g.GLSL_STD_450)
                words.append(g.GLSL_STD_450[v])
            elif kind == "LiteralSpecConstantOpInteger":
                words.append(opcode_info(v)[0])
                queue.extend(operand_kinds(v))
            elif kind in ("LiteralString", None):
                words += string_words(v)
            else:
                raise ValueError(f"{where}: expected {kind}, got the string {v!r}")
        elif isinstance(v, float):
            if kind != "LiteralFloat":
                raise TypeError(f"{where}: got the float {v!r}; use const() for float constants")
            words.append(struct.unpack("<I", struct.pack("<f", v))[0])
        elif isinstance(v, int):
            words.append(word(v, where))
            if kind in g.ENUMS:
                queue.extendleft(reversed(enum_params(kind, v)))
            elif kind == "LiteralSpecConstantOpInteger":
                queue.extend(operand_kinds(g.OPCODE_NAMES[v]))
        else:
            raise TypeError(f"{where}: cannot encode {type(v).__name__} {v!r}")
    return words


def scalar_words(info: tuple, value: bool | int | float) -> list[int]:
    """Literal words of a numeric constant of type ``info`` (("int", width, signed) or
    ("float", width, encoding)), per spec 2.2.1: narrow values sit in the low bits,
    sign-extended for signed ints; 64-bit values are two words, low-order first."""
    kind, width = info[0], info[1]
    if kind == "int":
        if isinstance(value, float):
            raise TypeError(f"float {value!r} given for an int{width} constant")
        value = int(value)
        if not -(1 << (width - 1)) <= value < (1 << width):
            raise ValueError(f"{value} does not fit in int{width}")
        bits = value & ((1 << width) - 1)
        if width < 32 and info[2] and bits >> (width - 1):
            bits |= 0xFFFFFFFF & ~((1 << width) - 1)
        return [bits] if width <= 32 else [bits & 0xFFFFFFFF, bits >> 32]
    if kind == "float":
        value = float(value)
        encoding = info[2]
        try:
            if encoding == "BFloat16KHR":
                return [_bfloat16_bits(value)]
            if encoding is not None:
                raise ValueError(f"constants of float encoding {encoding} are not supported")
            fmt = {16: "<e", 32: "<f", 64: "<d"}[width]
            bits = int.from_bytes(struct.pack(fmt, value), "little")
        except OverflowError:
            raise ValueError(f"{value!r} overflows float{width}") from None
        return [bits] if width <= 32 else [bits & 0xFFFFFFFF, bits >> 32]
    raise TypeError(f"no scalar literal for type {info}")


def _bfloat16_bits(value: float) -> int:
    bits = struct.unpack("<I", struct.pack("<f", value))[0]
    if (bits & 0x7F800000) == 0x7F800000 and bits & 0x7FFFFF:
        return (bits >> 16) | 0x40  # keep NaN a (quiet) NaN after truncation
    return (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # round to nearest even
