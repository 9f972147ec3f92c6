"""A compact SPIR-V disassembler built on the generated grammar tables.

Used by tools.disassemble() when spirv-dis is not installed (e.g. on a machine
without the dev extra).  Output follows spirv-dis --raw-id closely enough to
read: ``%5 = OpFAdd %2 %3 %4``, enumerants by name, strings decoded, constants
shown as numbers of their type.
"""

from __future__ import annotations

import array
import struct
from collections import deque

from . import grammar as g
from .encode import enum_params, next_operand_kind

# Reverse enum tables: the canonical name comes first in each ENUMS dict.
_ENUM_NAMES: dict[str, dict[int, str]] = {
    kind: {v: n for n, v in reversed(table.items())} for kind, table in g.ENUMS.items()
}
_GLSL_NAMES = {v: n for n, v in g.GLSL_STD_450.items()}
_ID_KINDS = {"IdResultType", "IdRef", "IdScope", "IdMemorySemantics"}


def _enum_text(kind: str, value: int) -> str:
    names = _ENUM_NAMES[kind]
    if kind not in g.BIT_ENUMS or value == 0:
        return names.get(value, str(value))
    parts, bit = [], 1
    while bit <= value:
        if value & bit:
            parts.append(names.get(bit, hex(bit)))
        bit <<= 1
    return "|".join(parts)


def _string(words: list[int], i: int) -> tuple[str, int]:
    """Decode a literal string starting at words[i]; returns (text, index after it)."""
    data = b""
    while i < len(words):
        chunk = struct.pack("<I", words[i])
        i += 1
        if b"\0" in chunk:
            data += chunk[: chunk.index(b"\0")]
            break
        data += chunk
    return data.decode("utf-8", errors="replace"), i


def _float_text(value: float, width: int) -> str:
    # Same spelling as spirv-dis: hex floats for half, max_digits10 decimals otherwise.
    if width == 16 and value == value and abs(value) != float("inf"):
        mant, exp = value.hex().split("p")
        return mant.rstrip("0").rstrip(".") + "p" + exp
    return f"{value:.{9 if width == 32 else 17}g}"


class _Context:
    def __init__(self):
        self.types: dict[int, tuple] = {}  # numeric scalar types: id -> (kind, width, signed)
        self.value_type: dict[int, int] = {}  # result id -> result type id
        self.glsl_sets: set[int] = set()

    def number(self, type_id: int | None, words: list[int], i: int) -> tuple[str, int]:
        kind, width, signed = self.types.get(type_id, ("int", 32, False))
        n = 2 if width == 64 else 1
        bits = words[i] | (words[i + 1] << 32 if n == 2 and i + 1 < len(words) else 0)
        if kind == "float" and width in (16, 32, 64):
            fmt = {16: "<e", 32: "<f", 64: "<d"}[width]
            value = struct.unpack(fmt, (bits & ((1 << width) - 1)).to_bytes(width // 8, "little"))[0]
            return _float_text(value, width), i + n
        bits &= (1 << width) - 1
        if signed and bits >> (width - 1):
            bits -= 1 << width
        return str(bits), i + n


def _instruction(opname: str, words: list[int], ctx: _Context) -> str:
    queue = deque(g.OPERANDS.get(opname, ()))
    result, out, i = None, [], 0
    result_type = None
    while i < len(words):
        kind = next_operand_kind(queue)
        w = words[i]
        if kind == "IdResult":
            result, i = w, i + 1
            continue
        if kind in _ID_KINDS:
            out.append(f"%{w}")
            result_type = w if kind == "IdResultType" and result_type is None else result_type
            i += 1
        elif kind == "LiteralString":
            text, i = _string(words, i)
            out.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
        elif kind == "LiteralContextDependentNumber":
            # OpConstant/OpSpecConstant: the result type; OpSwitch: the selector's type.
            tid = result_type if result_type is not None else ctx.value_type.get(words[0])
            text, i = ctx.number(tid, words, i)
            out.append(text)
        elif kind == "LiteralExtInstInteger":
            is_glsl = len(words) > 2 and words[2] in ctx.glsl_sets
            out.append(_GLSL_NAMES.get(w, str(w)) if is_glsl else str(w))
            i += 1
        elif kind == "LiteralSpecConstantOpInteger":
            name = g.OPCODE_NAMES.get(w)
            out.append(name[2:] if name else str(w))
            queue.extend(k for k in g.OPERANDS.get(name, ()) if k not in ("IdResultType", "IdResult"))
            i += 1
        elif kind in g.ENUMS:
            out.append(_enum_text(kind, w))
            queue.extendleft(reversed(enum_params(kind, w)))
            i += 1
        elif kind == "LiteralFloat":
            out.append(repr(struct.unpack("<f", struct.pack("<I", w))[0]))
            i += 1
        else:  # LiteralInteger, or words past the grammar's operand list
            out.append(str(w))
            i += 1
    if result is not None and result_type is not None:
        ctx.value_type[result] = result_type
    if opname == "OpTypeInt":
        ctx.types[result] = ("int", words[1], bool(words[2]))
    elif opname == "OpTypeFloat" and len(words) == 2:
        ctx.types[result] = ("float", words[1], False)
    elif opname == "OpExtInstImport" and out and out[0] == '"GLSL.std.450"':
        ctx.glsl_sets.add(result)
    text = " ".join([opname, *out])
    return f"{'%' + str(result):>12} = {text}" if result is not None else " " * 15 + text


def _generator(word: int) -> str:
    vendor = word >> 16  # tool id in the high half, its version in the low half
    return f"{'Khronos' if vendor == 0 else vendor}; {word & 0xFFFF}"


def disassemble(binary: bytes | list[int], header: bool = True) -> str:
    words = list(struct.unpack(f"<{len(binary) // 4}I", binary)) if isinstance(binary, bytes) else list(binary)
    if len(words) < 5 or words[0] != g.MAGIC_NUMBER:
        raise ValueError("not a little-endian SPIR-V module (bad magic number)")
    lines = []
    if header:
        lines += ["; SPIR-V", f"; Version: {(words[1] >> 16) & 0xFF}.{(words[1] >> 8) & 0xFF}",
                  f"; Generator: {_generator(words[2])}", f"; Bound: {words[3]}", f"; Schema: {words[4]}"]
    ctx, i = _Context(), 5
    while i < len(words):
        count, opcode = words[i] >> 16, words[i] & 0xFFFF
        if count == 0 or i + count > len(words):
            raise ValueError(f"truncated or malformed instruction at word {i}")
        name = g.OPCODE_NAMES.get(opcode)
        body = words[i + 1: i + count]
        lines.append(_instruction(name, body, ctx) if name else
                     " " * 15 + f"Op{opcode} " + " ".join(map(str, body)))
        i += count
    return "\n".join(lines) + "\n"


def workgroup_accesses(binary: bytes) -> tuple[int, int]:
    """(OpStore, OpLoad) count through pointers into Workgroup variables: how many per-lane
    shared-memory accesses a module makes (lavapipe 22.3 runs each as a loop over the lanes)."""
    w = array.array("I", binary)
    i, wg_vars, ptrs, stores, loads = 5, set(), set(), 0, 0
    while i < len(w):
        n, op = w[i] >> 16, w[i] & 0xFFFF
        if op == 59 and w[i + 3] == 4:                   # OpVariable ... Workgroup
            wg_vars.add(w[i + 2])
        elif op == 65 and w[i + 3] in wg_vars:           # OpAccessChain into one
            ptrs.add(w[i + 2])
        elif op == 62 and w[i + 1] in ptrs:              # OpStore
            stores += 1
        elif op == 61 and w[i + 3] in ptrs:              # OpLoad
            loads += 1
        i += max(n, 1)
    return stores, loads
