"""Buffers, push constants and the shared-memory scratch of one kernel.

Tensor arguments are storage buffers (set 0, binding = pointer parameter
order); runtime scalars and the grid live in one push-constant block:
    u32 pid_offset[3], u32 grid[3], u32 programs_per_workgroup,
    then one member per scalar arg (4 bytes, or 8 on an 8-byte boundary for 64-bit types).
The pid offset lets the launcher split grids larger than the device's
maxComputeWorkGroupCount into several dispatches; programs_per_workgroup is
the trip count of the program loop of kernels compiled with one (see
compiler.py: on CPU drivers each workgroup runs several programs in turn).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..ir import types as T
from ..runtime.memory import ELEMENT_TEXEL_FORMATS
from .emitter import Emitter
from . import scratch_quads, subgroup
from .layout import IndexMap, flat_np, lane_np, reg_np
from .values import LV

PUSH_HEADER_WORDS = 7
PROGRAMS_WORD = 6


@dataclass
class Binding:
    index: int
    name: str
    dtype: T.DType           # the IR pointee type
    storage: T.DType         # what the buffer holds per element as declared in SPIR-V
    var: int = 0
    ptr_type: int = 0
    atomic: bool = False
    texel: bool = False      # read-only, bound as a uniform texel buffer (faster on lavapipe)
    vec: int = 1             # >1: a second view of the same tensor, read `vec` elements at a time
    read_only: bool = False
    write_only: bool = False     # never loaded: stores may go through a vec4 view without aliasing

    @property
    def kind(self) -> str:
        return "uniform_texel" if self.texel else "storage"

    @property
    def texel_format(self) -> str | None:
        if not self.texel:
            return None
        return ELEMENT_TEXEL_FORMATS[self.dtype.name][self.vec == 4]


@dataclass
class PushMember:
    name: str
    dtype: T.DType
    offset: int


@dataclass
class Memory:
    em: Emitter
    bindings: list[Binding]
    push: list[PushMember]
    scratch_words: int = 0
    # vec4 stores as 64-bit words: lavapipe stores each component of a vector in its own
    # per-lane loop step, so two u64 (or one, for f16) write 4 elements in fewer steps
    wide_stores: bool = False
    program_slot: int | None = None     # inside the program loop: its counter (i32)
    _cache: dict = field(default_factory=dict)

    # ---- declarations (called once, before the function body) -----------------------------
    def declare(self, float_atomic_bindings: set[int]):
        em, b = self.em, self.em.b
        for bd in self.bindings:
            if bd.index in float_atomic_bindings:
                bd.storage, bd.atomic = (T.u64 if bd.dtype.bits == 64 else T.u32), True
            if bd.texel:
                self._declare_texel(bd)
                continue
            st = self._storage_type(bd.storage)
            var = self.storage_buffer(st, max(1, bd.storage.bits // 8), f"{bd.name}_buffer", bd.index)
            b.name(var, bd.name)
            bd.var, bd.ptr_type = var, b.type_pointer("StorageBuffer", st)
        members = [em.u32] * PUSH_HEADER_WORDS + [em.type_of(m.dtype) for m in self.push]
        self.push_struct = b.type_struct(members, name="launch_args")
        b.decorate(self.push_struct, "Block")
        offsets = [4 * i for i in range(PUSH_HEADER_WORDS)] + [m.offset for m in self.push]
        for i, off in enumerate(offsets):
            b.member_decorate(self.push_struct, i, "Offset", off)
        self.push_var = b.variable(b.type_pointer("PushConstant", self.push_struct), "PushConstant")
        self.builtin_wg = self._builtin("WorkgroupId", b.type_vector(em.u32, 3))
        self.builtin_lane = self._builtin("LocalInvocationIndex", em.u32)

    def _texel_sampled(self, dt: T.DType) -> T.DType:
        """The type OpImageFetch returns for a texel view of dt (32-bit float/int/uint)."""
        if dt.is_float and dt.name != "bf16":
            return T.f32
        return T.i32 if dt.is_signed else T.u32

    def _declare_texel(self, bd: Binding):
        b, em = self.em.b, self.em
        em.capability("SampledBuffer")
        st = em.type_of(self._texel_sampled(bd.dtype))
        img = b.type_image(st, "Buffer", 0, 0, 0, 1, "Unknown")
        var = b.variable(b.type_pointer("UniformConstant", img), "UniformConstant")
        b.decorate(var, "DescriptorSet", 0)
        b.decorate(var, "Binding", bd.index)
        b.name(var, bd.name)
        bd.var, bd.ptr_type = var, img

    def _texel_load(self, bd: Binding, idx: int) -> int:
        em = self.em
        st = em.type_of(self._texel_sampled(bd.dtype))
        # the handle was loaded in the entry block by hoist_texel_handles, so it dominates here
        v4 = em.op("OpImageFetch", em.b.type_vector(st, 4), self._cache[("texel", bd.index)], idx)
        return self._from_texel(em.op("OpCompositeExtract", st, v4, 0), bd.dtype)

    def _from_texel(self, v: int, dt: T.DType) -> int:
        """A fetched 32-bit texel component -> the register value of element type dt."""
        em = self.em
        if dt.is_bool:
            return em.op("OpINotEqual", em.bool, v, em.cu(0))
        if dt.name == "bf16":
            return em.op("OpBitcast", em.f32, em.op("OpShiftLeftLogical", em.u32, v, em.cu(16)))
        if dt.is_float:
            return v if dt.bits == 32 else em.op("OpFConvert", em.type_of(dt), v)
        if dt.bits < 32:
            return em.op("OpSConvert" if dt.is_signed else "OpUConvert", em.type_of(dt), v)
        return v

    def hoist_texel_handles(self):
        """Image handles are loaded once in the entry block, so they dominate every use."""
        for bd in self.bindings:
            if bd.texel:
                self._cache[("texel", bd.index)] = self.em.op("OpLoad", bd.ptr_type, bd.var)

    def _builtin(self, name: str, type_id: int) -> int:
        b = self.em.b
        var = b.variable(b.type_pointer("Input", type_id), "Input")
        b.decorate(var, "BuiltIn", name)
        return var

    def _storage_type(self, dt: T.DType) -> int:
        em, b = self.em, self.em.b
        if dt.bits == 16:
            em.capability("StorageBuffer16BitAccess")
        if dt.bits in (1, 8):
            em.capability("StorageBuffer8BitAccess")
            em.b.extension("SPV_KHR_8bit_storage")
        if dt.is_bool:
            return b.type_int(8, False)
        if dt.name == "bf16":
            return b.type_int(16, False)
        if dt.is_float:
            return b.type_float(dt.bits)
        return b.type_int(dt.bits, dt.is_signed)

    def declare_scratch(self, words: int):
        if words <= 0:
            return
        b = self.em.b
        self.scratch_words = words
        # An array of uvec4, not of u32: a lane's 4 consecutive words move as ONE OpLoad/OpStore
        # (lavapipe turns every per-lane shared access into a loop over the lanes, whatever its
        # width), and without VK_KHR_workgroup_memory_explicit_layout SPIR-V cannot alias a u32
        # view on it.  A single word is the component pointer (element idx >> 2, component
        # idx & 3): both lavapipes (Mesa 22.3 and 26.1) lower it to a plain scalar access, not
        # a read-modify-write of the vec4 (tests/test_shared_vec4.py races lanes on it), and
        # workgroup atomics on it work (histogram).
        self.uvec4 = b.type_vector(self.em.u32, 4)
        arr = b.type_array(self.uvec4, -(-words // 4))
        self.scratch = b.variable(b.type_pointer("Workgroup", arr), "Workgroup")
        b.name(self.scratch, "scratch")
        self.scratch_ptr = b.type_pointer("Workgroup", self.em.u32)
        self.scratch_ptr4 = b.type_pointer("Workgroup", self.uvec4)

    # ---- entry-block values ----------------------------------------------------------------------
    def load_entry_values(self):
        em = self.em
        lane_u = em.op("OpLoad", em.u32, self.builtin_lane)
        self.lane = em.op("OpBitcast", em.i32, lane_u)
        self.wg = em.op("OpLoad", em.b.type_vector(em.u32, 3), self.builtin_wg)
        return self.lane

    def _push_member(self, index: int, type_id: int) -> int:
        key = ("push", index)
        if key not in self._cache:
            em = self.em
            p = em.op("OpAccessChain", em.b.type_pointer("PushConstant", type_id), self.push_var, em.ci(index))
            self._cache[key] = em.op("OpLoad", type_id, p)
        return self._cache[key]

    def program_id(self, axis: int) -> int:
        key = ("pid", axis)
        if key not in self._cache:
            em = self.em
            wg = em.op("OpCompositeExtract", em.u32, self.wg, axis)
            if axis == 0 and self.program_slot is not None:
                # program wg * P + slot of the P this workgroup runs in turn
                wg = em.op("OpIAdd", em.u32, em.op("OpIMul", em.u32, wg, self.programs_per_workgroup()),
                           em.op("OpBitcast", em.u32, self.program_slot))
            pid = em.op("OpIAdd", em.u32, wg, self._push_member(axis, em.u32))
            self._cache[key] = em.op("OpBitcast", em.i32, pid)
        return self._cache[key]

    def programs_per_workgroup(self) -> int:
        return self._push_member(PROGRAMS_WORD, self.em.u32)

    def num_programs(self, axis: int) -> int:
        key = ("nprog", axis)
        if key not in self._cache:
            em = self.em
            self._cache[key] = em.op("OpBitcast", em.i32, self._push_member(3 + axis, em.u32))
        return self._cache[key]

    def scalar_arg(self, i: int) -> int:
        m = self.push[i]
        return self._push_member(PUSH_HEADER_WORDS + i, self.em.type_of(m.dtype))

    # ---- buffer element access -------------------------------------------------------------------
    def _elem_ptr(self, bd: Binding, idx: int) -> int:
        return self.em.op("OpAccessChain", bd.ptr_type, bd.var, self.em.ci(0), idx)

    def load_elem(self, bd: Binding, idx: int) -> int:
        em = self.em
        if bd.texel:
            return self._texel_load(bd, idx)
        raw = em.op("OpLoad", self._storage_type(bd.storage), self._elem_ptr(bd, idx))
        if bd.atomic:
            return em.op("OpBitcast", em.type_of(bd.dtype), raw)
        return from_storage(em, raw, bd.dtype)

    def store_elem(self, bd: Binding, idx: int, value: int):
        em = self.em
        dt = bd.dtype
        st = self._storage_type(bd.storage)
        value = em.op("OpBitcast", st, value) if bd.atomic else to_storage(em, value, dt, st)
        em.op("OpStore", None, self._elem_ptr(bd, idx), value)

    # ---- load / store / atomics ------------------------------------------------------------------
    def _guards(self, lw, op, ptr_t, mask_lv, r) -> int | None:
        """Combined predicate for register r: lane holds an element, and the user mask."""
        em = self.em
        preds = []
        if not ptr_t.is_scalar:
            v = lw.valid(ptr_t.numel, r)
            if v is not None:
                preds.append(v)
        if mask_lv is not None:
            preds.append(mask_lv.regs[r])
        if not preds:
            return None
        out = preds[0]
        for p in preds[1:]:
            out = em.land(out, p)
        return out

    def _vectorizable(self, lw, op, bd: Binding, mask_index: int = 1) -> bool:
        """4 aligned consecutive addresses per 4 registers, under one mask value.  Loads need a
        read-only tensor and stores a write-only one, so the vec4 view never aliases a
        scalar view that the same kernel also uses."""
        ptr_t = op.operands[0].type
        ok_access = bd.read_only if op.name == "load" else bd.write_only and not bd.atomic
        if ptr_t.is_scalar or not ok_access or lw.vec(ptr_t.numel) != 4 or ptr_t.shape[-1] % 4:
            return False
        if not (op.name == "load" and bd.texel) and not (bd.storage.bits == 32 or bd.storage.name == "f16"):
            # 8/16-bit integer vectors in storage buffers would need 8/16-bit arithmetic types
            return False
        return runs_of_four(lw, op, mask_index, aligned=True)

    def storage_buffer(self, elem: int, stride: int, struct_name: str, binding: int,
                       member_access: str | None = None) -> int:
        """A storage-buffer variable at (set 0, `binding`): a Block struct holding a runtime
        array of `elem` with this stride; `member_access` (NonReadable/NonWritable) decorates
        the array where the kernel only writes or only reads it."""
        b = self.em.b
        struct = b.type_struct([b.type_runtime_array(elem, stride=stride)], name=struct_name)
        b.decorate(struct, "Block")
        b.member_decorate(struct, 0, "Offset", 0)
        if member_access is not None:
            b.member_decorate(struct, 0, member_access)
        var = b.variable(b.type_pointer("StorageBuffer", struct), "StorageBuffer")
        b.decorate(var, "DescriptorSet", 0)
        b.decorate(var, "Binding", binding)
        return var

    def vec_view(self, bd: Binding, writable: bool = False) -> Binding:
        """A second binding of the same tensor accessed 4 elements at a time (made on first use)."""
        key = ("vecview", bd.index)
        if key not in self._cache:
            view = Binding(len(self.bindings), bd.name, bd.dtype, bd.storage, texel=bd.texel and not writable,
                           vec=4, read_only=not writable, write_only=writable)
            self.bindings.append(view)
            b, em = self.em.b, self.em
            if view.texel:
                em.capability("SampledBuffer")
                st = em.type_of(self._texel_sampled(bd.dtype))
                img = b.type_image(st, "Buffer", 0, 0, 0, 1, "Unknown")
                var = b.variable(b.type_pointer("UniformConstant", img), "UniformConstant")
                b.decorate(var, "DescriptorSet", 0)
                b.decorate(var, "Binding", view.index)
                view.ptr_type = img
            else:
                vt = self._wide_store_type(bd) if writable and self.wide_stores else \
                    b.type_vector(self._storage_type(bd.storage), 4)
                var = self.storage_buffer(vt, 4 * max(1, bd.storage.bits // 8), f"{bd.name}_vec4",
                                          view.index, "NonReadable" if writable else "NonWritable")
                view.ptr_type = b.type_pointer("StorageBuffer", vt)
            b.name(var, f"{bd.name}_vec4")
            view.var = var
            self._cache[key] = view
        return self._cache[key]

    def _wide_store_type(self, bd: Binding) -> int:
        """What 4 elements are stored as with wide_stores: u64 (16-bit) or u64 x 2 (32-bit)."""
        em = self.em
        em.capability("Int64")
        u64 = em.b.type_int(64, False)
        return u64 if bd.storage.bits == 16 else em.b.type_vector(u64, 2)

    def store_vec4(self, bd: Binding, idx4: int, values: list[int]):
        """Four consecutive elements from 4*idx4 on, through a vec4 storage view (32-bit and f16
        elements only, which registers hold in their storage type: see _vectorizable)."""
        em = self.em
        view = self.vec_view(bd, writable=True)
        st = self._storage_type(bd.storage)
        if self.wide_stores and bd.storage.bits == 32:
            u64, v2 = em.b.type_int(64, False), em.b.type_vector(st, 2)
            halves = [em.op("OpBitcast", u64, em.op("OpCompositeConstruct", v2, *values[i:i + 2]))
                      for i in (0, 2)]
            vec = em.op("OpCompositeConstruct", self._wide_store_type(bd), *halves)
        else:
            vec = em.op("OpCompositeConstruct", em.b.type_vector(st, 4), *values)
            if self.wide_stores:            # four f16 are one u64
                vec = em.op("OpBitcast", self._wide_store_type(bd), vec)
        em.op("OpStore", None, em.op("OpAccessChain", view.ptr_type, view.var, em.ci(0), idx4), vec)

    def load_vec4(self, bd: Binding, idx4: int) -> list[int]:
        """Four consecutive elements starting at element 4*idx4, converted to register types.
        (Storage views exist only for 32-bit and f16 elements: see _vectorizable.)"""
        em = self.em
        view = self.vec_view(bd)
        if view.texel:
            st = em.type_of(self._texel_sampled(bd.dtype))
            image = em.op("OpLoad", view.ptr_type, view.var)   # at the use: dominance is trivial
            v4 = em.op("OpImageFetch", em.b.type_vector(st, 4), image, idx4)
            return [self._from_texel(em.op("OpCompositeExtract", st, v4, i), bd.dtype) for i in range(4)]
        st = self._storage_type(bd.storage)
        v4 = em.op("OpLoad", em.b.type_vector(st, 4),
                   em.op("OpAccessChain", view.ptr_type, view.var, em.ci(0), idx4))
        words = [em.op("OpCompositeExtract", st, v4, i) for i in range(4)]
        if bd.atomic:       # f32 declared as u32 words for compare-exchange float atomics
            return [em.op("OpBitcast", em.type_of(bd.dtype), x) for x in words]
        return words

    def lower_load(self, lw, op):
        em = self.em
        ptr_t = op.operands[0].type
        ptr = lw.get(op.operands[0])
        mask = lw.get(op.operands[1]) if len(op.operands) > 1 else None
        other = lw.get(op.operands[2]) if len(op.operands) > 2 else None
        bd = self.bindings[ptr.binding]
        dt = op.result.type.elem
        rt = em.type_of(dt)
        out = []
        lw.note(op, ("vec4 " if self._vectorizable(lw, op, bd) else "scalar ") +
                ("texel fetch" if bd.texel else "storage load"))
        if self._vectorizable(lw, op, bd):
            # registers 4j..4j+3 hold 4 consecutive, 4-aligned elements with one mask value
            for r in range(0, len(ptr.regs), 4):
                pred = self._guards(lw, op, ptr_t, mask, r)
                q = em.op("OpShiftRightArithmetic", em.i32, ptr.regs[r], em.ci(2))
                if pred is not None:
                    q = em.select(em.i32, pred, q, em.ci(0))
                vals = self.load_vec4(bd, q)
                for i, v in enumerate(vals):
                    if pred is not None:
                        fill = other.regs[r + i] if other is not None else em.const(dt, 0)
                        v = em.select(rt, pred, v, fill)
                    out.append(v)
            lw.bind(op, LV(out, False))
            return
        for r, off in enumerate(ptr.regs):
            pred = self._guards(lw, op, ptr_t, mask, r)
            idx = off if pred is None else em.select(em.i32, pred, off, em.ci(0))
            v = self.load_elem(bd, idx)
            if pred is not None:
                fill = other.regs[r] if other is not None else em.const(dt, 0)
                v = em.select(rt, pred, v, fill)
            out.append(v)
        lw.bind(op, LV(out, ptr_t.is_scalar))

    def _uniform_guard(self, lw, ptr_t, pred):
        """Scalar stores and atomics (codegen/atomics.py) run in lane 0 only, so they happen
        once per program."""
        if not ptr_t.is_scalar:
            return pred
        em = self.em
        first = em.op("OpIEqual", em.bool, lw.lane, em.ci(0))
        return first if pred is None else em.land(first, pred)

    def lower_store(self, lw, op):
        em = self.em
        ptr_t = op.operands[0].type
        ptr, val = lw.get(op.operands[0]), lw.get(op.operands[1])
        mask = lw.get(op.operands[2]) if len(op.operands) > 2 else None
        bd = self.bindings[ptr.binding]
        if self._vectorizable(lw, op, bd, mask_index=2):
            lw.note(op, "vec4 storage store as 64-bit words" if self.wide_stores else "vec4 storage store")
            for r in range(0, len(ptr.regs), 4):
                pred = self._guards(lw, op, ptr_t, mask, r)
                q = em.op("OpShiftRightArithmetic", em.i32, ptr.regs[r], em.ci(2))
                if pred is None:
                    self.store_vec4(bd, q, val.regs[r:r + 4])
                else:
                    with em.if_then(pred):
                        self.store_vec4(bd, q, val.regs[r:r + 4])
            return
        lw.note(op, "scalar storage store")
        for r, (off, v) in enumerate(zip(ptr.regs, val.regs)):
            pred = self._uniform_guard(lw, ptr_t, self._guards(lw, op, ptr_t, mask, r))
            if pred is None:
                self.store_elem(bd, off, v)
            else:
                with em.if_then(pred):
                    self.store_elem(bd, off, v)

    # ---- moving elements between lanes ------------------------------------------------------
    def to_word(self, v: int, dt: T.DType) -> int:
        em = self.em
        if dt.is_bool:
            return em.select(em.u32, v, em.cu(1), em.cu(0))
        if dt.bits > 32:
            raise ValueError("a 64-bit value is two scratch words: use store_value")
        if dt.is_float:
            f = v if dt.bits == 32 or dt.name == "bf16" else em.op("OpFConvert", em.f32, v)
            return em.op("OpBitcast", em.u32, f)
        if dt.bits < 32:
            wide = em.op("OpSConvert" if dt.is_signed else "OpUConvert", em.b.type_int(32, dt.is_signed), v)
            return wide if not dt.is_signed else em.op("OpBitcast", em.u32, wide)
        return v if not dt.is_signed else em.op("OpBitcast", em.u32, v)

    def from_word(self, w: int, dt: T.DType) -> int:
        em = self.em
        if dt.is_bool:
            return em.op("OpINotEqual", em.bool, w, em.cu(0))
        if dt.is_float:
            f = em.op("OpBitcast", em.f32, w)
            return f if dt.bits == 32 or dt.name == "bf16" else em.op("OpFConvert", em.type_of(dt), f)
        if dt.bits < 32:
            return em.op("OpSConvert" if dt.is_signed else "OpUConvert", em.type_of(dt),
                         em.op("OpBitcast", em.b.type_int(32, dt.is_signed), w))
        return w if not dt.is_signed else em.op("OpBitcast", em.i32, w)

    def split64(self, v: int) -> tuple[int, int]:
        """A 64-bit register as its (low, high) u32 words."""
        em = self.em
        pair = em.op("OpBitcast", em.b.type_vector(em.u32, 2), v)
        return em.op("OpCompositeExtract", em.u32, pair, 0), em.op("OpCompositeExtract", em.u32, pair, 1)

    def join64(self, lo: int, hi: int, dt: T.DType) -> int:
        em = self.em
        return em.op("OpBitcast", em.type_of(dt), em.op("OpCompositeConstruct", em.b.type_vector(em.u32, 2), lo, hi))

    def store_value(self, idx: int, v: int, dt: T.DType, hi_offset: int):
        """v into scratch word idx; a 64-bit value's high word goes `hi_offset` words further
        (the scratch holds 32-bit words; compiler._scratch_words sizes it for both halves)."""
        if dt.bits != 64 or not hi_offset:
            self.scratch_store(idx, self.to_word(v, dt))     # to_word refuses 64 bits
            return
        lo, hi = self.split64(v)
        self.scratch_store(idx, lo)
        self.scratch_store(self.em.iadd(idx, self.em.ci(hi_offset)), hi)

    def load_value(self, idx: int, dt: T.DType, hi_offset: int) -> int:
        if dt.bits != 64:
            return self.from_word(self.scratch_load(idx), dt)
        return self.join64(self.scratch_load(idx), self.scratch_load(self.em.iadd(idx, self.em.ci(hi_offset))), dt)

    def scratch_word_ptr(self, idx: int) -> int:
        """Pointer to scratch word idx (an i32 id): component idx & 3 of uvec4 idx >> 2."""
        em = self.em
        return em.op("OpAccessChain", self.scratch_ptr, self.scratch,
                     em.op("OpShiftRightArithmetic", em.i32, idx, em.ci(2)),
                     em.op("OpBitwiseAnd", em.i32, idx, em.ci(3)))

    def scratch_store(self, idx: int, word: int):
        self.em.op("OpStore", None, self.scratch_word_ptr(idx), word)

    def scratch_load(self, idx: int) -> int:
        return self.em.op("OpLoad", self.em.u32, self.scratch_word_ptr(idx))

    def scratch_store4(self, quad: int, words: list[int]):
        """Words 4*quad .. 4*quad+3 (quad an i32 id) as one store."""
        em = self.em
        em.op("OpStore", None, em.op("OpAccessChain", self.scratch_ptr4, self.scratch, quad),
              em.op("OpCompositeConstruct", self.uvec4, *words))

    def scratch_load4(self, quad: int) -> list[int]:
        em = self.em
        v = em.op("OpLoad", self.uvec4, em.op("OpAccessChain", self.scratch_ptr4, self.scratch, quad))
        return [em.op("OpCompositeExtract", em.u32, v, c) for c in range(4)]

    def store_values4(self, quad: int, values: list[int], dt: T.DType, hi_offset: int):
        """store_value for 4 values at words 4*quad.. (hi_offset a multiple of 4)."""
        if dt.bits != 64 or not hi_offset:
            self.scratch_store4(quad, [self.to_word(v, dt) for v in values])
            return
        assert hi_offset % 4 == 0, hi_offset
        halves = [self.split64(v) for v in values]
        self.scratch_store4(quad, [lo for lo, _ in halves])
        self.scratch_store4(self.em.iadd(quad, self.em.ci(hi_offset // 4)), [hi for _, hi in halves])

    def load_values4(self, quad: int, dt: T.DType, hi_offset: int) -> list[int]:
        if dt.bits != 64:
            return [self.from_word(w, dt) for w in self.scratch_load4(quad)]
        assert hi_offset % 4 == 0, hi_offset
        los = self.scratch_load4(quad)
        his = self.scratch_load4(self.em.iadd(quad, self.em.ci(hi_offset // 4)))
        return [self.join64(lo, hi, dt) for lo, hi in zip(los, his)]

    def store_tile(self, lw, regs: list[int], numel: int, dt: T.DType, hi_offset: int, base: int = 0):
        """A tile's registers into the scratch at word base + flat index (base a multiple of 4).
        In the v=4 layout registers 4j..4j+3 hold flat f..f+3 with f a multiple of 4 (quad
        lane + j*W): one uvec4 store each, a quarter of the instructions."""
        em = self.em
        if lw.vec(numel) == 4 and base % 4 == 0 and len(regs) % 4 == 0 and \
                (dt.bits != 64 or hi_offset % 4 == 0):
            for j in range(len(regs) // 4):
                const = j * lw.W + base // 4
                quad = lw.lane if const == 0 else em.iadd(lw.lane, em.ci(const))
                self.store_values4(quad, regs[4 * j:4 * j + 4], dt, hi_offset)
            return
        for q, reg in enumerate(regs):
            f = lw.flat(q, numel)
            self.store_value(f if base == 0 else em.iadd(f, em.ci(base)), reg, dt, hi_offset)

    def exchange(self, lw, src_regs, src_numel, dst_numel, m: IndexMap, dt: T.DType,
                 to_uniform: bool = False, recompute=None) -> list[int]:
        """Registers of the destination tile, where dest flat f takes source flat m(f).
        `recompute(g)`, when given, computes source element g (an i32 id) in place: used
        instead of shared memory for index tiles (remat.py)."""
        W = lw.W
        v_src, v_dst = lw.vec(src_numel), lw.vec(dst_numel)
        n_dst = 1 if to_uniform else max(1, -(-dst_numel // W))
        lanes = np.arange(W)
        plan = []                       # per dest reg: ("reg", q) or ("shared", clamp)
        for r in range(n_dst):
            f = np.zeros(W, np.int64) if to_uniform else flat_np(lanes, r, W, v_dst)
            live = f < dst_numel
            s = m.eval(np.where(live, f, 0))
            sl, sr = lane_np(s, W, v_src), reg_np(s, W, v_src)
            if not to_uniform and np.all((sl == lanes)[live]) and len(set(sr[live])) == 1:
                plan.append(("reg", int(sr[live][0])))
            else:
                plan.append(("shared", not np.all(live)))
        if all(p[0] == "reg" for p in plan):
            lw.note_move("in-lane register copies")
            return [src_regs[q] for _, q in plan]
        one_subgroup = lw.sg.get("whole") and lw.sg.get("broadcast") and lw.sg.get("shuffle")
        remat = recompute if not to_uniform else None
        if one_subgroup and (remat is not None or _shuffles(lw, plan, src_numel, dst_numel, m, to_uniform)
                             <= SHUFFLES_PER_REGISTER * len(plan)):
            lw.note_move("subgroup broadcast/shuffle" if remat is None else
                         "subgroup broadcasts, else recomputed in each lane")
            return self._exchange_subgroup(lw, src_regs, src_numel, dst_numel, m, dt, plan, to_uniform, remat)
        if remat is not None:
            # no barrier, no shared memory: each lane computes the elements it lacks (remat.py)
            lw.note_move("recomputed in each lane (index arithmetic, no data movement)")
            return [src_regs[arg] if kind == "reg" else recompute(lw.emit_index(m, lw.flat(r, dst_numel)))
                    for r, (kind, arg) in enumerate(plan)]
        lw.note_move("shared memory + barriers")
        em = self.em
        need = len(src_regs) * W
        words = need * (2 if dt.bits == 64 else 1)
        if words > self.scratch_words:
            raise ValueError(f"scratch too small: {words} > {self.scratch_words}")
        dest_order = None if to_uniform else scratch_quads.dest_order_stores(lw, plan, src_numel, dst_numel, m)
        quads = scratch_quads.quad_loads(lw, plan, dst_numel, m) if not to_uniform and (dt.bits != 64 or need % 4 == 0) \
            else set()
        if dest_order is not None:
            # scratch accesses either way (each is a loop over the lanes in lavapipe)
            src_order_cost = (len(src_regs) // 4 if lw.vec(src_numel) == 4 else len(src_regs)) + \
                sum(1 if r in quads else 4 for r in range(0, len(plan), 4))
            hi = len(plan) * W                  # 64-bit: high words after the low ones
            fits = hi * (2 if dt.bits == 64 else 1) <= self.scratch_words
            if fits and len(dest_order) + len(plan) // 4 < src_order_cost:
                lw.note_move("destination-ordered uvec4 scratch")
                return self._exchange_dest_order(lw, src_regs, dest_order, len(plan) // 4, dt, hi)
        em.barrier()
        self.store_tile(lw, src_regs, src_numel, dt, need)
        em.barrier()
        out = []
        for r, (kind, arg) in enumerate(plan):
            if kind == "reg":
                out.append(src_regs[arg])
                continue
            if r in quads:             # registers r..r+3 read 4 consecutive, aligned words
                s = lw.emit_index(m, lw.flat(r, dst_numel))
                out.extend(self.load_values4(em.op("OpShiftRightArithmetic", em.i32, s, em.ci(2)), dt, need))
                continue
            if len(out) > r:           # already read by the quad load of its group
                continue
            f = em.ci(0) if to_uniform else lw.flat(r, dst_numel)
            if arg:   # lanes past the end read element 0 instead of running off the scratch
                f = em.select(em.i32, lw.valid(dst_numel, r), f, em.ci(0))
            out.append(self.load_value(lw.emit_index(m, f), dt, need))
        return out

    def _exchange_dest_order(self, lw, src_regs, stores, groups: int, dt, hi: int) -> list[int]:
        """The scratch laid out in destination order (word = destination flat index): each
        source lane writes the 4 registers a destination group needs as one uvec4 at a
        per-lane address a + b*lane, and each lane reads its groups back as one uvec4 each.
        A transpose moves a 4x4 block a lane already holds, so both sides are vec4."""
        em = self.em
        em.barrier()
        for regs, a, b in stores:
            if b == 0:                  # one lane (W = 1)
                quad = em.ci(a)
            else:
                quad = lw.lane if b == 1 else em.imul(lw.lane, em.ci(b))
                quad = quad if a == 0 else em.iadd(quad, em.ci(a))
            self.store_values4(quad, [src_regs[q] for q in regs], dt, hi)
        em.barrier()
        out = []
        for g in range(groups):
            quad = lw.lane if g == 0 else em.iadd(lw.lane, em.ci(g * lw.W))
            out.extend(self.load_values4(quad, dt, hi))
        return out

    def _exchange_subgroup(self, lw, src_regs, src_numel, dst_numel, m: IndexMap, dt, plan, to_uniform,
                           recompute=None):
        """The workgroup is one subgroup: broadcasts for elements every lane wants (or a few,
        each for a run of lanes), else the element recomputed in place where `recompute` is
        given (an index tile: a few integer ops instead of shuffles and selects), else shuffles.
        A broadcast is preferred to recomputing: the driver merges equal broadcasts, while a
        recomputed element costs its expression in every register (a pointer tile's row term
        in a matvec loop: 64 registers' worth of it per iteration)."""
        em, W = self.em, lw.W
        v_src, v_dst = lw.vec(src_numel), lw.vec(dst_numel)
        lanes = np.arange(W)
        out = []
        cache, below = {}, {}

        def bcast(elem: int) -> int:
            """Source element `elem` in every lane (one broadcast per element per move)."""
            if elem not in cache:
                cache[elem] = subgroup.broadcast(lw, dt, src_regs[int(reg_np(elem, W, v_src))],
                                                 int(lane_np(elem, W, v_src)))
            return cache[elem]

        for r, (kind, arg) in enumerate(plan):
            if kind == "reg":
                out.append(src_regs[arg])
                continue
            f = np.zeros(W, np.int64) if to_uniform else flat_np(lanes, r, W, v_dst)
            live = f < dst_numel
            s = m.eval(np.where(live, f, 0))[live]
            if len(set(s)) == 1:                       # one element for all: broadcast
                out.append(bcast(int(s[0])))
                continue
            runs = _lane_runs(s, live)
            if runs is not None:                       # a few elements, each for a run of lanes
                value = bcast(runs[0][1])
                for start, elem in runs[1:]:
                    if start not in below:
                        below[start] = em.ilt(lw.lane, em.ci(start))
                    value = em.select(em.type_of(dt), below[start], value, bcast(elem))
                out.append(value)
                continue
            if recompute is not None:
                out.append(recompute(lw.emit_index(m, lw.flat(r, dst_numel))))
                continue
            fid = em.ci(0) if to_uniform else lw.flat(r, dst_numel)
            if arg:
                fid = em.select(em.i32, lw.valid(dst_numel, r), fid, em.ci(0))
            sid = lw.emit_index(m, fid)
            unit = sid if v_src == 1 else em.op("OpSDiv", em.i32, sid, em.ci(v_src))
            src_lane = em.op("OpSMod", em.i32, unit, em.ci(W)) if W > 1 else em.ci(0)
            qs = sorted(set(int(x) for x in reg_np(s, W, v_src)))
            value = None
            for q in qs:                               # one shuffle per source register involved
                val = subgroup.shuffle(lw, dt, src_regs[q], src_lane)
                if value is None:
                    value = val
                    continue
                reg_id = em.iadd(em.imul(em.op("OpSDiv", em.i32, sid, em.ci(v_src * W)), em.ci(v_src)),
                                 em.op("OpSMod", em.i32, sid, em.ci(v_src))) if v_src > 1 else \
                    em.op("OpSDiv", em.i32, sid, em.ci(W))
                pick = em.op("OpIEqual", em.bool, reg_id, em.ci(q))
                value = em.select(em.type_of(dt), pick, val, value)
            out.append(value)
        return out


# A move on one subgroup shuffles each destination register from every source register its
# lanes read (plus a select each).  Beyond this many shuffles per register on average (a
# transpose: one per lane), shared memory is cheaper for the driver's compiler: lavapipe
# turns each variable-index shuffle into a per-lane extract/insert sequence, and a 16x16
# transpose through shuffles took it 2.5 s to compile, a [64, 16] one over a minute.
SHUFFLES_PER_REGISTER = 2


def _shuffles(lw, plan, src_numel, dst_numel, m, to_uniform) -> int:
    """Shuffles _exchange_subgroup would emit for `plan` (broadcasts count as none)."""
    W = lw.W
    v_src, v_dst = lw.vec(src_numel), lw.vec(dst_numel)
    lanes = np.arange(W)
    total = 0
    for r, (kind, _) in enumerate(plan):
        if kind == "reg":
            continue
        f = np.zeros(W, np.int64) if to_uniform else flat_np(lanes, r, W, v_dst)
        live = f < dst_numel
        s = m.eval(np.where(live, f, 0))[live]
        if len(set(s.tolist())) > 1 and _lane_runs(s, live) is None:
            total += len(set(reg_np(s, W, v_src).tolist()))
    return total


# A destination register whose lanes want at most this many distinct source elements, each
# for one run of consecutive lanes (a row broadcast `x[:, None]` into rows that span a few
# lanes), is built from constant-lane broadcasts and selects on the lane index: lavapipe
# compiles a broadcast to one extract, a shuffle to a per-lane sequence.
MAX_BROADCAST_RUNS = 2


def _lane_runs(s, live):
    """[(first lane, source element)] when the live lanes' elements `s` form at most
    MAX_BROADCAST_RUNS runs of consecutive lanes with one element each, else None (lanes
    past the tile's end, at the end of the subgroup, join the last run)."""
    runs = []
    for lane, elem in enumerate(s.tolist()):
        if not runs or runs[-1][1] != elem:
            if len(runs) == MAX_BROADCAST_RUNS:
                return None
            runs.append((lane, int(elem)))
    return runs


def runs_of_four(lw, op, mask_index: int, aligned: bool) -> bool:
    """Whether registers 4j..4j+3 of a load's/store's pointer tile (operand 0) hold 4 consecutive
    addresses under one mask value (operand mask_index, if present), the first of them a
    multiple of 4 when `aligned` (a binding's vec4 view needs that; an address does not)."""
    ptr_t = op.operands[0].type
    if ptr_t.is_scalar or lw.vec(ptr_t.numel) != 4 or ptr_t.shape[-1] % 4:
        return False
    info = lw.axis.get(id(op.operands[0]))
    if info is None or info.contig < 4 or (aligned and info.div < 4):
        return False
    if len(op.operands) > mask_index:
        m = lw.axis.get(id(op.operands[mask_index]))
        if m is None or m.const < 4:
            return False
    return True


def from_storage(em, raw: int, dt: T.DType) -> int:
    """An element as loaded from memory (storage type) -> its register value: bools widen then
    compare (an 8-bit constant would need the Int8 capability; 8-bit storage alone allows only
    loads, stores and conversions: spirv-val "Cannot form constants"), bf16 bits become the
    f32 they denote; everything else is held as stored."""
    if dt.is_bool:
        return em.op("OpINotEqual", em.bool, em.op("OpUConvert", em.u32, raw), em.cu(0))
    if dt.name == "bf16":
        wide = em.op("OpUConvert", em.u32, raw)
        return em.op("OpBitcast", em.f32, em.op("OpShiftLeftLogical", em.u32, wide, em.cu(16)))
    return raw


def to_storage(em, value: int, dt: T.DType, st: int) -> int:
    """A register value -> the element to store, of SPIR-V storage type `st` (the inverse of
    from_storage: bools select in 32 bits then narrow, f32 rounds to bf16's 16 bits)."""
    if dt.is_bool:
        return em.op("OpUConvert", st, em.select(em.u32, value, em.cu(1), em.cu(0)))
    if dt.name == "bf16":
        bits = em.op("OpBitcast", em.u32, em.round_bf16(value))
        return em.op("OpUConvert", st, em.op("OpShiftRightLogical", em.u32, bits, em.cu(16)))
    return value
