"""`sl.device_print` on the device: records in a hidden debug buffer, printed by the host.

A kernel with `print` ops gets one more storage buffer, PRINT_PARAM (u32 words, the last
binding), that it appends fixed-size records to:

    word 0            record counter (OpAtomicIAdd; keeps counting past the capacity)
    words 1..7        unused
    record k          words RECORD_WORDS * (k + 1) ..: [print id | operand << 16, pid x, pid y,
                      pid z, flat element index, value bits, sequence, 0]

`sequence` counts the print ops each invocation has executed, so the host can put the
records back in program order (records of one print execution share it); the value is the
element's 32-bit word (`Memory.to_word`: floats as f32 bits, small ints widened, booleans
0/1, pointers as element offsets).  Every lane writes the elements it holds; a scalar is
written by lane 0 only.  The host (launch.py) reads the buffer after the submit, sorts the
records by (program, sequence, operand, element), prints them in Triton's format
`pid (x, y, z) idx (i, j) prefix: value` (ir/print_format.py) and reports records beyond the capacity as dropped.

The table of prints (`print_table`) comes from the IR, in walk order: the lowering numbers
the ops with it, and the host rebuilds the same table to decode (also on a disk-cache hit).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import print_format
from ..ir import types as T
from ..ir.core import KernelIR, Param, Value
from ..ir.types import PointerType, TileType
from .values import LoweringError
from .atomics import counter_add

PRINT_PARAM = "__device_print"
BUFFER_BYTES = 1 << 20
RECORD_WORDS = 8
CAPACITY = BUFFER_BYTES // (4 * RECORD_WORDS) - 1       # the first record's place is the header
NO_VALUE = 0x7FFF                                       # operand field of a print without values
FAILED = 0x7FFE                                         # operand field of a failed assert's element


@dataclass(frozen=True)
class PrintSite:
    prefix: str                # an assert's message
    hex: bool
    operands: tuple            # (dtype name, shape) per operand
    where: str                 # file:line of the call, for messages
    is_assert: bool = False


def _debug_ops(kernel: KernelIR, asserts: bool) -> list:
    names = ("print", "assert") if asserts else ("print",)
    return [op for op in kernel.walk() if op.name in names]


def print_table(kernel: KernelIR, asserts: bool = False) -> list[PrintSite]:
    """The kernel's prints (and checked asserts) by id: the `id` attributes where
    add_print_buffer numbered them (loop unrolling may have copied an op since), else walk
    order, the order it numbers in."""
    sites: dict[int, PrintSite] = {}
    for n, op in enumerate(_debug_ops(kernel, asserts)):
        where = f"{op.loc.file}:{op.loc.line}" if op.loc else "?"
        checked = op.name == "assert"
        sites.setdefault(op.attrs.get("id", n), PrintSite(
            op.attrs["msg"] if checked else op.attrs["prefix"], bool(op.attrs.get("hex", False)),
            tuple((_elem_name(v.type), v.type.shape) for v in op.operands), where, checked))
    return [sites[i] for i in sorted(sites)]


def _elem_name(ty: TileType) -> str:
    return "ptr" if ty.is_pointer else ty.elem.name


def add_print_buffer(kernel: KernelIR, asserts: bool = False) -> bool:
    """Number the kernel's print ops, and its assert ops where they are checked (`asserts`),
    with an attribute `id` before any pass copies them, and append the hidden buffer
    parameter; False when the kernel has none of them."""
    ops = _debug_ops(kernel, asserts)
    if not ops:
        return False
    for i, op in enumerate(ops):
        op.attrs["id"] = i
    if any(p.name == PRINT_PARAM for p in kernel.params):
        return True                  # lowered before (for another target): one buffer is enough
    kernel.params.append(Param(PRINT_PARAM, Value(TileType((), PointerType(T.u32)), PRINT_PARAM)))
    return True


def lower_print(lw, op) -> None:
    em, mem = lw.em, lw.mem
    bd = next(b for b in mem.bindings if b.name == PRINT_PARAM)
    if not hasattr(lw, "print_sequence"):
        # one counter per invocation, in the entry block so that it dominates every print
        lw.print_sequence = em.b.local_variable(em.b.type_pointer("Function", em.u32), em.cu(0))
    seq = em.load_var(em.u32, lw.print_sequence)
    em.store_var(lw.print_sequence, em.op("OpIAdd", em.u32, seq, em.cu(1)))
    pids = [em.op("OpBitcast", em.u32, mem.program_id(a)) for a in range(3)]
    if not op.operands:            # a message alone: one record from lane 0
        with em.if_then(em.op("OpIEqual", em.bool, lw.lane, em.ci(0))):
            _append(em, mem, bd, [em.cu(op.attrs["id"] | (NO_VALUE << 16)), *pids, em.cu(0), em.cu(0), seq,
                                  em.cu(0)])
        return
    for k, v in enumerate(op.operands):
        ty = v.type
        if (not ty.is_pointer and ty.elem.bits > 32) or (ty.is_pointer and ty.elem.global_address):
            raise LoweringError(f"{lw.loc}: device_print of {ty.elem} values is not supported on the device")
        lv = lw.get(v)
        tag = em.cu(op.attrs["id"] | (k << 16))
        for r, reg in enumerate(lv.regs):
            word = em.op("OpBitcast", em.u32, reg) if ty.is_pointer else mem.to_word(reg, ty.elem)
            if ty.is_scalar:
                index, pred = em.cu(0), em.op("OpIEqual", em.bool, lw.lane, em.ci(0))
            else:
                index, pred = em.op("OpBitcast", em.u32, lw.flat(r, ty.numel)), lw.valid(ty.numel, r)
            fields = [tag, *pids, index, word, seq, em.cu(0)]
            if pred is None:
                _append(em, mem, bd, fields)
            else:
                with em.if_then(pred):
                    _append(em, mem, bd, fields)


def lower_assert(lw, op) -> None:
    """A checked device_assert: a record for every element whose condition is false."""
    em, mem = lw.em, lw.mem
    bd = next(b for b in mem.bindings if b.name == PRINT_PARAM)
    pids = [em.op("OpBitcast", em.u32, mem.program_id(a)) for a in range(3)]
    ty = op.operands[0].type
    tag = em.cu(op.attrs["id"] | (FAILED << 16))
    for r, ok in enumerate(lw.get(op.operands[0]).regs):
        failed = em.op("OpLogicalNot", em.bool, ok)
        if ty.is_scalar:
            index = em.cu(0)
            failed = em.land(failed, em.op("OpIEqual", em.bool, lw.lane, em.ci(0)))
        else:
            index = em.op("OpBitcast", em.u32, lw.flat(r, ty.numel))
            valid = lw.valid(ty.numel, r)
            failed = failed if valid is None else em.land(failed, valid)
        with em.if_then(failed):
            _append(em, mem, bd, [tag, *pids, index, em.cu(0), em.cu(0), em.cu(0)])


def _append(em, mem, bd, fields) -> None:
    slot = counter_add(mem, bd, em.ci(0), em.cu(1))
    with em.if_then(em.op("OpULessThan", em.bool, slot, em.cu(CAPACITY))):
        base = em.op("OpIMul", em.u32, em.op("OpIAdd", em.u32, slot, em.cu(1)), em.cu(RECORD_WORDS))
        for i, f in enumerate(fields):
            idx = em.op("OpBitcast", em.i32, em.op("OpIAdd", em.u32, base, em.cu(i)) if i else base)
            mem.store_elem(bd, idx, f)


# ---- host side ---------------------------------------------------------------------------
def _value(word: int, dtype: str):
    """The element a record's 32-bit word holds (see Memory.to_word)."""
    if dtype == "ptr":
        return int(np.uint32(word).view(np.int32))
    dt = T.DTYPES[dtype]
    if dt.is_float:
        return np.float32(np.uint32(word).view(np.float32))
    if dt.is_bool:
        return word
    return int(np.uint32(word).view(np.int32)) if dt.is_signed else word


def format_records(words: np.ndarray, table: list[PrintSite]) -> tuple[list[str], int, str | None]:
    """(lines in program order, records dropped, the first failed assertion's message or
    None) from the buffer's words."""
    count = int(words[0])
    kept = min(count, CAPACITY)
    recs = words[RECORD_WORDS:RECORD_WORDS * (kept + 1)].reshape(kept, RECORD_WORDS).astype(np.int64)
    order = sorted(range(kept), key=lambda i: (recs[i, 3], recs[i, 2], recs[i, 1], recs[i, 6],
                                                recs[i, 0] >> 16, recs[i, 4]))
    lines, failure = [], None
    for i in order:
        tag, px, py, pz, flat, word = (int(x) for x in recs[i, :6])
        pid_, k = tag & 0xFFFF, tag >> 16
        if pid_ < len(table) and k == FAILED and table[pid_].is_assert:
            if failure is None:
                site = table[pid_]
                idx = np.unravel_index(flat, site.operands[0][1]) if site.operands[0][1] else ()
                failure = (f"{site.where}: device_assert failed in program ({px}, {py}, {pz}) at index "
                           f"{tuple(int(i) for i in idx)}: {site.prefix}")
            continue
        if pid_ < len(table) and k == NO_VALUE:
            lines.append(print_format.line((px, py, pz), (), table[pid_].prefix, None, 0, ""))
            continue
        if pid_ >= len(table) or k >= len(table[pid_].operands):
            raise ValueError(f"device_print buffer holds an unknown record (print {pid_}, operand {k})")
        site = table[pid_]
        dtype, shape = site.operands[k]
        idx = np.unravel_index(flat, shape) if shape else ()
        text = print_format.format_value(_value(word, dtype), dtype, site.hex)
        lines.append(print_format.line((px, py, pz), idx, site.prefix, k, len(site.operands), text))
    return lines, count - kept, failure
