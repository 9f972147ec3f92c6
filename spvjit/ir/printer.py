"""Textual form of the tile IR (parsed back by `spvjit.ir.parser`).

    kernel @add(%x: ptr<f32>, %n: i32) constexprs {BLOCK = 1024} {
      %pid = program_id {axis = 0} : i32
      %0 = for %lb, %ub, %step, %acc : tensor<16xf32> {
      ^(%i: i32, %acc_1: tensor<16xf32>):
        ...
        yield %3
      }
      return
    }

Values print as their source hint where one exists (made unique with a
suffix), otherwise as a number, so printing a parsed module reproduces it.
"""
from __future__ import annotations

import math

from .core import Block, KernelIR, Operation, Value


# backslash, quote and line breaks are escaped so a string stays on its line (the parser undoes this)
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def format_attr(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return '"' + v.translate(_STRING_ESCAPES) + '"'
    raise TypeError(f"cannot print attribute value {v!r}")


def format_attrs(attrs: dict) -> str:
    if not attrs:
        return ""
    return "{" + ", ".join(f"{k} = {format_attr(attrs[k])}" for k in sorted(attrs)) + "}"


class _Namer:
    def __init__(self):
        self.names: dict[int, str] = {}
        self.used: set[str] = set()
        self.counter = 0

    def define(self, v: Value) -> str:
        if v.hint:
            name, k = v.hint, 1
            while name in self.used:
                name = f"{v.hint}_{k}"
                k += 1
        else:
            while str(self.counter) in self.used:
                self.counter += 1
            name = str(self.counter)
            self.counter += 1
        self.used.add(name)
        self.names[id(v)] = name
        return "%" + name

    def ref(self, v: Value) -> str:
        try:
            return "%" + self.names[id(v)]
        except KeyError:
            return "%<undefined>"


def print_kernel(kernel: KernelIR, locs: bool = False, notes: dict | None = None) -> str:
    """The module's text; `notes` (id(op) -> str) become trailing `// ...` comments, which
    the parser skips (SPVJIT_DUMP=lowered uses them to show layouts and lowering choices)."""
    namer = _Namer()
    params = ", ".join(f"{namer.define(p.value)}: {p.value.type}" for p in kernel.params)
    head = f"kernel @{kernel.name}({params})"
    consts = {k: v for k, v in kernel.constexprs.items() if isinstance(v, (bool, int, float, str))}
    if consts:
        head += " constexprs " + format_attrs(consts)
    lines = [head + " {"]
    _print_block_ops(kernel.body, namer, lines, "  ", locs, notes)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _print_block_ops(block: Block, namer: _Namer, lines: list[str], indent: str, locs: bool, notes=None):
    for op in block.ops:
        _print_op(op, namer, lines, indent, locs, notes)


def _print_op(op: Operation, namer: _Namer, lines: list[str], indent: str, locs: bool, notes=None):
    text = ""
    operands = ", ".join(namer.ref(v) for v in op.operands)
    if op.results:
        # results are defined after operands are referenced (an op never uses its own results)
        text = ", ".join(namer.define(r) for r in op.results) + " = "
    text += op.name
    if operands:
        text += " " + operands
    if op.attrs:
        text += " " + format_attrs(op.attrs)
    if op.results:
        text += " : " + ", ".join(str(r.type) for r in op.results)
    if locs and op.loc is not None:
        text += f" loc({format_attr(op.loc.file)}:{op.loc.line}:{op.loc.col})"
    if notes and id(op) in notes:
        note = "  // " + notes[id(op)].replace("\n", " ")
    else:
        note = ""
    if not op.regions:
        lines.append(indent + text + note)
        return
    lines.append(indent + text + " {" + note)
    for i, region in enumerate(op.regions):
        if i:
            lines.append(indent + "} {")
        if region.args:
            args = ", ".join(f"{namer.define(a)}: {a.type}" for a in region.args)
            lines.append(f"{indent}^({args}):")
        _print_block_ops(region, namer, lines, indent + "  ", locs, notes)
    lines.append(indent + "}")
