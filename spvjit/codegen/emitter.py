"""Typed helpers over the SPIR-V module builder, in terms of IR dtypes.

Registers hold IR element types natively (f16 needs Float16, i8 Int8, ...)
except bf16, which is held as f32 rounded to bf16 after every op, so
results match the interpreter bit for bit in rounding behaviour.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from ..ir import types as T
from .spirv.builder import ModuleBuilder


def _round_bf16(x: float) -> float:
    """Nearest bf16 (ties to even) of a Python float, as a float; the same rule as round_bf16."""
    with np.errstate(over="ignore"):         # beyond f32's range: inf, as on the device
        f = np.array(x, np.float32)
    if np.isnan(f):
        return float(f)
    bits = int(f.view(np.uint32))
    return float(np.array((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000, np.uint32).view(np.float32))

SCOPE_DEVICE, SCOPE_WORKGROUP = 1, 2
SEM_ACQ_REL_WG = 0x8 | 0x100          # AcquireRelease | WorkgroupMemory
SEM_NONE = 0


class Emitter:
    def __init__(self, b: ModuleBuilder):
        self.b = b
        self.glsl = b.ext_inst_import("GLSL.std.450")
        self.caps_used: set[str] = set()
        self.terminated = False       # the current block ended (return/unreachable)

    # ---- types --------------------------------------------------------------------
    def type_of(self, dt: T.DType) -> int:
        b = self.b
        if dt.is_bool:
            return b.type_bool()
        if dt.is_float:
            if dt.name == "bf16":
                return b.type_float(32)
            if dt.bits == 16:
                self.capability("Float16")
            if dt.bits == 64:
                self.capability("Float64")
            return b.type_float(dt.bits)
        if dt.bits == 8:
            self.capability("Int8")
        elif dt.bits == 16:
            self.capability("Int16")
        elif dt.bits == 64:
            self.capability("Int64")
        return b.type_int(dt.bits, dt.is_signed)

    def type_of_f16(self) -> int:
        return self.type_of(T.f16)

    def capability(self, name: str):
        self.caps_used.add(name)
        self.b.capability(name)

    @property
    def i32(self):
        return self.b.type_int(32, True)

    @property
    def u32(self):
        return self.b.type_int(32, False)

    @property
    def f32(self):
        return self.b.type_float(32)

    @property
    def bool(self):
        return self.b.type_bool()

    def const(self, dt: T.DType, value) -> int:
        if dt.is_bool:
            return self.b.const(self.bool, bool(value))
        if dt.name == "bf16":
            # bf16 registers are f32 rounded to bf16, so constants must be rounded too (as the
            # interpreter does): `x * 0.3` multiplies by bf16(0.3) = 0.30078125, not by 0.3
            return self.b.const(self.f32, _round_bf16(float(value)))
        if dt.is_float:
            return self.b.const(self.type_of(dt), float(value))
        return self.b.const(self.type_of(dt), int(value))

    def ci(self, v: int) -> int:
        return self.b.const(self.i32, int(v))

    def cu(self, v: int) -> int:
        return self.b.const(self.u32, int(v))

    # ---- instructions --------------------------------------------------------------------
    def op(self, name: str, rtype: int | None, *operands) -> int:
        return self.b.emit(name, rtype, *operands)

    def exact(self, value: int) -> int:
        """`value` (a float instruction's result) decorated NoContraction, which drivers built
        on NIR read as `exact`: no value-changing rewrite.  Narrowing conversions need it: Mesa
        26.1's lavapipe folded f64(f32(x)) into x, dropping the rounding to f32."""
        self.b.decorate(value, "NoContraction")
        return value

    def ext(self, rtype: int, inst: str, *operands) -> int:
        return self.b.ext_inst(rtype, self.glsl, inst, *operands)

    def iadd(self, a, b):
        return self.op("OpIAdd", self.i32, a, b)

    def imul(self, a, b):
        return self.op("OpIMul", self.i32, a, b)

    def ilt(self, a, b):
        return self.op("OpSLessThan", self.bool, a, b)

    def land(self, a, b):
        return self.op("OpLogicalAnd", self.bool, a, b)

    def select(self, rtype, c, a, b):
        return self.op("OpSelect", rtype, c, a, b)

    def barrier(self):
        self.op("OpControlBarrier", None, self.cu(SCOPE_WORKGROUP), self.cu(SCOPE_WORKGROUP),
                self.cu(SEM_ACQ_REL_WG))

    def round_bf16(self, x: int) -> int:
        """f32 -> nearest bf16 (ties to even), still f32: ((bits + 0x7fff + lsb) & 0xffff0000)."""
        u = self.op("OpBitcast", self.u32, x)
        lsb = self.op("OpBitwiseAnd", self.u32, self.op("OpShiftRightLogical", self.u32, u, self.cu(16)), self.cu(1))
        r = self.op("OpIAdd", self.u32, self.op("OpIAdd", self.u32, u, self.cu(0x7FFF)), lsb)
        r = self.op("OpBitwiseAnd", self.u32, r, self.cu(0xFFFF0000))
        rounded = self.op("OpBitcast", self.f32, r)
        isnan = self.op("OpIsNan", self.bool, x)
        return self.select(self.f32, isnan, x, rounded)

    # ---- variables and control flow -----------------------------------------------------
    def local_var(self, type_id: int, init: int | None = None) -> int:
        var = self.b.local_variable(self.b.type_pointer("Function", type_id))
        if init is not None:
            self.op("OpStore", None, var, init)
        return var

    def load_var(self, type_id: int, var: int) -> int:
        return self.op("OpLoad", type_id, var)

    def store_var(self, var: int, value: int):
        self.op("OpStore", None, var, value)

    @contextmanager
    def if_then(self, cond: int):
        """`if (cond) { body }` as a structured selection."""
        then_l, merge_l = self.b.new_id(), self.b.new_id()
        self.op("OpSelectionMerge", None, merge_l, 0)
        self.op("OpBranchConditional", None, cond, then_l, merge_l)
        self.b.label(then_l)
        self.terminated = False
        yield
        if not self.terminated:
            self.op("OpBranch", None, merge_l)
        self.b.label(merge_l)
        self.terminated = False

    def counted_loop(self, count: int, body):
        """for (k = 0; k < count; k++) body(k) -- count is an id (i32), body emits code."""
        kvar = self.local_var(self.i32, self.ci(0))
        header, body_l, cont, merge = (self.b.new_id() for _ in range(4))
        self.op("OpBranch", None, header)
        self.b.label(header)
        k = self.load_var(self.i32, kvar)
        c = self.ilt(k, count)
        self.op("OpLoopMerge", None, merge, cont, 0)
        self.op("OpBranchConditional", None, c, body_l, merge)
        self.b.label(body_l)
        body(k)
        self.op("OpBranch", None, cont)
        self.b.label(cont)
        self.store_var(kvar, self.iadd(k, self.ci(1)))
        self.op("OpBranch", None, header)
        self.b.label(merge)
