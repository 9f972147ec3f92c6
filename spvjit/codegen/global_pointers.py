"""Global-address pointers (`gptr<T>`): tiles of 64-bit device addresses.

A tensor argument's pointer is a binding plus i32 element offsets (memory.py); a pointer a
kernel makes from an integer (`tl.load(ptrs + g).to(tl.pointer_type(tl.float16))`, Triton's
tutorial 08, where the integers are `Tensor.data_ptr()`s) has no binding.  Its registers are
i64 byte addresses: `addptr` adds the sign-extended offset times the element size, and each
access converts the address with OpConvertUToPtr to a PhysicalStorageBuffer pointer to one
element and loads or stores through it with an `Aligned` memory operand (the element size:
`data_ptr()` is at least 16-byte aligned and offsets count whole elements).  Where the axis
analysis proves 4 consecutive addresses in registers 4j..4j+3 under one mask value (32-bit
and f16 elements, as for bindings), the 4 go as one vector access through a pointer to a
4-vector, still `Aligned` to the element size only (nothing is known of the base address's
alignment).  A masked-off element is never touched: unlike a binding, where a clamped index 0
is always a valid address, an address may point nowhere, so masked accesses branch per element
or per 4 (a Function variable carries the loaded value or `other` out of the branch).

The module then declares the PhysicalStorageBufferAddresses capability, the
SPV_KHR_physical_storage_buffer extension and the PhysicalStorageBuffer64 addressing model
(`finish_module`); the device needs bufferDeviceAddress (compiler._CAPABILITY_FEATURES turns
its absence into a DeviceError).  Tensor-argument pointers and their optimizations (texel
views, vec4 accesses, cooperative-matrix loads) are untouched; a kernel that follows
addresses only loses the read-only/write-only facts of its bindings, since an address may
alias any tensor.
"""
from __future__ import annotations

from ..ir import types as T
from .memory import from_storage, runs_of_four, to_storage
from .values import LV


def is_global(ty: T.TileType) -> bool:
    return ty.is_pointer and ty.elem.global_address


def register_dtype(ty: T.TileType) -> T.DType:
    """The IR type a pointer tile's registers have: i64 addresses, or i32 element offsets."""
    if ty.is_pointer:
        return T.i64 if ty.elem.global_address else T.i32
    return ty.elem


def _used(lw):
    lw.global_addresses = True
    em = lw.em
    em.capability("PhysicalStorageBufferAddresses")
    em.b.extension("SPV_KHR_physical_storage_buffer")


def finish_module(b) -> None:
    """Switch the module to 64-bit physical addressing, keeping its memory model."""
    b.set_addressing_model("PhysicalStorageBuffer64")


def lower_int_to_ptr(lw, op):
    _used(lw)
    src = lw.get(op.operands[0])
    src_t = op.operands[0].type.elem
    i64 = lw.em.type_of(T.i64)
    regs = src.regs if src_t == T.i64 else [lw.em.op("OpBitcast", i64, r) for r in src.regs]
    lw.bind(op, LV(list(regs), src.uniform))


def lower_ptr_to_int(lw, op):
    src = lw.get(op.operands[0])
    lw.bind(op, LV(list(src.regs), src.uniform))


def offset(lw, address: int, off: int, off_t: T.DType, elem: T.DType) -> int:
    """address + off * sizeof(elem), in 64 bits (the offset sign- or zero-extended as its type)."""
    em = lw.em
    i64 = em.type_of(T.i64)
    wide = lw.convert(off, off_t, T.i64) if off_t != T.i64 else off
    if elem.nbytes != 1:
        wide = em.op("OpIMul", i64, wide, em.const(T.i64, elem.nbytes))
    return em.op("OpIAdd", i64, address, wide)


def lower_addptr(lw, op):
    p, o = lw.get(op.operands[0]), lw.get(op.operands[1])
    off_t = op.operands[1].type.elem
    elem = op.result.type.elem.pointee
    out = [offset(lw, a, b, off_t, elem) for a, b in zip(p.regs, o.regs)]
    lw.bind(op, LV(out, p.uniform))


def _element_pointer(lw, address: int, elem: T.DType, count: int = 1) -> int:
    """(a PhysicalStorageBuffer pointer to `count` elements at `address`, their storage type)"""
    em = lw.em
    st = lw.mem._storage_type(elem)          # 8/16-bit storage capabilities as for bindings
    if count > 1:
        st = em.b.type_vector(st, count)
    ptr_t = em.b.type_pointer("PhysicalStorageBuffer", st)
    return em.op("OpConvertUToPtr", ptr_t, address), st


def _vectorizable(lw, op, mask_index: int) -> bool:
    """Registers 4j..4j+3 hold 4 consecutive addresses under one mask value (memory.py's rule
    without the alignment condition, which only a binding's vec4 view needs)."""
    elem = op.operands[0].type.elem.pointee
    if not (elem.bits == 32 or elem.name == "f16"):      # registers hold the storage type
        return False
    return runs_of_four(lw, op, mask_index, aligned=False)


_ALIGNED = 0x2      # MemoryAccess::Aligned


def _load_one(lw, address: int, elem: T.DType) -> int:
    em = lw.em
    p, st = _element_pointer(lw, address, elem)
    return from_storage(em, em.op("OpLoad", st, p, _ALIGNED, elem.nbytes), elem)


def _store_one(lw, address: int, value: int, elem: T.DType):
    em = lw.em
    p, st = _element_pointer(lw, address, elem)
    em.op("OpStore", None, p, to_storage(em, value, elem, st), _ALIGNED, elem.nbytes)


def lower_load(lw, op):
    _used(lw)
    em, mem = lw.em, lw.mem
    ptr_t = op.operands[0].type
    ptr = lw.get(op.operands[0])
    mask = lw.get(op.operands[1]) if len(op.operands) > 1 else None
    other = lw.get(op.operands[2]) if len(op.operands) > 2 else None
    dt = op.result.type.elem
    rt = em.type_of(dt)
    out = []
    if _vectorizable(lw, op, 1):
        lw.note(op, "vec4 load through a global address" + (" (branch per 4)" if mask else ""))
        vt = em.b.type_vector(rt, 4)
        for r in range(0, len(ptr.regs), 4):
            pred = mem._guards(lw, op, ptr_t, mask, r)
            p, _ = _element_pointer(lw, ptr.regs[r], dt, 4)
            if pred is None:
                v4 = em.op("OpLoad", vt, p, _ALIGNED, dt.nbytes)
            else:
                fill = [other.regs[r + i] if other is not None else em.const(dt, 0) for i in range(4)]
                var = em.local_var(vt)
                em.store_var(var, em.op("OpCompositeConstruct", vt, *fill))
                with em.if_then(pred):
                    em.store_var(var, em.op("OpLoad", vt, p, _ALIGNED, dt.nbytes))
                v4 = em.load_var(vt, var)
            out.extend(em.op("OpCompositeExtract", rt, v4, i) for i in range(4))
        lw.bind(op, LV(out, False))
        return
    lw.note(op, "scalar load through a global address" + (" (branch per element)" if mask else ""))
    for r, address in enumerate(ptr.regs):
        pred = mem._guards(lw, op, ptr_t, mask, r)
        if pred is None:
            out.append(_load_one(lw, address, dt))
            continue
        fill = other.regs[r] if other is not None else em.const(dt, 0)
        var = em.local_var(rt)
        em.store_var(var, fill)
        with em.if_then(pred):
            em.store_var(var, _load_one(lw, address, dt))
        out.append(em.load_var(rt, var))
    lw.bind(op, LV(out, ptr_t.is_scalar))


def lower_store(lw, op):
    _used(lw)
    em, mem = lw.em, lw.mem
    ptr_t = op.operands[0].type
    ptr, val = lw.get(op.operands[0]), lw.get(op.operands[1])
    mask = lw.get(op.operands[2]) if len(op.operands) > 2 else None
    elem = ptr_t.elem.pointee
    if _vectorizable(lw, op, 2):
        lw.note(op, "vec4 store through a global address")
        for r in range(0, len(ptr.regs), 4):
            pred = mem._guards(lw, op, ptr_t, mask, r)
            p, vt = _element_pointer(lw, ptr.regs[r], elem, 4)
            vec = em.op("OpCompositeConstruct", vt, *val.regs[r:r + 4])
            if pred is None:
                em.op("OpStore", None, p, vec, _ALIGNED, elem.nbytes)
            else:
                with em.if_then(pred):
                    em.op("OpStore", None, p, vec, _ALIGNED, elem.nbytes)
        return
    lw.note(op, "scalar store through a global address")
    for r, (address, v) in enumerate(zip(ptr.regs, val.regs)):
        pred = mem._uniform_guard(lw, ptr_t, mem._guards(lw, op, ptr_t, mask, r))
        if pred is None:
            _store_one(lw, address, v, elem)
        else:
            with em.if_then(pred):
                _store_one(lw, address, v, elem)
