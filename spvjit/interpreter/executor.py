"""Runs tile IR on numpy, one program at a time (SPVJIT_INTERPRET=1).

It executes the IR the frontend built, not the Python source, so interpreter
results check the frontend too; and it is the reference the lowering is
tested against.
"""
from __future__ import annotations

import itertools
import warnings

import numpy as np

from ..ir import print_format
from ..ir.core import Block, KernelIR
from ..ir.ops import ops_of
from . import atomics as A
from . import global_memory as G
from . import ops as O

_SHAPE_OPS = ops_of("shape")


class _Return(Exception):
    pass


class Pointer:
    """A tile of addresses: which buffer, and element offsets into it."""
    __slots__ = ("buf", "off")

    def __init__(self, buf: int, off):
        self.buf, self.off = buf, np.asarray(off, np.int64)


class ProgramRunner:
    def __init__(self, kernel: KernelIR, buffers: list[np.ndarray], scalars: dict[int, object], grid):
        self.kernel = kernel
        self.buffers = buffers       # flat views; bf16 buffers are uint16
        self.base_env = scalars      # id(param value) -> Pointer or numpy scalar
        self.grid = grid
        self.pid = (0, 0, 0)

    def run_all(self):
        gx, gy, gz = self.grid
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            for z, y, x in itertools.product(range(gz), range(gy), range(gx)):
                self.pid = (x, y, z)
                env = dict(self.base_env)
                try:
                    self.run_block(self.kernel.body, env)
                except _Return:
                    pass

    def run_block(self, block: Block, env: dict):
        for op in block.ops:
            name = op.name
            if name == "yield":
                return [env[id(v)] for v in op.operands]
            if name == "return":
                raise _Return()
            outs = self.run_op(op, env)
            for r, v in zip(op.results, outs):
                env[id(r)] = v
        return []

    def run_op(self, op, env):
        a = [env[id(v)] for v in op.operands]
        name = op.name
        rt = op.results[0].type if op.results else None
        dt = rt.elem if rt is not None else None
        if name in ("add", "sub") and isinstance(a[0], Pointer):
            raise AssertionError("pointer arithmetic goes through addptr")
        if name == "constant":
            return [O.finish(np.full(rt.shape, op.attrs["value"]), dt)]
        if name == "program_id":
            return [np.int32(self.pid[op.attrs["axis"]])]
        if name == "num_programs":
            return [np.int32(self.grid[op.attrs["axis"]])]
        if name == "arange":
            return [np.arange(op.attrs["start"], op.attrs["end"], dtype=np.int32)]
        if name == "cmp":
            return [np.asarray(O.compare(op.attrs["pred"], a[0], a[1]))]
        if name == "select":
            if isinstance(a[1], Pointer):
                raise NotImplementedError("select on pointers")
            return [O.finish(np.where(a[0], a[1], a[2]), dt)]
        if name == "cast":
            return [O.cast(a[0], op.operands[0].type.elem, dt)]
        if name == "bitcast":
            return [O.bitcast(a[0], op.operands[0].type.elem, dt)]
        if name == "assume":
            return [a[0]]
        if name in ("permute", "flip", "extract", "shift"):
            return [self.move_op(name, a[0], op)]
        if name in _SHAPE_OPS:
            return [self.shape_op(name, a[0], rt.shape, op)]
        if name == "addptr":
            if isinstance(a[0], G.GlobalPointer):
                return [a[0].add(a[1])]
            return [Pointer(a[0].buf, a[0].off + np.asarray(a[1], np.int64))]
        if name == "int_to_ptr":
            return [G.GlobalPointer(np.asarray(a[0]).astype(np.uint64), dt.pointee)]
        if name == "ptr_to_int":
            return [a[0].addr.astype(np.int64)]
        if name == "load" and isinstance(a[0], G.GlobalPointer):
            return [G.load(a[0], a[1] if len(a) > 1 else None, a[2] if len(a) > 2 else None, dt)]
        if name == "store" and isinstance(a[0], G.GlobalPointer):
            G.store(a[0], a[1], a[2] if len(a) > 2 else None)
            return []
        if name == "load":
            return [self.load(op, a, dt)]
        if name == "store":
            self.store(a)
            return []
        if name == "atomic_rmw":
            return [self.atomic(op.attrs["kind"], a, dt)]
        if name == "atomic_cas":
            self._elem_ok(a[0], None)
            return [A.atomic_cas(self.buffers[a[0].buf], a[0].off, a[1], a[2], dt)]
        if name == "histogram":
            return [A.histogram(a[0], op.attrs["num_bins"], a[1] if len(a) > 1 else None)]
        if name == "gather":
            return [O.finish(A.gather(a[0], a[1], op.attrs["axis"]), dt)]
        if name == "reduce":
            return [O.finish(O.reduce(op.attrs["kind"], a[0], op.attrs["axis"]), dt)]
        if name == "barrier":
            return []
        if name == "assert":
            if not np.all(a[0]):
                where = f"{op.loc.file}:{op.loc.line}: " if op.loc else ""
                raise AssertionError(f"{where}device_assert failed in program {self.pid}: {op.attrs['msg']}")
            return []
        if name == "print":
            # a global address prints as the unsigned address (Triton prints pointers as addresses)
            dtypes = [("u64" if v.type.elem.global_address else "ptr") if v.type.is_pointer else v.type.elem.name
                      for v in op.operands]
            values = [x.off if isinstance(x, Pointer) else x.addr if isinstance(x, G.GlobalPointer) else x
                      for x in a]
            print("\n".join(print_format.program_lines(self.pid, op.attrs["prefix"], values, dtypes,
                                                       bool(op.attrs.get("hex")))))
            return []
        if name == "scan":
            return [O.finish(O.scan(op.attrs["kind"], a[0], op.attrs["axis"], op.attrs.get("reverse", False), dt), dt)]
        if name == "dot":
            return [O.finish(O.dot(a[0], a[1], a[2], dt), dt)]
        if name == "for":
            return self.run_for(op, a, env)
        if name == "while":
            return self.run_while(op, a, env)
        if name == "if":
            region = op.regions[0] if bool(a[0]) else op.regions[1]
            return self.run_block(region, dict(env))
        if name == "fma":
            return [O.finish(O.fma(*a), dt)]
        if len(a) == 2:
            return [O.finish(O.binary(name, a[0], a[1], dt), dt)]
        if len(a) == 1:
            return [O.finish(O.unary(name, a[0], dt), dt)]
        raise NotImplementedError(f"interpreter has no rule for '{name}'")

    def move_op(self, name, x, op):
        if isinstance(x, G.GlobalPointer):
            return x.map(lambda addr: self.move_op(name, addr, op))
        if isinstance(x, Pointer):
            return Pointer(x.buf, self.move_op(name, x.off, op))
        if name == "permute":
            return np.ascontiguousarray(np.transpose(x, [int(p) for p in op.attrs["order"].split(",")]))
        if name == "flip":
            return np.ascontiguousarray(np.flip(x, op.attrs["axis"]))
        if name == "shift":
            ax, d = op.attrs["axis"], op.attrs["d"]
            n = x.shape[ax]
            idx = np.arange(n)
            src = np.where(idx < n - d, idx + d, idx) if op.attrs.get("reverse") else np.where(idx >= d, idx - d, idx)
            return np.ascontiguousarray(np.take(x, src, axis=ax))
        return np.ascontiguousarray(np.take(x, op.attrs["index"], axis=op.attrs["axis"]))

    def shape_op(self, name, x, shape, op):
        if isinstance(x, G.GlobalPointer):
            return x.map(lambda addr: self.shape_op(name, addr, shape, op))
        if isinstance(x, Pointer):
            return Pointer(x.buf, self.shape_op(name, x.off, shape, op))
        if name in ("splat", "broadcast"):
            return np.broadcast_to(x, shape).copy()
        if name == "expand_dims":
            return np.expand_dims(x, op.attrs["axis"])
        if name == "reshape":
            return np.reshape(x, shape)
        return np.ascontiguousarray(np.transpose(x))

    def _elem_ok(self, p: Pointer, mask):
        n = self.buffers[p.buf].size
        inside = (p.off >= 0) & (p.off < n)
        if mask is not None:
            bad = mask & ~inside
        else:
            bad = ~inside
        if np.any(bad):
            first = int(np.asarray(p.off)[bad].flat[0])
            raise IndexError(f"out-of-bounds access at element {first} of a buffer of {n} elements "
                             f"(argument {self.kernel.params[p.buf].name})")
        return inside

    def load(self, op, a, dt):
        p = a[0]
        mask = np.asarray(a[1]) if len(a) > 1 else None
        self._elem_ok(p, mask)
        buf = self.buffers[p.buf]
        idx = np.where(mask, p.off, 0) if mask is not None else p.off
        # a fully masked load may come from an empty tensor (whose device buffer is never empty)
        vals = buf[idx] if buf.size else np.zeros(np.shape(idx), buf.dtype)
        vals = O.bf16_from_bits(vals) if dt.name == "bf16" else vals.astype(O.value_dtype(dt))
        if mask is not None:
            other = a[2] if len(a) > 2 else np.zeros((), O.value_dtype(dt))
            vals = np.where(mask, vals, other)
        return O.finish(vals, dt)

    def store(self, a):
        p, val = a[0], a[1]
        mask = np.asarray(a[2]) if len(a) > 2 else np.ones(np.shape(p.off), bool)
        self._elem_ok(p, mask)
        buf = self.buffers[p.buf]
        val = np.broadcast_to(val, np.shape(p.off))
        if buf.dtype == np.uint16 and val.dtype == np.float32:
            val = O.bf16_to_bits(val)
        buf[p.off[mask]] = val[mask].astype(buf.dtype)

    def atomic(self, kind, a, dt):
        p = a[0]
        mask = np.asarray(a[2]) if len(a) > 2 else np.ones(np.shape(p.off), bool)
        self._elem_ok(p, mask)
        return A.atomic_rmw(self.buffers[p.buf], p.off, kind, a[1], mask, dt)

    def run_for(self, op, a, env):
        lb, ub, step = int(a[0]), int(a[1]), int(a[2])
        carried = list(a[3:])
        body = op.regions[0]
        for i in range(lb, ub, step):
            inner = dict(env)
            inner[id(body.args[0])] = np.int32(i)
            for arg, v in zip(body.args[1:], carried):
                inner[id(arg)] = v
            carried = self.run_block(body, inner)
        return carried

    def run_while(self, op, a, env):
        before, body = op.regions
        carried = list(a)
        while True:
            inner = dict(env)
            inner.update((id(arg), v) for arg, v in zip(before.args, carried))
            if not bool(self.run_block(before, inner)[0]):
                return carried
            inner = dict(env)
            inner.update((id(arg), v) for arg, v in zip(body.args, carried))
            carried = self.run_block(body, inner)
