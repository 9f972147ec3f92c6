"""Core data structures of the tile IR: values, operations, blocks, kernels.

The IR is SSA with structured control flow: `for`, `while` and `if` own regions
(one block each) that end in `yield` (or `return`).  Ops are identified by name;
`spvjit.ir.ops` lists every op with its operand and attribute rules.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from .types import TileType


@dataclass(frozen=True)
class Loc:
    """A source location: where in the user's kernel an op came from."""
    file: str
    line: int
    col: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class Value:
    __slots__ = ("type", "hint", "owner")

    def __init__(self, type: TileType, hint: str | None = None, owner: Any = None):
        self.type = type
        self.hint = hint      # a readable name from the source, used by the printer
        self.owner = owner    # the Operation producing it, or the Block whose argument it is

    def __repr__(self) -> str:
        return f"Value({self.hint or '?'}: {self.type})"


class Block:
    def __init__(self, args: list[Value] | None = None):
        self.args: list[Value] = list(args or [])
        for a in self.args:
            a.owner = self
        self.ops: list[Operation] = []

    def add_arg(self, type: TileType, hint: str | None = None) -> Value:
        v = Value(type, hint, self)
        self.args.append(v)
        return v

    @property
    def terminator(self) -> "Operation | None":
        if self.ops and self.ops[-1].name in ("yield", "return"):
            return self.ops[-1]
        return None

    def walk(self) -> Iterator["Operation"]:
        for op in self.ops:
            yield op
            for region in op.regions:
                yield from region.walk()


class Operation:
    __slots__ = ("name", "operands", "results", "attrs", "regions", "loc")

    def __init__(self, name: str, operands: list[Value], result_types: list[TileType],
                 attrs: dict | None = None, regions: list[Block] | None = None,
                 loc: Loc | None = None, result_hints: list[str | None] | None = None):
        self.name = name
        self.operands = list(operands)
        hints = result_hints or [None] * len(result_types)
        self.results = [Value(t, h, self) for t, h in zip(result_types, hints)]
        self.attrs: dict[str, Any] = dict(attrs or {})
        self.regions: list[Block] = list(regions or [])
        self.loc = loc

    @property
    def result(self) -> Value:
        assert len(self.results) == 1, self.name
        return self.results[0]

    def __repr__(self) -> str:
        return f"<op {self.name} {self.attrs}>"


@dataclass
class Param:
    """A kernel parameter that survives specialization (tensors and runtime scalars)."""
    name: str
    value: Value


@dataclass
class KernelIR:
    name: str
    params: list[Param]
    body: Block
    constexprs: dict[str, Any] = field(default_factory=dict)   # for the printout only

    def walk(self) -> Iterator[Operation]:
        return self.body.walk()


class Builder:
    """Appends ops to a block; the frontend and the passes build IR through it."""

    def __init__(self, block: Block):
        self.block = block
        self.loc: Loc | None = None

    def create(self, name: str, operands: list[Value], result_types: list[TileType],
               attrs: dict | None = None, regions: list[Block] | None = None,
               hints: list[str | None] | None = None) -> Operation:
        op = Operation(name, operands, result_types, attrs, regions, self.loc, hints)
        self.block.ops.append(op)
        return op

    def op1(self, name: str, operands: list[Value], result_type: TileType, **attrs) -> Value:
        return self.create(name, operands, [result_type], attrs).result
