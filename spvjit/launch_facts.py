"""Facts that the compiler cannot prove but one launch can: checked on the host, per grid.

Triton's tutorials wrap their column offsets, `(pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % N`,
and read B through them.  Those offsets are runs of 4 (one vec4 load instead of four scalar
ones) wherever pid_n >= 0.  The tutorial computes pid_n from the program id by grouped
divisions that leave it >= 0 in the tutorial's own grid, but not in every grid: in an
oversized one, `group_size_m` goes to 0 or below, and C's remainder of a negative offset is
no run.  Triton vectorizes such loads without asking; spvjit asks the launch.

`specialize_for_launch` finds the kernel's wanted scalars (axis_info.nonneg_wanted: scalars
of the top level, computed from program ids, arguments and constants), computes them on the
host for every program of the grid with the interpreter's integer semantics (interpreter/ops.py,
the executable specification), and where every one is >= 0 in every program, launches a
specialization that assumes it (`Specialization.assume_nonneg`, part of the compile key).
A grid where one is negative, or cannot be computed, launches the plain specialization.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .codegen import axis_info
from .compiler import _build_ir
from .interpreter.ops import binary, finish, value_dtype

MAX_PROGRAMS = 1 << 20
     # grids above this many programs are not checked (the check is numpy arrays of this
     # length per scalar: 4 MiB each); they launch the plain specialization

MAX_REMEMBERED = 256
     # answers kept per specialization, by (grid, integer arguments): a kernel launched with
     # ever new arguments (a decode position) recomputes instead of growing without bound

_BINARY = ("add", "sub", "mul", "floordiv", "mod", "maximum", "minimum")


_UNSEEN = object()


def specialize_for_launch(jitfn, spec, grid: tuple[int, int, int]):
    """`spec`, or `spec` assuming its wanted scalars >= 0 where they are in every program."""
    facts = jitfn._launch_facts.get(spec.key(), _UNSEEN)
    if facts is _UNSEEN:
        facts = NonnegFacts.of(jitfn, spec)
        jitfn._launch_facts[spec.key()] = facts
    if facts is not None and facts.hold(grid, dict(spec.runtime)):
        return replace(spec, assume_nonneg=True)
    return spec


class NonnegFacts:
    """The scalars of one specialization that would let loads vectorize were they >= 0, and
    whether they are, per (grid, integer arguments)."""

    def __init__(self, kernel, values: list):
        self.kernel, self.values = kernel, values
        self.params = {id(p.value): p.name for p in kernel.params}
        self._seen: dict[tuple, bool] = {}

    @classmethod
    def of(cls, jitfn, spec) -> NonnegFacts | None:
        kernel = _build_ir(jitfn, spec, optimize=True, dump=False)    # the IR the compile lowers
        values = axis_info.nonneg_wanted(kernel, axis_info.analyze(kernel, spec.divisibility or {}))
        return cls(kernel, values) if values else None

    def hold(self, grid: tuple[int, int, int], args: dict) -> bool:
        ints = tuple(sorted((n, int(v)) for n, v in args.items()
                            if isinstance(v, (int, np.integer)) and not isinstance(v, bool)))
        key = (tuple(grid), ints)
        if key not in self._seen:
            if len(self._seen) >= MAX_REMEMBERED:
                self._seen.clear()
            self._seen[key] = self._compute(tuple(grid), dict(ints))
        return self._seen[key]

    def _compute(self, grid, args: dict) -> bool:
        programs = grid[0] * grid[1] * grid[2]
        if programs == 0 or programs > MAX_PROGRAMS:
            return False
        flat = np.arange(programs, dtype=np.int64)
        pids = [flat % grid[0], flat // grid[0] % grid[1], flat // (grid[0] * grid[1])]
        pids = [p.astype(np.int32) for p in pids]
        env: dict[int, np.ndarray] = {}
        try:
            with np.errstate(all="ignore"):       # i32 wrap-around, as on the device
                return all(bool(np.all(self._value(v, env, grid, pids, args) >= 0)) for v in self.values)
        except _Unknown:
            return False

    def _value(self, v, env, grid, pids, args):
        if id(v) in env:
            return env[id(v)]
        if v.type.shape or not v.type.elem.is_int:
            raise _Unknown
        dt = value_dtype(v.type.elem)
        op = v.owner
        name = getattr(op, "name", None)        # None for a kernel parameter
        if id(v) in self.params:
            if self.params[id(v)] not in args:
                raise _Unknown
            out = np.asarray(args[self.params[id(v)]]).astype(dt)
        elif name == "constant" and type(op.attrs["value"]) is int:
            out = np.asarray(op.attrs["value"]).astype(dt)
        elif name == "program_id":
            out = pids[op.attrs["axis"]].astype(dt)
        elif name == "num_programs":
            out = np.asarray(grid[op.attrs["axis"]]).astype(dt)
        elif name == "cast" and op.operands[0].type.elem.is_int:
            out = self._value(op.operands[0], env, grid, pids, args).astype(dt)
        elif name in _BINARY:
            a, b = (self._value(x, env, grid, pids, args) for x in op.operands)
            if op.name in ("floordiv", "mod") and np.any(b == 0):
                raise _Unknown                # undefined on the device: assume nothing
            out = finish(binary(op.name, a, b, v.type.elem), v.type.elem)
        else:
            raise _Unknown
        env[id(v)] = out
        return out


class _Unknown(Exception):
    """A wanted scalar the host cannot compute (a load, a loop value, a float...)."""
