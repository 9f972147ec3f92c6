"""Tile IR -> SPIR-V instructions, one op at a time, in the blocked layout.

Each tile value becomes a list of registers (SPIR-V ids) per invocation;
scalars are one uniform id.  See layout.py for where elements live and
memory.py / reduce.py for the ops that touch buffers or move data.
"""
from __future__ import annotations

import contextlib

from ..ir import types as T
from ..ir.core import Block, KernelIR, Operation
from ..ir.ops import NO_FLOAT64, OP_INFO
from .emitter import Emitter
from .layout import IndexMap, broadcast_map, identity_map, regs, trans_map, vec_width
from . import block_loops, coopmat, coopmat_epilogue, dot_trans, elementwise_runs, global_pointers, remat
from .atomics import lower_atomic
from .gather import lower_gather, lower_histogram
from .reduce import lower_dot, lower_reduce
from .target import Target
from .values import LV, LoweringError


_FBIN = {"add": "OpFAdd", "sub": "OpFSub", "mul": "OpFMul", "truediv": "OpFDiv"}
_IBIN = {"add": "OpIAdd", "sub": "OpISub", "mul": "OpIMul", "and": "OpBitwiseAnd",
         "or": "OpBitwiseOr", "xor": "OpBitwiseXor", "shl": "OpShiftLeftLogical"}
_BBIN = {"and": "OpLogicalAnd", "or": "OpLogicalOr", "xor": "OpLogicalNotEqual",
         "maximum": "OpLogicalOr", "minimum": "OpLogicalAnd"}
_FCMP = {"lt": "OpFOrdLessThan", "le": "OpFOrdLessThanEqual", "gt": "OpFOrdGreaterThan",
         "ge": "OpFOrdGreaterThanEqual", "eq": "OpFOrdEqual", "ne": "OpFUnordNotEqual"}
_SCMP = {"lt": "OpSLessThan", "le": "OpSLessThanEqual", "gt": "OpSGreaterThan",
         "ge": "OpSGreaterThanEqual", "eq": "OpIEqual", "ne": "OpINotEqual"}
_UCMP = {"lt": "OpULessThan", "le": "OpULessThanEqual", "gt": "OpUGreaterThan",
         "ge": "OpUGreaterThanEqual", "eq": "OpIEqual", "ne": "OpINotEqual"}
_FUN = {"exp": "Exp", "exp2": "Exp2", "log": "Log", "log2": "Log2", "sqrt": "Sqrt",
        "rsqrt": "InverseSqrt", "sin": "Sin", "cos": "Cos", "floor": "Floor", "ceil": "Ceil",
        "tanh": "Tanh", "tan": "Tan", "asin": "Asin", "acos": "Acos", "atan": "Atan",
        "sinh": "Sinh", "cosh": "Cosh", "asinh": "Asinh", "acosh": "Acosh", "atanh": "Atanh",
        "trunc": "Trunc", "rint": "RoundEven"}


class Lowerer:
    def __init__(self, em: Emitter, kernel: KernelIR, w: int, memory, lane: int, sg: dict | None = None):
        self.em = em
        self.kernel = kernel
        self.W = w
        self.mem = memory          # memory.Memory: buffers, push constants, scratch
        self.lane = lane           # i32 id of LocalInvocationIndex
        self.sg = sg or {}         # subgroup.available(): which subgroup ops this program may use
        self.vectorize = True      # layouts of width 4 where tiles allow (layout.vec_width)
        self.lane_x4 = em.imul(lane, em.ci(4))   # in the entry block: dominates every use
        self.axis = {}             # axis_info.analyze(): contiguity facts for vector loads
        self.caps = Target()       # what the device can do (codegen/target.py; set by the compiler)
        self.coop_plan = coopmat.Plan(kernel, None, w)   # values in matrix layout (set by compiler)
        self.dot_reads = None      # block_loops.analysis(): loads a looped dot reads itself
        self.notes = None          # id(op) -> lowering choices, when a lowered dump is wanted
        self.rte_float16 = False   # a conversion relies on the RoundingModeRTE 16 execution mode
        self.global_addresses = False   # follows gptr addresses (global_pointers.finish_module)
        self.current_op = None
        self.env: dict[int, LV] = {}
        self._valid: dict[tuple[int, int], int | None] = {}
        self.loc = None

    # ---- helpers ---------------------------------------------------------------------
    def error(self, msg: str) -> LoweringError:
        where = f"{self.loc}: " if self.loc else ""
        return LoweringError(where + msg)

    def get(self, v) -> LV:
        return self.env[id(v)]

    def nregs(self, ty: T.TileType) -> int:
        return 1 if ty.is_scalar else regs(ty.numel, self.W)

    def note(self, op, text: str, first: bool = False):
        """Record a lowering choice for SPVJIT_DUMP=lowered."""
        if self.notes is None:
            return
        cur = self.notes.get(id(op))
        self.notes[id(op)] = text if cur is None else (f"{text}; {cur}" if first else f"{cur}; {text}")

    def note_move(self, how: str):
        if self.current_op is not None:
            self.note(self.current_op, how)

    def vec(self, numel: int) -> int:
        """Vector width of a tile's layout (see layout.py); 1 for scalars."""
        return vec_width(numel, self.W, self.vectorize)

    def valid(self, numel: int, r: int) -> int | None:
        """bool id: does this lane's register r hold a real element? None means always."""
        if self.vec(numel) > 1:
            return None                      # the tile fills whole vectors of every lane
        key = (numel, r)
        if key not in self._valid:
            if (r + 1) * self.W <= numel:
                self._valid[key] = None
            else:
                self._valid[key] = self.em.ilt(self.lane, self.em.ci(numel - r * self.W))
        return self._valid[key]

    def flat(self, r: int, numel: int = 1) -> int:
        """i32 id: the flat index this lane's register r holds in a tile of `numel` elements."""
        v = self.vec(numel)
        base = self.lane if v == 1 else self.lane_x4
        const = (r // v) * v * self.W + r % v
        return base if const == 0 else self.em.iadd(base, self.em.ci(const))

    def flat_or_zero(self, r: int, numel: int) -> int:
        """flat(r, numel), but 0 in lanes whose register r holds no element: an index that is
        safe to read shared memory or a tile with."""
        f = self.flat(r, numel)
        valid = self.valid(numel, r)
        return f if valid is None else self.em.select(self.em.i32, valid, f, self.em.ci(0))

    def f32_to_f16(self, x: int) -> int:
        """float32 -> float16 rounded to nearest even. Vulkan lets OpFConvert truncate (lavapipe
        does), unless the module declares RoundingModeRTE for 16-bit results, which a device
        reporting shaderRoundingModeRTEFloat16 honours: then one instruction (the compiler adds
        the execution mode when `rte_float16` is set); else float_math's explicit rounding."""
        if self.caps.rounding_rte_float16:
            self.rte_float16 = True
            return self.em.exact(self.em.op("OpFConvert", self.em.type_of_f16(), x))
        from .float_math import f32_to_f16
        return f32_to_f16(self.em, x)

    def emit_index(self, m: IndexMap, f: int) -> int:
        em = self.em
        if hasattr(m, "emit"):                 # a map that is not affine (scan.ShiftMap)
            return m.emit(self, f)
        s = em.ci(m.offset) if m.offset else None
        # flat indices are never negative, so powers of two divide by a shift and reduce by a mask
        pow2 = lambda x: x & (x - 1) == 0      # noqa: E731
        for div, mod, mul in m.terms:
            q = f
            if div != 1:
                q = em.op("OpShiftRightArithmetic", em.i32, f, em.ci(div.bit_length() - 1)) if pow2(div) \
                    else em.op("OpSDiv", em.i32, f, em.ci(div))
            if mod:
                q = em.op("OpBitwiseAnd", em.i32, q, em.ci(mod - 1)) if pow2(mod) \
                    else em.op("OpSMod", em.i32, q, em.ci(mod))
            if mul != 1:
                q = em.imul(q, em.ci(mul))
            s = q if s is None else em.iadd(s, q)
        return s if s is not None else em.ci(0)

    # ---- blocks ------------------------------------------------------------------------
    def lower_block(self, block: Block):
        self.lower_ops(block.ops)

    def lower_ops(self, ops):
        skip = block_loops.unused(self) if self.vectorize else ()
        ops = list(ops)
        i = 0
        while i < len(ops):
            if self.em.terminated:
                return
            run = elementwise_runs.take(self, ops, i, skip)
            if run is None:
                if id(ops[i]) not in skip:
                    self.lower_op(ops[i])
                i += 1
                continue
            pre, chain, i = run
            for op in pre:
                if id(op) not in skip:
                    self.lower_op(op)
            if elementwise_runs.emit(self, chain):
                for op in chain:
                    self._note_layout(op)
            else:
                for op in chain:
                    self.lower_op(op)

    def lower_op(self, op):
        self.loc = op.loc
        self.current_op = op
        handler = getattr(self, "op_" + op.name, None)
        if handler is None:
            info = OP_INFO.get(op.name)
            if info is None or info.category != "elementwise":
                raise self.error(f"the lowering has no rule for op '{op.name}'")
            handler = self.op_elementwise
        handler(op)
        self._note_layout(op)

    def _note_layout(self, op):
        if self.notes is not None and op.results and op.name not in ("for", "while", "if"):
            t = op.results[0].type
            lay = "uniform" if t.is_scalar else f"W={self.W} v={self.vec(t.numel)} regs={self.nregs(t)}"
            self.note(op, lay, first=True)

    def bind(self, op: Operation, *lvs: LV):
        for r, lv in zip(op.results, lvs):
            self.env[id(r)] = lv

    # ---- simple values -------------------------------------------------------------------
    def op_constant(self, op):
        ty = op.result.type
        c = self.em.const(ty.elem, op.attrs["value"])
        self.bind(op, LV([c] * self.nregs(ty), ty.is_scalar))

    def op_program_id(self, op):
        self.bind(op, LV([self.mem.program_id(op.attrs["axis"])], True))

    def op_num_programs(self, op):
        self.bind(op, LV([self.mem.num_programs(op.attrs["axis"])], True))

    def op_arange(self, op):
        n = op.result.type.numel
        start = op.attrs["start"]
        out = []
        for r in range(self.nregs(op.result.type)):
            f = self.flat(r, n)
            out.append(self.em.iadd(f, self.em.ci(start)) if start else f)
        self.bind(op, LV(out, False))

    def op_splat(self, op):
        src = self.get(op.operands[0])
        self.bind(op, LV(src.regs * self.nregs(op.result.type), False, src.binding))

    def op_expand_dims(self, op):
        src = self.get(op.operands[0])
        self.bind(op, LV(list(src.regs), src.uniform, src.binding))

    def op_assume(self, op):
        self.bind(op, self.get(op.operands[0]))     # facts for axis_info only; no code

    def op_reshape(self, op):
        self.move(op, identity_map())

    def op_broadcast(self, op):
        self.move(op, broadcast_map(op.operands[0].type.shape, op.result.type.shape))

    def op_trans(self, op):
        if block_loops.trans_read_by_dot(self, op):     # looped dots read the load transposed
            return
        if dot_trans.read_by_dot(self, op):     # its dots read the source transposed
            return
        self.move(op, trans_map(op.operands[0].type.shape))

    def op_permute(self, op):
        from .layout import strides
        src, dst = op.operands[0].type.shape, op.result.type.shape
        order = [int(p) for p in op.attrs["order"].split(",")]
        ds, ss = strides(dst), strides(src)
        self.move(op, IndexMap(tuple((ds[d], dst[d], ss[order[d]]) for d in range(len(dst)) if dst[d] > 1)))

    def op_flip(self, op):
        from .layout import strides
        shape, ax = op.operands[0].type.shape, op.attrs["axis"]
        s, n = strides(shape)[ax], shape[ax]
        # f + ((n - 1) - 2 * pos) * s, pos = (f // s) % n
        self.move(op, IndexMap(((1, 0, 1), (s, n, -2 * s)), (n - 1) * s))

    def op_shift(self, op):
        from .layout import strides
        from .scan import ShiftMap
        shape, ax = op.operands[0].type.shape, op.attrs["axis"]
        self.move(op, ShiftMap((), 0, strides(shape)[ax], shape[ax], op.attrs["d"], op.attrs.get("reverse", False)))

    def op_extract(self, op):
        from .layout import reduce_base_map
        m, stride, _ = reduce_base_map(op.operands[0].type.shape, op.attrs["axis"])
        self.move(op, IndexMap(m.terms, m.offset + op.attrs["index"] * stride))

    def move(self, op, m: IndexMap):
        src_t, dst_t = op.operands[0].type, op.result.type
        src = self.get(op.operands[0])
        if src.uniform:
            self.bind(op, LV(src.regs * self.nregs(dst_t), dst_t.is_scalar, src.binding))
            return
        elem = global_pointers.register_dtype(dst_t)
        value = op.operands[0]
        recompute = None     # index tiles: each lane computes what it lacks (remat.py)
        if remat.expression(self, value):
            recompute = lambda g: remat.evaluate(self, value, g)    # noqa: E731
        out = self.mem.exchange(self, src.regs, src_t.numel, dst_t.numel, m, elem, recompute=recompute)
        self.bind(op, LV(out, False, src.binding))

    # ---- elementwise -------------------------------------------------------------------------
    def op_elementwise(self, op):
        planned = self.coop_plan.epilogue.get(id(op))
        if planned is not None:                  # stays in cooperative-matrix layout
            coopmat_epilogue.lower_elementwise(self, op, *planned)
            return
        srcs = [self.get(v) for v in op.operands]
        ty = op.result.type
        in_dt = op.operands[0].type.elem
        out = [self.scalar_op(op, in_dt, ty.elem, *regs_) for regs_ in zip(*(s.regs for s in srcs))]
        self.bind(op, LV(out, srcs[0].uniform, None))

    def scalar_op(self, op, dt: T.DType, out_dt: T.DType, *a) -> int:
        em, name = self.em, op.name
        rt = em.type_of(out_dt)
        if name == "cmp":
            pred = op.attrs["pred"]
            if dt.is_float:
                return em.op(_FCMP[pred], em.bool, *a)
            if dt.is_bool:
                if pred in ("eq", "ne"):
                    return em.op("OpLogicalEqual" if pred == "eq" else "OpLogicalNotEqual", em.bool, *a)
                a = [em.select(em.i32, x, em.ci(1), em.ci(0)) for x in a]
                return em.op(_SCMP[pred], em.bool, *a)
            return em.op((_SCMP if dt.is_signed else _UCMP)[pred], em.bool, *a)
        if name == "select":
            return em.select(rt, *a)
        if name == "cast":
            return self.convert(a[0], dt, out_dt)
        if name == "bitcast":
            return self.bitcast(a[0], dt, out_dt)
        v = self._arith(name, dt, rt, a)
        return em.round_bf16(v) if dt.name == "bf16" else v

    def _arith(self, name, dt, rt, a):
        em = self.em
        if dt.is_bool:
            if name == "not":
                return em.op("OpLogicalNot", rt, a[0])
            if name in _BBIN:
                return em.op(_BBIN[name], rt, *a)
            raise self.error(f"'{name}' on booleans")
        if dt.is_float:
            if dt.name == "f64" and name in NO_FLOAT64:
                raise self.error(f"'{name}' on float64 values (GLSL.std.450 has no 64-bit {name})")
            if name in _FBIN:
                return em.op(_FBIN[name], rt, *a)
            if name == "neg":
                return em.op("OpFNegate", rt, a[0])
            if name == "abs":
                return em.ext(rt, "FAbs", a[0])
            if name == "maximum":
                return em.ext(rt, "FMax", *a)
            if name == "minimum":
                return em.ext(rt, "FMin", *a)
            if name == "pow":
                return self._pow(rt, *a)
            if name == "mod":
                from .float_math import fmod
                return fmod(em, rt, dt, *a)
            if name == "erf":
                from .float_math import erf
                return erf(em, rt, a[0])
            if name == "round":
                from .float_math import round_half_away
                return round_half_away(em, rt, a[0])
            if name == "atan2":
                return em.ext(rt, "Atan2", *a)
            if name == "fma":
                return em.ext(rt, "Fma", *a)
            if name == "sigmoid":
                one = em.b.const(rt, 1.0)
                e = em.ext(rt, "Exp", em.op("OpFNegate", rt, a[0]))
                return em.op("OpFDiv", rt, one, em.op("OpFAdd", rt, one, e))
            if name in _FUN:
                return em.ext(rt, _FUN[name], a[0])
            raise self.error(f"'{name}' on {dt}")
        signed = dt.is_signed
        if name in _IBIN:
            return em.op(_IBIN[name], rt, *a)
        if name == "floordiv":
            return em.op("OpSDiv" if signed else "OpUDiv", rt, *a)
        if name == "mod":
            if not signed:
                return em.op("OpUMod", rt, *a)
            # Vulkan leaves OpSRem undefined for negative operands (NVIDIA returns
            # garbage); a - (a / b) * b truncates like C from the well-defined OpSDiv
            q = em.op("OpSDiv", rt, *a)
            return em.op("OpISub", rt, a[0], em.op("OpIMul", rt, q, a[1]))
        if name == "shr":
            return em.op("OpShiftRightArithmetic" if signed else "OpShiftRightLogical", rt, *a)
        if name == "neg":
            return em.op("OpSNegate", rt, a[0])
        if name == "not":
            return em.op("OpNot", rt, a[0])
        if name == "abs":
            return em.ext(rt, "SAbs", a[0]) if signed else a[0]
        if name in ("maximum", "minimum"):
            inst = ("S" if signed else "U") + ("Max" if name == "maximum" else "Min")
            return em.ext(rt, inst, *a)
        if name == "umulhi":
            pair = em.b.type_struct([rt, rt])
            wide = em.op("OpSMulExtended" if signed else "OpUMulExtended", pair, *a)
            return em.op("OpCompositeExtract", rt, wide, 1)
        raise self.error(f"'{name}' on {dt}")

    def _pow(self, rt, x, y) -> int:
        """C's pow (as numpy and the interpreter): GLSL.std.450 Pow is undefined for x < 0 and for
        x == 0 with y <= 0 (lavapipe gives NaN, so `(x - m) ** 2` was NaN for x < m).  |x|^y, then
        the sign for odd integer y, NaN for x < 0 with non-integer y, 0^y = 0 or inf, x^0 = 1.
        (Signed zeros are not tracked: pow(-0.0, -1) gives +inf.)"""
        em = self.em
        c = lambda v: em.b.const(rt, v)   # noqa: E731
        p = em.ext(rt, "Pow", em.ext(rt, "FAbs", x), y)
        y_int = em.op("OpFOrdEqual", em.bool, em.ext(rt, "Trunc", y), y)
        odd = em.land(y_int, em.op("OpFOrdNotEqual", em.bool, em.op("OpFRem", rt, y, c(2.0)), c(0.0)))
        negative = em.select(rt, y_int, em.select(rt, odd, em.op("OpFNegate", rt, p), p), c(float("nan")))
        r = em.select(rt, em.op("OpFOrdLessThan", em.bool, x, c(0.0)), negative, p)
        zero = em.select(rt, em.op("OpFOrdLessThan", em.bool, y, c(0.0)), c(float("inf")), c(0.0))
        r = em.select(rt, em.op("OpFOrdEqual", em.bool, x, c(0.0)), zero, r)
        return em.select(rt, em.op("OpFOrdEqual", em.bool, y, c(0.0)), c(1.0), r)

    def convert(self, x: int, src: T.DType, dst: T.DType) -> int:
        em = self.em
        rt = em.type_of(dst)
        if src == dst:
            return x
        if dst.is_bool:
            if src.is_float:
                return em.op("OpFUnordNotEqual", em.bool, x, em.const(src, 0.0))
            return em.op("OpINotEqual", em.bool, x, em.const(src, 0))
        if src.is_bool:
            return em.select(rt, x, em.const(dst, 1), em.const(dst, 0))
        if src.is_float and dst.is_float:
            if src.bits == 64 and dst.bits == 16:
                from .float_math import f64_to_f32_odd     # one rounding, not f64->f32->f16 two
                x, src = f64_to_f32_odd(em, x), T.f32
            if dst.name == "bf16":
                if src.name != "f32":
                    x = em.exact(em.op("OpFConvert", em.f32, x))
                return em.round_bf16(x)
            if dst.name == "f16" and src.bits > 16:
                return self.f32_to_f16(x if em.type_of(src) == em.f32 else em.exact(em.op("OpFConvert", em.f32, x)))
            if em.type_of(src) == rt:
                return x
            v = em.op("OpFConvert", rt, x)
            return em.exact(v) if dst.bits < src.bits else v
        if src.is_float:
            return em.op("OpConvertFToS" if dst.is_signed else "OpConvertFToU", rt, x)
        if dst.is_float:
            if dst.name == "f16" and src.bits > 8:
                # through f32 (exact below 2^24; anything larger overflows f16 anyway), then
                # rounded to nearest even: the driver's direct conversion may truncate
                return self.f32_to_f16(em.op("OpConvertSToF" if src.is_signed else "OpConvertUToF", em.f32, x))
            if dst.name == "bf16" and src.bits >= 32:
                from .float_math import int_to_f32_odd     # one rounding, not int->f32->bf16 two
                return em.round_bf16(int_to_f32_odd(em, x, src))
            v = em.op("OpConvertSToF" if src.is_signed else "OpConvertUToF", rt, x)
            return em.round_bf16(v) if dst.name == "bf16" else v
        if src.bits == dst.bits:
            return em.op("OpBitcast", rt, x)
        if src.is_signed:
            v = em.op("OpSConvert", em.b.type_int(dst.bits, True), x)
            return v if dst.is_signed else em.op("OpBitcast", rt, v)
        v = em.op("OpUConvert", em.b.type_int(dst.bits, False), x)
        return v if not dst.is_signed else em.op("OpBitcast", rt, v)

    def bitcast(self, x: int, src: T.DType, dst: T.DType) -> int:
        em = self.em
        if src == dst:
            return x
        if src.is_bool or dst.is_bool:
            raise self.error("bitcast of booleans is not supported")
        if src.name == "bf16" or dst.name == "bf16":
            # bf16 registers are f32 whose low 16 bits are zero: the bf16 bits are the high half
            u16 = em.type_of(T.u16)
            if src.name == "bf16":
                hi = em.op("OpShiftRightLogical", em.u32, em.op("OpBitcast", em.u32, x), em.cu(16))
                bits = em.op("OpUConvert", u16, hi)
                return bits if dst.name == "u16" else em.op("OpBitcast", em.type_of(dst), bits)
            bits = x if src.name == "u16" else em.op("OpBitcast", u16, x)
            wide = em.op("OpShiftLeftLogical", em.u32, em.op("OpUConvert", em.u32, bits), em.cu(16))
            return em.op("OpBitcast", em.f32, wide)
        return em.op("OpBitcast", em.type_of(dst), x)

    def op_addptr(self, op):
        if global_pointers.is_global(op.result.type):
            global_pointers.lower_addptr(self, op)
            return
        p, o = self.get(op.operands[0]), self.get(op.operands[1])
        out = [self.em.iadd(a, b) for a, b in zip(p.regs, o.regs)]
        self.bind(op, LV(out, p.uniform, p.binding))

    # ---- memory, reductions, dot: see memory.py and reduce.py --------------------------
    def op_int_to_ptr(self, op):
        global_pointers.lower_int_to_ptr(self, op)

    def op_ptr_to_int(self, op):
        global_pointers.lower_ptr_to_int(self, op)

    def op_load(self, op):
        if global_pointers.is_global(op.operands[0].type):
            global_pointers.lower_load(self, op)
            return
        if id(op) in self.coop_plan.direct:     # the cooperative-matrix dot reads it from memory
            self.note(op, "read by the dot with OpCooperativeMatrixLoadKHR")
            self.bind(op, LV(None, False))
            return
        if self.vectorize and block_loops.read_by_dot(self, op):
            return
        self.mem.lower_load(self, op)

    def op_store(self, op):
        if global_pointers.is_global(op.operands[0].type):
            global_pointers.lower_store(self, op)
            return
        cfg = self.coop_plan.stores.get(id(op))
        if cfg is not None:                      # a matrix-layout value
            coopmat_epilogue.lower_store(self, op, cfg)
            return
        self.mem.lower_store(self, op)

    def op_atomic_rmw(self, op):
        lower_atomic(self, op)

    def op_atomic_cas(self, op):
        lower_atomic(self, op)

    def op_histogram(self, op):
        lower_histogram(self, op)

    def op_gather(self, op):
        lower_gather(self, op)

    def op_reduce(self, op):
        lower_reduce(self, op)

    def op_barrier(self, op):
        if self.W > 1:
            self.em.barrier()

    def op_assert(self, op):
        # as Triton: checked only in debug builds (SPVJIT_DEBUG=1, numbered by compile_kernel)
        if "id" in op.attrs:
            from .debug_print import lower_assert
            lower_assert(self, op)

    def op_print(self, op):
        from .debug_print import lower_print
        lower_print(self, op)

    def op_scan(self, op):
        from .scan import lower_scan
        lower_scan(self, op)

    def op_dot(self, op):
        lower_dot(self, op)

    # ---- control flow --------------------------------------------------------------------
    def value_types(self, ty: T.TileType) -> int:
        return self.em.type_of(global_pointers.register_dtype(ty))

    def make_vars(self, values) -> list[list[int]]:
        out = []
        for v in values:
            t = self.value_types(v.type)
            out.append([self.em.local_var(t) for _ in range(self.nregs(v.type))])
        return out

    def store_vars(self, vars_, lvs):
        for vs, lv in zip(vars_, lvs):
            for var, reg in zip(vs, lv.regs):
                self.em.store_var(var, reg)

    def load_vars(self, vars_, values, templates) -> list[LV]:
        out = []
        for vs, v, tpl in zip(vars_, values, templates):
            t = self.value_types(v.type)
            out.append(LV([self.em.load_var(t, var) for var in vs], v.type.is_scalar, tpl.binding))
        return out

    def _check_pointer_bindings(self, a: list[LV], b: list[LV]):
        for x, y in zip(a, b):
            if x.binding != y.binding:
                raise self.error("a loop-carried or if-merged pointer must keep pointing into the same tensor")

    def op_for(self, op):
        """A structured loop with OpPhi for the induction variable and carried registers.

        lavapipe runs loops whose condition it can see is uniform twice as fast, so the
        condition is a plain compare when the step's sign is known (the usual case)."""
        em = self.em
        lb, ub, step = (self.get(v).regs[0] for v in op.operands[:3])
        inits = [self.get(v) for v in op.operands[3:]]
        body = op.regions[0]
        matrix = self.coop_plan.carried.get(id(op), {})     # positions carried as cooperative matrices
        init_ids, types = [], []
        for p, (v, lv) in enumerate(zip(op.results, inits)):
            if p in matrix:
                cv = coopmat.to_matrix(self, lv, v.type, matrix[p])
                init_ids.append(cv.ids)
                types.append(cv.tile_type)
            else:
                init_ids.append(lv.regs)
                types.append(self.value_types(v.type))
        header, body_l, cont, merge = (em.b.new_id() for _ in range(4))
        pre = em.b.current_label
        em.op("OpBranch", None, header)
        em.b.label(header)
        iv, iv_next = em.b.new_id(), em.b.new_id()
        em.b.emit_with_id("OpPhi", em.i32, iv, lb, pre, iv_next, cont)
        phis, nexts = [], []
        for t, ids_in in zip(types, init_ids):
            ids = [em.b.new_id() for _ in ids_in]
            nxt = [em.b.new_id() for _ in ids_in]
            for pid_, init, n in zip(ids, ids_in, nxt):
                em.b.emit_with_id("OpPhi", t, pid_, init, pre, n, cont)
            phis.append(ids)
            nexts.append(nxt)
        step_op = op.operands[2].owner
        if getattr(step_op, "name", None) == "constant":
            cond = em.ilt(iv, ub) if step_op.attrs["value"] > 0 else em.op("OpSGreaterThan", em.bool, iv, ub)
        else:
            up = em.op("OpSGreaterThan", em.bool, step, em.ci(0))
            cond = em.select(em.bool, up, em.ilt(iv, ub), em.op("OpSGreaterThan", em.bool, iv, ub))
        em.op("OpLoopMerge", None, merge, cont, 0)
        em.op("OpBranchConditional", None, cond, body_l, merge)
        em.b.label(body_l)
        self.env[id(body.args[0])] = LV([iv], True)

        def carried_values(block_label_values, values):
            out = []
            for p, (ids, v, lv) in enumerate(zip(block_label_values, values, inits)):
                if p in matrix:
                    cv = coopmat.CoopValue(matrix[p], types[p], ids)
                    regs = (coopmat.to_blocked(self, cv, v.type)
                            if self.coop_plan.needs_blocked(v) else None)
                    out.append(LV(regs, False, coop=cv))
                else:
                    out.append(LV(ids, v.type.is_scalar, lv.binding))
            return out

        for arg, lv in zip(body.args[1:], carried_values(phis, body.args[1:])):
            self.env[id(arg)] = lv
        self._valid_scope_push()
        self.lower_block(body)
        yielded = phis                      # an unreachable back edge feeds the phis themselves
        if not em.terminated:
            lvs = [self.get(v) for v in body.terminator.operands]
            self._check_pointer_bindings(lvs, inits)
            yielded = [lv.coop.ids if p in matrix else lv.regs for p, lv in enumerate(lvs)]
            em.op("OpBranch", None, cont)
        self._valid_scope_pop()
        em.b.label(cont)
        em.terminated = False
        # OpCopyObject gives each back-edge value the id the phis were promised
        for t, nxt, back in zip(types, nexts, yielded):
            for n, reg in zip(nxt, back):
                em.b.emit_with_id("OpCopyObject", t, n, reg)
        em.b.emit_with_id("OpIAdd", em.i32, iv_next, iv, step)
        em.op("OpBranch", None, header)
        em.b.label(merge)
        self.bind(op, *carried_values(phis, op.results))

    def op_while(self, op):
        """`while`: a structured loop whose header carries the values as OpPhi and branches to
        a block that evaluates the condition region; that block leaves the loop (a break to
        the merge block) or enters the body.  The results are the header's phis: the
        condition region passes the carried values through unchanged."""
        em = self.em
        inits = [self.get(v) for v in op.operands]
        before, body = op.regions
        types = [self.value_types(v.type) for v in op.results]
        header, cond_l, body_l, cont, merge = (em.b.new_id() for _ in range(5))
        pre = em.b.current_label
        em.op("OpBranch", None, header)
        em.b.label(header)
        phis, nexts = [], []
        for t, lv in zip(types, inits):
            ids = [em.b.new_id() for _ in lv.regs]
            nxt = [em.b.new_id() for _ in lv.regs]
            for phi, init, n in zip(ids, lv.regs, nxt):
                em.b.emit_with_id("OpPhi", t, phi, init, pre, n, cont)
            phis.append(ids)
            nexts.append(nxt)
        em.op("OpLoopMerge", None, merge, cont, 0)
        em.op("OpBranch", None, cond_l)
        em.b.label(cond_l)

        def carried(args):
            return [LV(ids, v.type.is_scalar, lv.binding) for ids, v, lv in zip(phis, args, inits)]

        for arg, lv in zip(before.args, carried(before.args)):
            self.env[id(arg)] = lv
        self._valid_scope_push()         # the condition block dominates the body, not the merge
        self.lower_ops(before.ops[:-1])
        cond = self.get(before.terminator.operands[0]).regs[0]
        em.op("OpBranchConditional", None, cond, body_l, merge)
        em.b.label(body_l)
        for arg, lv in zip(body.args, carried(body.args)):
            self.env[id(arg)] = lv
        self._valid_scope_push()
        self.lower_block(body)
        yielded = phis                      # an unreachable back edge feeds the phis themselves
        if not em.terminated:
            lvs = [self.get(v) for v in body.terminator.operands]
            self._check_pointer_bindings(lvs, inits)
            yielded = [lv.regs for lv in lvs]
            em.op("OpBranch", None, cont)
        self._valid_scope_pop()
        self._valid_scope_pop()
        em.b.label(cont)
        em.terminated = False
        for t, nxt, back in zip(types, nexts, yielded):
            for n, reg in zip(nxt, back):
                em.b.emit_with_id("OpCopyObject", t, n, reg)
        em.op("OpBranch", None, header)
        em.b.label(merge)
        self.bind(op, *carried(op.results))

    def op_if(self, op):
        em = self.em
        cond = self.get(op.operands[0]).regs[0]
        res_vars = self.make_vars(op.results)
        then_l, else_l, merge = (em.b.new_id() for _ in range(3))
        em.op("OpSelectionMerge", None, merge, 0)
        em.op("OpBranchConditional", None, cond, then_l, else_l)
        live, templates = 0, None
        for label, region in zip((then_l, else_l), op.regions):
            em.b.label(label)
            em.terminated = False
            self._valid_scope_push()
            self.lower_block(region)
            if not em.terminated:
                yielded = [self.get(v) for v in region.terminator.operands]
                if templates is not None:
                    self._check_pointer_bindings(yielded, templates)
                templates = yielded
                self.store_vars(res_vars, yielded)
                em.op("OpBranch", None, merge)
                live += 1
            self._valid_scope_pop()
        em.b.label(merge)
        em.terminated = False
        if live == 0:
            em.op("OpUnreachable", None)
            em.terminated = True
            return
        self.bind(op, *self.load_vars(res_vars, op.results, templates))

    def op_return(self, op):
        self.em.op("OpReturn", None)
        self.em.terminated = True

    def op_yield(self, op):
        pass   # handled by the owning for/if

    # ids computed inside a branch do not dominate code after it: cache validity per region
    # (the same holds for Memory's cached program_id / num_programs / push-constant loads: one first
    # emitted inside a branch must not be reused after it or in the other branch)
    @contextlib.contextmanager
    def scope(self):
        """Code emitted inside (a loop or branch body) caches nothing for the code after it."""
        self._valid_scope_push()
        try:
            yield
        finally:
            self._valid_scope_pop()

    def _valid_scope_push(self):
        self._saved_valid = getattr(self, "_saved_valid", []) + [(self._valid, self.mem._cache)]
        self._valid = dict(self._valid)
        self.mem._cache = dict(self.mem._cache)

    def _valid_scope_pop(self):
        self._valid, self.mem._cache = self._saved_valid.pop()
