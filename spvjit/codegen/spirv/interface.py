"""What a SPIR-V module says about its own interface: descriptor bindings and push-constant size.

The kernel cache cross-checks a stored entry against these before trusting it, so an entry
whose binding list or push size disagrees with its module is recompiled, never dispatched.
"""
from __future__ import annotations

import struct

from . import grammar as g


def _opcode(name: str) -> int:
    return g.OPCODES[name][0]


def module_interface(spirv: bytes) -> tuple[set[int], int]:
    """(binding numbers decorated in set 0, bytes of the push-constant block or 0)."""
    if len(spirv) < 20 or len(spirv) % 4:
        raise ValueError("not a SPIR-V module")
    words = struct.unpack(f"<{len(spirv) // 4}I", spirv)
    if words[0] != 0x07230203:
        raise ValueError("not a SPIR-V module")
    decorate, member_decorate = _opcode("OpDecorate"), _opcode("OpMemberDecorate")
    variable, type_pointer = _opcode("OpVariable"), _opcode("OpTypePointer")
    type_int, type_float, type_struct = _opcode("OpTypeInt"), _opcode("OpTypeFloat"), _opcode("OpTypeStruct")
    binding_dec, offset_dec = g.ENUMS["Decoration"]["Binding"], g.ENUMS["Decoration"]["Offset"]
    push_class = g.ENUMS["StorageClass"]["PushConstant"]
    bindings: set[int] = set()
    offsets: dict[int, tuple[int, int]] = {}   # struct id -> (largest member offset, its member index)
    members: dict[int, tuple] = {}        # struct id -> member type ids
    widths: dict[int, int] = {}           # scalar type id -> bits
    pointee: dict[int, int] = {}          # pointer type id -> pointee id (PushConstant only)
    push_struct = None
    i = 5
    while i < len(words):
        count, op = words[i] >> 16, words[i] & 0xFFFF
        if count == 0 or i + count > len(words):
            raise ValueError("truncated SPIR-V instruction")
        ops = words[i + 1:i + count]
        if op == decorate and len(ops) >= 3 and ops[1] == binding_dec:
            bindings.add(ops[2])
        elif op == member_decorate and len(ops) >= 4 and ops[2] == offset_dec:
            offsets[ops[0]] = max(offsets.get(ops[0], (0, 0)), (ops[3], ops[1]))
        elif op in (type_int, type_float) and len(ops) >= 2:
            widths[ops[0]] = ops[1]
        elif op == type_struct and ops:
            members[ops[0]] = tuple(ops[1:])
        elif op == type_pointer and len(ops) >= 3 and ops[1] == push_class:
            pointee[ops[0]] = ops[2]
        elif op == variable and len(ops) >= 3 and ops[2] == push_class:
            push_struct = pointee.get(ops[0])
        i += count
    # push members are 32- or 64-bit scalars: the block ends after its last member
    push = 0
    if push_struct in offsets:
        last, index = offsets[push_struct]
        member_types = members.get(push_struct, ())
        bits = widths.get(member_types[index], 32) if index < len(member_types) else 32
        push = last + bits // 8
    return bindings, push
