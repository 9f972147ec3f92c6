"""What the passes share: purity, constant lookup and value substitution."""
from __future__ import annotations

from ..core import Operation, Value
from ..ops import ops_of

# ops that touch memory or steer control; `load` is here because a store between
# two equal loads may change what the second reads
IMPURE = frozenset({"load", "store", "atomic_rmw", "for", "while", "if", "yield", "return", "barrier", "assert", "print"})

# data movement: a uniform constant stays the same value in any shape
SHAPE_OPS = ops_of("shape")

NOT_CONSTANT = object()


def is_pure(op: Operation) -> bool:
    return op.name not in IMPURE


def constant_value(v: Value):
    """The value of a `constant` op's result (scalars and uniform tensors), else NOT_CONSTANT."""
    owner = v.owner
    if isinstance(owner, Operation) and owner.name == "constant":
        return owner.attrs["value"]
    return NOT_CONSTANT


def make_constant(op: Operation, value) -> None:
    """Turn `op` into a `constant` in place; its result Value (and so every use) stays."""
    op.name, op.operands, op.attrs, op.regions = "constant", [], {"value": value}, []


class Substitution:
    """Replaces values while a pass walks the IR in program order.

    Every use of a value comes after its definition in that order, so an op
    whose result was replaced can be dropped at once: `apply` rewrites each
    later use before anything looks at it.
    """

    def __init__(self):
        self._map: dict[int, tuple[Value, Value]] = {}   # keeps `old` alive so its id stays unique

    def replace(self, old: Value, new: Value) -> None:
        self._map[id(old)] = (old, new)

    def resolve(self, v: Value) -> Value:
        while id(v) in self._map:
            v = self._map[id(v)][1]
        return v

    def apply(self, op: Operation) -> None:
        if self._map:
            op.operands = [self.resolve(v) for v in op.operands]
