"""Values in matrix layout and their movement, shared by the cooperative-matrix modules.

An M x N value in matrix layout is cut into the configuration's m x n tiles; subgroup s of S
owns tiles s, s+S, ... (`_Tiles`), each one cooperative-matrix id per invocation
(`CoopValue`).  `to_matrix` / `to_blocked` move a value between that layout and the blocked
layout through a shared row-major array; `_stage` writes blocked registers into one.  The dot
(coopmat.py), its epilogues (coopmat_epilogue.py) and its direct operands
(coopmat_operands.py) all build on these, so none of them imports another's internals.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import types as T
from .values import LV

ROW_MAJOR = 0
# IR dtype of A/B -> the cooperative-matrix component type name the device reports
_OPERAND_TYPES = {"f16": "f16", "bf16": "bf16", "i8": "i8", "u8": "u8"}


def operand_type(em, dt: T.DType) -> int:
    """SPIR-V component type of A/B matrices of IR type dt.  bf16 is a 16-bit float with the
    BFloat16KHR encoding (SPV_KHR_bfloat16); registers hold bf16 as f32, memory as u16 bits."""
    if dt.name != "bf16":
        return em.type_of(dt)
    em.b.extension("SPV_KHR_bfloat16")
    em.capability("BFloat16TypeKHR")
    em.capability("BFloat16CooperativeMatrixKHR")
    return em.b.type_float(16, "BFloat16KHR")


def memory_type(em, dt: T.DType) -> int:
    """Element type of shared arrays that hold A/B for matrix loads (bf16: its u16 bits; a
    matrix load's pointee type may differ from the matrix component type)."""
    return em.type_of(T.u16) if dt.name == "bf16" else em.type_of(dt)


def to_memory(em, value: int, dt: T.DType) -> int:
    """A register of type dt as stored in a memory_type array (bf16: the f32 register's high
    half, exact since registers hold bf16-rounded values)."""
    if dt.name != "bf16":
        return value
    hi = em.op("OpShiftRightLogical", em.u32, em.op("OpBitcast", em.u32, value), em.cu(16))
    return em.op("OpUConvert", em.type_of(T.u16), hi)


@dataclass
class CoopValue:
    """A value in matrix layout: this subgroup's tiles, in the order of `Plan.owned`."""
    cfg: object
    tile_type: int
    ids: list[int]

def same_layout(a, b) -> bool:
    """Matrix layout depends only on the tile shape: values of configurations with equal m x n
    (an i8 dot's i32 result and an f32 accumulator) combine tile by tile."""
    return a is not None and b is not None and (a.m, a.n) == (b.m, b.n)

def _enable(em):
    b = em.b
    em.capability("CooperativeMatrixKHR")
    b.extension("SPV_KHR_cooperative_matrix")
    em.capability("VulkanMemoryModel")
    b.extension("SPV_KHR_vulkan_memory_model")
    # atomics in these kernels use Device scope, which the Vulkan memory model gates
    em.capability("VulkanMemoryModelDeviceScope")
    b.memory_model("Logical", "Vulkan")


def _shared_array(mem, name: str, elem_type: int, count: int, elem_bytes: int = 4) -> int:
    key = ("coop_shared", name, elem_type, count)
    if key not in mem._cache:
        b = mem.em.b
        var = b.variable(b.type_pointer("Workgroup", b.type_array(elem_type, count)), "Workgroup")
        b.name(var, name)
        mem._cache[key] = var
        mem.coop_shared_bytes = getattr(mem, "coop_shared_bytes", 0) + elem_bytes * count
    return mem._cache[key]


def _parity_variable(lw) -> int:
    key = ("coop_parity",)
    if key not in lw.mem._cache:
        b = lw.em.b
        lw.mem._cache[key] = b.local_variable(b.type_pointer("Function", lw.em.i32), lw.em.ci(0))
    return lw.mem._cache[key]


class _Tiles:
    """The tiles of an M x N matrix-layout value that this invocation's subgroup owns."""

    def __init__(self, lw, cfg, M: int, N: int):
        subgroup_size = lw.caps.subgroup_size
        em = lw.em
        self.cfg, self.M, self.N = cfg, M, N
        n_sub = lw.W // subgroup_size
        count = (M // cfg.m) * (N // cfg.n)
        self.cols = N // cfg.n
        if n_sub == 1:
            self.index = [em.ci(t) for t in range(count)]
        else:       # uniform per subgroup: tile s + j*S
            sgid = em.op("OpSDiv", em.i32, lw.lane, em.ci(subgroup_size))
            self.index = [em.iadd(sgid, em.ci(j * n_sub)) for j in range(count // n_sub)]

    def offset(self, em, t):
        """Element offset of tile t's first element in the row-major M x N matrix."""
        r0, c0 = self.row_col(em, t)
        return em.iadd(em.imul(r0, em.ci(self.N)), c0)

    def row_col(self, em, t):
        """(first row, first column) of tile t, as i32 ids."""
        ti = em.op("OpSDiv", em.i32, t, em.ci(self.cols))
        tj = em.op("OpSMod", em.i32, t, em.ci(self.cols))
        return em.imul(ti, em.ci(self.cfg.m)), em.imul(tj, em.ci(self.cfg.n))


def tile_type(em, cfg, elem: T.DType) -> int:
    return em.b.type_cooperative_matrix_khr(em.type_of(elem), "Subgroup", cfg.m, cfg.n,
                                            "MatrixAccumulatorKHR")


def _stage(lw, var, ptr_t, numel, regs, src_dt, dst_dt, base=None):
    """Write a blocked tile into a row-major shared array at element `base` (an i32 id or
    None for 0).  Lanes past the end of the tile write nothing: parking their write on a real
    element would race with the lane that owns it."""
    em = lw.em
    for q, reg in enumerate(regs):
        valid = lw.valid(numel, q)
        idx = lw.flat(q, numel)
        if base is not None:
            idx = em.iadd(idx, base)
        value = to_memory(em, reg if src_dt == dst_dt else lw.convert(reg, src_dt, dst_dt), dst_dt)
        if valid is None:
            em.op("OpStore", None, em.op("OpAccessChain", ptr_t, var, idx), value)
        else:
            with em.if_then(valid):
                em.op("OpStore", None, em.op("OpAccessChain", ptr_t, var, idx), value)


def to_matrix(lw, lv: LV, ty: T.TileType, cfg) -> CoopValue:
    """A blocked (or splat) M x N value in matrix layout."""
    em, mem = lw.em, lw.mem
    _enable(em)
    M, N = ty.shape
    elem = ty.elem
    tc = tile_type(em, cfg, elem)
    if lv.coop is not None and same_layout(lv.coop.cfg, cfg):
        return lv.coop
    tiles = _Tiles(lw, cfg, M, N)
    if len(set(lv.regs)) == 1:          # a splat (sl.zeros, sl.full): every element the same
        return CoopValue(cfg, tc, [em.op("OpCompositeConstruct", tc, lv.regs[0]) for _ in tiles.index])
    ct = em.type_of(elem)
    c_sh = _shared_array(mem, "coop_c", ct, M * N)
    pc = em.b.type_pointer("Workgroup", ct)
    em.barrier()
    _stage(lw, c_sh, pc, M * N, lv.regs, elem, elem)
    em.barrier()
    ids = []
    for t in tiles.index:
        ptr = em.op("OpAccessChain", pc, c_sh, tiles.offset(em, t))
        ids.append(em.op("OpCooperativeMatrixLoadKHR", tc, ptr, em.cu(ROW_MAJOR), em.cu(N)))
    return CoopValue(cfg, tc, ids)


def to_blocked(lw, cv: CoopValue, ty: T.TileType) -> list[int]:
    """This lane's registers of a matrix-layout value (through shared memory)."""
    em, mem = lw.em, lw.mem
    M, N = ty.shape
    ct = em.type_of(ty.elem)
    c_sh = _shared_array(mem, "coop_c", ct, M * N)
    pc = em.b.type_pointer("Workgroup", ct)
    tiles = _Tiles(lw, cv.cfg, M, N)
    em.barrier()
    for t, c in zip(tiles.index, cv.ids):
        ptr = em.op("OpAccessChain", pc, c_sh, tiles.offset(em, t))
        em.op("OpCooperativeMatrixStoreKHR", None, ptr, c, em.cu(ROW_MAJOR), em.cu(N))
    em.barrier()
    out = []
    for r in range(lw.nregs(ty)):
        idx = lw.flat_or_zero(r, M * N)
        out.append(em.op("OpLoad", ct, em.op("OpAccessChain", pc, c_sh, idx)))
    return out


def by_components(lw, in_elem: T.DType, out_elem: T.DType, tc_in: int, tc_out: int, args, kinds,
                  scalar_fn) -> int:
    """A tile of type tc_out whose components are scalar_fn(the args' same-index components):
    a loop over this invocation's components (OpCooperativeMatrixLengthKHR, access chains
    into Function variables).  Exact for position-independent functions of matrices of one
    type, whose components pair index by index.  `kinds[i] == "uniform"`: args[i] is a scalar
    passed as it is."""
    em = lw.em
    b = em.b
    ct_in, ct_out = em.type_of(in_elem), em.type_of(out_elem)
    p_in, p_out = b.type_pointer("Function", ct_in), b.type_pointer("Function", ct_out)
    vars_ = []
    for a, kind in zip(args, kinds):
        if kind == "uniform":
            vars_.append(None)
        else:
            var = em.local_var(tc_in)
            em.store_var(var, a)
            vars_.append(var)
    out_var = em.local_var(tc_out)
    length = em.op("OpBitcast", em.i32, em.op("OpCooperativeMatrixLengthKHR", em.u32, tc_in))

    def body(i):
        xs = [em.op("OpLoad", ct_in, em.op("OpAccessChain", p_in, var, i)) if var is not None else a
              for var, a in zip(vars_, args)]
        em.op("OpStore", None, em.op("OpAccessChain", p_out, out_var, i), scalar_fn(*xs))

    with lw.scope():
        em.counted_loop(length, body)
    return em.load_var(tc_out, out_var)
