"""Atomics on storage buffers: Triton's atomic_add/max/min/and/or/xor/xchg and atomic_cas.

Each lane applies its elements one at a time (masked-off lanes and lanes past the tile's end
do nothing and get 0 back); a scalar pointer's atomic runs once, in lane 0, and every lane
sees its old value.  Lanes that hit one address all apply: that is what the atomic
instructions guarantee.  How each element type is done:

- i32/u32: the native SPIR-V atomics.
- f32 (the binding is declared as u32 words, compiler._float_atomic_bindings): xchg and
  compare-and-swap are native on the bits; max/min as Triton lowers them, with no loop: a
  value with its sign bit clear takes the signed maximum (minimum) of the bit patterns,
  one with it set the unsigned minimum (maximum); add is OpAtomicFAddEXT through an Aliased
  f32 declaration of the buffer where the device reports shaderBufferFloat32AtomicAdd
  (VK_EXT_shader_atomic_float; `mark_native_atomics`), else a compare-and-swap loop on the word.
- 64-bit (where the device reports shaderBufferInt64Atomics; capability Int64Atomics, a clear
  DeviceError elsewhere): i64/u64 natively; f64 as f32 is, on u64 words: xchg, compare-and-swap
  and max/min natively on the bits, add as a compare-and-swap loop on the word.
- 16-bit (f16/bf16 add, compare-and-swap of f16/bf16/i16/u16): Vulkan has no 16-bit
  atomics, so a compare-and-swap loop on the 32-bit word holding the element, through a
  second, u32 declaration of the same buffer (`word_view`); both declarations carry the
  Aliased decoration, since plain 16-bit loads and stores of the kernel reach the same
  memory.  The loop replaces only this element's half of the word and retries when the
  other half changed meanwhile.

Retry loops and the loop limit (lavapipe before Mesa 26, codegen/loop_budget.py): a retry
loop's trip count is not known, so a kernel with one gets the hidden status buffer and no
program loop (loop_budget.needs_retry_loop), and a loop that the driver's limiter stops
before its compare-and-swap succeeded writes 1 there, which the launcher turns into an
error instead of a silently lost update.

`sem=` and `scope=` map onto SPIR-V memory barriers around the op (release: one before it,
acquire: one after, acq_rel: both; on UniformMemory, the storage buffers) with relaxed atomics
between, which orders them as release/acquire atomics would (fence synchronization), and scopes
(gpu and sys: Device, since Vulkan has no system scope for shader atomics; cta: Workgroup).
"""
from __future__ import annotations

from ..ir import types as T
from .emitter import SCOPE_DEVICE, SCOPE_WORKGROUP
from .float_math import f32_to_f16
from .loop_status import status_binding
from .layout import IndexMap
from .memory import Binding
from .values import LV

_UNIFORM_MEMORY = 0x40
_ORDER = {"relaxed": 0, "acquire": 0x2, "release": 0x4, "acq_rel": 0x8}
_SCOPE = {"gpu": SCOPE_DEVICE, "sys": SCOPE_DEVICE, "cta": SCOPE_WORKGROUP}
_INT_OPS = {"add": "OpAtomicIAdd", "xchg": "OpAtomicExchange", "and": "OpAtomicAnd",
            "or": "OpAtomicOr", "xor": "OpAtomicXor"}


def _f32_add(op) -> bool:
    return op.name == "atomic_rmw" and op.attrs["kind"] == "add" and op.results[0].type.elem.name == "f32"


def mark_native_atomics(kernel, target):
    """On a device with shaderBufferFloat32AtomicAdd, f32 adds become OpAtomicFAddEXT: marked
    on the op (attribute native_fadd) before the loop budget looks for retry loops."""
    if target.float32_atomic_add:
        for op in kernel.walk():
            if _f32_add(op):
                op.attrs["native_fadd"] = True
    return kernel


def needs_retry_loop(op) -> bool:
    """Whether the lowering of `op` has a compare-and-swap retry loop (see the docstring)."""
    if op.name not in ("atomic_rmw", "atomic_cas"):
        return False
    elem = op.results[0].type.elem
    if elem.bits == 16:
        return True
    if elem.name == "f64":
        return op.name == "atomic_rmw" and op.attrs["kind"] == "add"
    return _f32_add(op) and not op.attrs.get("native_fadd")


def counter_add(mem, bd: Binding, idx: int, v: int) -> int:
    """A relaxed device-scope add on a 32-bit integer element, for the compiler's own counters
    (the debug-print buffer's record count); returns the old value."""
    em = mem.em
    return em.op("OpAtomicIAdd", em.type_of(bd.dtype), mem._elem_ptr(bd, idx), em.cu(SCOPE_DEVICE), em.cu(0), v)


def lower_atomic(lw, op):
    """atomic_rmw and atomic_cas, register by register."""
    em, mem = lw.em, lw.mem
    ptr_t = op.operands[0].type
    ptr = lw.get(op.operands[0])
    if op.name == "atomic_rmw":
        kind = op.attrs["kind"]
        values = [lw.get(op.operands[1])]
        mask = lw.get(op.operands[2]) if len(op.operands) > 2 else None
    else:
        kind, mask = "cas", None
        values = [lw.get(op.operands[1]), lw.get(op.operands[2])]
    bd = mem.bindings[ptr.binding]
    dt = op.result.type.elem
    rt = em.type_of(dt)
    order = _ORDER[op.attrs.get("sem", "acq_rel")]
    scope = em.cu(_SCOPE[op.attrs.get("scope", "gpu")])
    # The ordering is two fences around the whole op, in the op's own (uniform) control flow;
    # the per-lane atomics are relaxed.  An ordered atomic inside the per-lane `if`s and retry
    # loops lost updates on lavapipe once a program spans several subgroups (the driver
    # treats the memory barrier it implies as a workgroup barrier, which diverged lanes miss).
    if order in (_ORDER["release"], _ORDER["acq_rel"]):
        em.op("OpMemoryBarrier", None, scope, em.cu(_ORDER["release"] | _UNIFORM_MEMORY))
    how = f"compare-and-swap loop on the {max(32, dt.bits)}-bit word" if needs_retry_loop(op) else \
        "OpAtomicFAddEXT" if op.attrs.get("native_fadd") else "native atomic"
    lw.note(op, f"{how} ({op.attrs.get('sem', 'acq_rel')}, {op.attrs.get('scope', 'gpu')})")
    at = _Atomic(lw, bd, dt, scope, bool(op.attrs.get("native_fadd")))
    out = []
    for r, off in enumerate(ptr.regs):
        pred = mem._uniform_guard(lw, ptr_t, mem._guards(lw, op, ptr_t, mask, r))
        vals = [v.regs[r] for v in values]
        result = em.local_var(rt, em.const(dt, 0))
        if pred is None:
            em.store_var(result, at.one(kind, off, vals))
        else:
            with em.if_then(pred):
                em.store_var(result, at.one(kind, off, vals))
        out.append(em.load_var(rt, result))
    if order in (_ORDER["acquire"], _ORDER["acq_rel"]):
        em.op("OpMemoryBarrier", None, scope, em.cu(_ORDER["acquire"] | _UNIFORM_MEMORY))
    if ptr_t.is_scalar:
        # the old value lives in lane 0; every lane must see it
        out = mem.exchange(lw, out, 1, 1, IndexMap(()), dt, to_uniform=True)
    lw.bind(op, LV(out, ptr_t.is_scalar))


class _Atomic:
    def __init__(self, lw, bd: Binding, dt: T.DType, scope: int, native_fadd: bool):
        self.lw, self.em, self.mem = lw, lw.em, lw.mem
        self.bd, self.dt, self.scope = bd, dt, scope
        self.native_fadd = native_fadd
        # relaxed: lower_atomic orders the whole op with memory barriers around it
        self.sem = self.sem_unequal = self.em.cu(0)
        # the word an element's bits are updated in: 32 bits (for 16-bit elements, the word
        # holding them), 64 for 64-bit elements
        self.word_dt = T.u64 if dt.bits == 64 else T.u32
        self.word = self.em.type_of(self.word_dt)
        if dt.bits == 64:
            self.em.capability("Int64Atomics")     # checked against shaderBufferInt64Atomics

    def one(self, kind: str, idx: int, vals: list[int]) -> int:
        """The old value of element `idx` after applying `kind` with `vals` (cas: cmp, val)."""
        if self.dt.bits == 16:
            return self._half_word(kind, idx, vals)
        em, dt = self.em, self.dt
        p = self.mem._elem_ptr(self.bd, idx)
        if not dt.is_float:
            rt = em.type_of(dt)
            if kind == "cas":
                return em.op("OpAtomicCompareExchange", rt, p, self.scope, self.sem, self.sem_unequal,
                             vals[1], vals[0])
            name = _INT_OPS.get(kind) or {
                "max": "OpAtomicSMax" if dt.is_signed else "OpAtomicUMax",
                "min": "OpAtomicSMin" if dt.is_signed else "OpAtomicUMin"}[kind]
            return em.op(name, rt, p, self.scope, self.sem, vals[0])
        # f32 (f64) on a binding declared as u32 (u64) words
        ft, wt = em.type_of(dt), self.word
        bits = [em.op("OpBitcast", wt, v) for v in vals]
        if kind == "cas":
            old = em.op("OpAtomicCompareExchange", wt, p, self.scope, self.sem, self.sem_unequal,
                        bits[1], bits[0])
        elif kind == "xchg":
            old = em.op("OpAtomicExchange", wt, p, self.scope, self.sem, bits[0])
        elif kind in ("max", "min"):
            old = self._float_minmax(kind, p, bits[0])
        elif self.native_fadd:
            view = float_view(self.mem, self.bd)
            fp = em.op("OpAccessChain", view.ptr_type, view.var, em.ci(0), idx)
            return em.op("OpAtomicFAddEXT", em.f32, fp, self.scope, self.sem, vals[0])
        else:
            def add(cur):
                return em.op("OpBitcast", wt, em.op("OpFAdd", ft, em.op("OpBitcast", ft, cur), vals[0]))
            old = self._retry(p, add)
        return em.op("OpBitcast", ft, old)

    def _float_minmax(self, kind: str, p: int, bits: int) -> int:
        """Triton's float max/min: signed max/min for values with the sign bit clear, unsigned
        min/max for those with it set (the bit patterns of negative floats order backwards)."""
        em, wt, wdt = self.em, self.word, self.word_dt
        sign = em.op("OpShiftRightLogical", wt, bits, em.const(wdt, self.dt.bits - 1))
        neg = em.op("OpINotEqual", em.bool, sign, em.const(wdt, 0))
        pos_op, neg_op = ("OpAtomicSMax", "OpAtomicUMin") if kind == "max" else ("OpAtomicSMin", "OpAtomicUMax")
        result = em.local_var(wt, em.const(wdt, 0))
        with em.if_then(neg):
            em.store_var(result, em.op(neg_op, wt, p, self.scope, self.sem, bits))
        with em.if_then(em.op("OpLogicalNot", em.bool, neg)):
            em.store_var(result, em.op(pos_op, wt, p, self.scope, self.sem, bits))
        return em.load_var(wt, result)

    # ---- compare-and-swap loops ------------------------------------------------------------
    def _retry(self, p: int, update) -> int:
        """Loop: cur = *p; new = update(cur); CAS(p, cur -> new) until it finds cur there.
        Returns the word it replaced.  A loop cut short by the driver's iteration limit
        reports itself through the loop-budget status buffer (see the module docstring)."""
        em = self.em
        wt = self.word            # the 32-bit word (16- and 32-bit elements) or the 64-bit one
        relaxed = em.cu(0)
        expected = em.local_var(wt, em.op("OpAtomicLoad", wt, p, self.scope, relaxed))
        ok = em.local_var(em.bool, em.b.const(em.bool, False))
        header, body, cont, merge = (em.b.new_id() for _ in range(4))
        em.op("OpBranch", None, header)
        em.b.label(header)
        em.op("OpLoopMerge", None, merge, cont, 0)
        em.op("OpBranch", None, body)
        em.b.label(body)
        cur = em.load_var(wt, expected)
        seen = em.op("OpAtomicCompareExchange", wt, p, self.scope, self.sem, self.sem_unequal, update(cur), cur)
        em.store_var(expected, seen)
        done = em.op("OpIEqual", em.bool, seen, cur)
        em.store_var(ok, done)
        em.op("OpBranchConditional", None, done, merge, cont)
        em.b.label(cont)
        em.op("OpBranch", None, header)
        em.b.label(merge)
        self._report_if_cut(em.load_var(em.bool, ok))
        return em.load_var(wt, expected)

    def _report_if_cut(self, ok: int):
        status = status_binding(self.mem)
        if status is None:
            return
        em = self.em
        with em.if_then(em.op("OpLogicalNot", em.bool, ok)):
            self.mem.store_elem(status, em.ci(0), em.ci(1))

    def _half_word(self, kind: str, idx: int, vals: list[int]) -> int:
        """A 16-bit element through its 32-bit word: element idx is half idx & 1 of word idx >> 1
        (little-endian: even elements in the low half)."""
        em, dt = self.em, self.dt
        u32 = em.u32
        view = word_view(self.mem, self.bd)
        widx = em.op("OpShiftRightArithmetic", em.i32, idx, em.ci(1))
        shift = em.op("OpShiftLeftLogical", u32, em.op("OpBitcast", u32, em.op("OpBitwiseAnd", em.i32, idx, em.ci(1))),
                      em.cu(4))
        p = em.op("OpAccessChain", view.ptr_type, view.var, em.ci(0), widx)
        keep = em.op("OpNot", u32, em.op("OpShiftLeftLogical", u32, em.cu(0xFFFF), shift))
        vbits = [_bits16(em, v, dt) for v in vals]

        def half(word):
            return em.op("OpBitwiseAnd", u32, em.op("OpShiftRightLogical", u32, word, shift), em.cu(0xFFFF))

        def update(cur):
            old = half(cur)
            if kind == "cas":
                new = em.select(u32, em.op("OpIEqual", em.bool, old, vbits[0]), vbits[1], old)
            elif kind == "add":
                new = _bits16(em, _add16(em, _from_bits16(em, old, dt), vals[0], dt), dt)
            else:
                raise AssertionError(f"16-bit atomic_{kind} is refused by the IR verifier")
            return em.op("OpBitwiseOr", u32, em.op("OpBitwiseAnd", u32, cur, keep),
                         em.op("OpShiftLeftLogical", u32, new, shift))
        return _from_bits16(em, half(self._retry(p, update)), dt)


def word_view(mem, bd: Binding) -> Binding:
    """A u32 declaration of the same buffer as `bd` (another binding slot, bound by the launcher to
    the same tensor, as the vec4 views are); both declarations are marked Aliased."""
    return _aliased_view(mem, bd, T.u32, "words")


def float_view(mem, bd: Binding) -> Binding:
    """An f32 declaration of an f32 buffer that the kernel declares as u32 words (for
    OpAtomicFAddEXT, which needs a float pointer); Aliased like word_view."""
    em = mem.em
    em.capability("AtomicFloat32AddEXT")
    em.b.extension("SPV_EXT_shader_atomic_float_add")
    return _aliased_view(mem, bd, T.f32, "floats")


def _aliased_view(mem, bd: Binding, st: T.DType, suffix: str) -> Binding:
    key = (suffix, bd.index)
    if key not in mem._cache:
        em, b = mem.em, mem.em.b
        view = Binding(len(mem.bindings), bd.name, bd.dtype, st)
        mem.bindings.append(view)
        elem = em.type_of(st)
        var = mem.storage_buffer(elem, 4, f"{bd.name}_{suffix}", view.index)
        b.decorate(var, "Aliased")
        if not mem._cache.get(("aliased", bd.index)):
            b.decorate(bd.var, "Aliased")
            mem._cache[("aliased", bd.index)] = True
        b.name(var, f"{bd.name}_{suffix}")
        view.var, view.ptr_type = var, b.type_pointer("StorageBuffer", elem)
        mem._cache[key] = view
    return mem._cache[key]


def _bits16(em, v: int, dt: T.DType) -> int:
    """A 16-bit register value -> its bits in the low half of a u32 (no 16-bit integer types
    needed for floats: an f16 pair bitcasts to a u32)."""
    u32 = em.u32
    if dt.name == "bf16":        # registers hold f32 values already rounded to bf16
        return em.op("OpShiftRightLogical", u32, em.op("OpBitcast", u32, v), em.cu(16))
    if dt.is_float:
        f16 = em.type_of(dt)
        pair = em.op("OpCompositeConstruct", em.b.type_vector(f16, 2), v, em.const(dt, 0))
        return em.op("OpBitwiseAnd", u32, em.op("OpBitcast", u32, pair), em.cu(0xFFFF))
    wide = em.op("OpUConvert", u32, em.op("OpBitcast", em.b.type_int(16, False), v)) if dt.is_signed else \
        em.op("OpUConvert", u32, v)
    return wide


def _from_bits16(em, bits: int, dt: T.DType) -> int:
    """The low 16 bits of a u32 -> a register of type dt (inverse of _bits16)."""
    if dt.name == "bf16":
        return em.op("OpBitcast", em.f32, em.op("OpShiftLeftLogical", em.u32, bits, em.cu(16)))
    if dt.is_float:
        f16 = em.type_of(dt)
        return em.op("OpCompositeExtract", f16, em.op("OpBitcast", em.b.type_vector(f16, 2), bits), 0)
    u16 = em.op("OpUConvert", em.b.type_int(16, False), bits)
    return em.op("OpBitcast", em.type_of(dt), u16) if dt.is_signed else u16


def _add16(em, old: int, v: int, dt: T.DType) -> int:
    """old + v computed in f32 and rounded once, to nearest even, to dt (what numpy does for
    float16; float_math.f32_to_f16 because the driver's OpFConvert may truncate)."""
    f32 = em.f32
    if dt.name == "bf16":
        return em.round_bf16(em.op("OpFAdd", f32, old, v))
    return f32_to_f16(em, em.op("OpFAdd", f32, em.op("OpFConvert", f32, old), em.op("OpFConvert", f32, v)))
