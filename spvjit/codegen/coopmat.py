"""`dot` on cooperative matrices (VK_KHR_cooperative_matrix), where the device has them.

Chosen only when the device reports a configuration (M, N, K granules, A/B/C/result types,
subgroup scope) that tiles the dot exactly; SPVJIT_DISABLE_COOPMAT=1 turns it off.

Matrix layout of an M x N accumulator: T = (M/m)*(N/n) tiles of m x n; with S subgroups in
the workgroup, subgroup s owns tiles s, s+S, s+2S, ... (T % S == 0), so such a value is T/S
cooperative-matrix ids per invocation, uniform within each subgroup.  A value stays in this
layout while only coopmat-aware ops use it: the accumulator operand of another coopmat `dot`,
and the carried values of a `for` loop whose body yields a coopmat `dot` result.  So a K loop
`acc = sl.dot(a, b, acc)` keeps `acc` in matrix registers across iterations; the value is
converted to the blocked layout (through shared memory) once, where the program uses it
elementwise or stores it.  A and B are staged through shared memory in row-major order.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import knobs
from ..ir import types as T
from . import coopmat2, coopmat_epilogue, coopmat_operands
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


def shared_budget(caps) -> int:
    """Shared memory the coopmat arrays may take; the rest stays for reductions and moves."""
    return caps.max_shared_memory * 3 // 4


def _staging_bytes(a_t, b_t, double: bool) -> int:
    """A and B staging (twice when double-buffered) plus the f32-sized C conversion array."""
    (M, K), N = a_t.shape, b_t.shape[1]
    return (2 if double else 1) * a_t.elem.bits // 8 * (M * K + K * N) + 4 * M * N


def find_config(caps, w: int, a_t, b_t, c_t):
    if knobs.get("SPVJIT_DISABLE_COOPMAT"):
        return None
    M, K = a_t.shape
    N = b_t.shape[1]
    sg = caps.subgroup_size
    if not sg or w % sg:
        return None                       # every subgroup must be full
    in_name = _OPERAND_TYPES.get(a_t.elem.name)
    if in_name is None or b_t.elem.name != a_t.elem.name:
        return None
    if c_t.elem.name not in ("f32", "f16", "i32", "u32"):
        return None                       # (registers hold bf16 as f32: no bf16 accumulators)
    if _staging_bytes(a_t, b_t, double=False) > shared_budget(caps):
        return None
    flexible = coopmat2.find_flexible(caps, w, M, N, K, in_name, c_t.elem.name)   # VK_NV_cooperative_matrix2
    if flexible is not None:
        return flexible
    best = None
    for c in caps.cooperative_matrix:
        if c.scope != "subgroup" or c.saturating:
            continue
        if (c.a_type, c.b_type) != (in_name, in_name):
            continue
        if c.c_type != c_t.elem.name or c.result_type != c_t.elem.name:
            continue
        if M % c.m or N % c.n or K % c.k:
            continue
        tiles = (M // c.m) * (N // c.n)
        if tiles % (w // sg):
            continue                      # every subgroup owns the same number of tiles
        if best is None or c.m * c.n * c.k > best.m * best.n * best.k:
            best = c
    return best


def same_layout(a, b) -> bool:
    """Matrix layout depends only on the tile shape: values of configurations with equal m x n
    (an i8 dot's i32 result and an f32 accumulator) combine tile by tile."""
    return a is not None and b is not None and (a.m, a.n) == (b.m, b.n)


class Plan:
    """Which values of a kernel live in matrix layout, and which of them also need the
    blocked layout (some use is not coopmat-aware)."""

    def __init__(self, kernel, caps, w: int, axis: dict | None = None):
        self.dots: dict[int, object] = {}          # id(dot op) -> config
        self.direct: dict[int, object] = {}        # id(load op) -> Strided: read by the dot itself
        self.direct_operands: dict[tuple, object] = {}   # (id(dot), 0 | 1) -> that load op
        self.storage_params: set[int] = set()      # pointer params those loads need as storage buffers
        self._reset()
        self.blocked_uses: set[int] = set()        # values with a use that needs registers
        if caps is None:
            return
        for op in kernel.walk():
            if op.name == "dot":
                cfg = find_config(caps, w, *(v.type for v in op.operands))
                if cfg is not None:
                    self.dots[id(op)] = cfg
        # Loop-carried positions: optimistically every 2-D carried value of a loop with a coopmat
        # dot of its shape (the accumulator of `acc = dot(a, b, acc)`, but also of
        # `acc += dot(a, b).to(f32) * scale`), then drop those whose yielded value did not
        # end up in matrix layout, until none is dropped.
        candidates = self._loop_candidates(kernel)
        while True:
            self._reset()
            self._plan(kernel, caps, axis or {}, candidates)
            dropped = False
            for op in kernel.walk():
                for p, cfg in list(candidates.get(id(op), {}).items()):
                    y = op.regions[0].terminator.operands[p]
                    if not same_layout(self.matrix.get(id(y)), cfg):
                        del candidates[id(op)][p]
                        dropped = True
            if not dropped:
                break
        coopmat_operands.plan(self, kernel, caps, w, axis or {})
        for op in kernel.walk():
            for i, v in enumerate(op.operands):
                if id(v) in self.matrix and not self._matrix_use(op, i, v):
                    self.blocked_uses.add(id(v))

    def _reset(self):
        self.epilogue: dict[int, tuple] = {}       # id(elementwise op) -> (config, operand kinds)
        self.stores: dict[int, object] = {}        # id(store op) -> config of the stored value
        self.store_layout: dict[int, object] = {}  # id(store op) -> coopmat_affine.Strided or None
        self.carried: dict[int, dict] = {}         # id(for op) -> {position: config}
        self.matrix: dict[int, object] = {}        # id(value) -> config
        self.loop_of_yield: dict[int, object] = {}  # id(yield op) -> its for op

    def _loop_candidates(self, kernel) -> dict[int, dict]:
        out: dict[int, dict] = {}
        for op in kernel.walk():
            if op.name != "for" or op.regions[0].terminator is None:
                continue
            body = op.regions[0]
            term = body.terminator
            if term.name != "yield":
                continue
            dots = [d for d in body.walk() if id(d) in self.dots]
            positions = {}
            for p, y in enumerate(term.operands):
                if y.type != op.results[p].type or len(y.type.shape) != 2:
                    continue
                owner = y.owner
                if owner is not None and id(owner) in self.dots:
                    positions[p] = self.dots[id(owner)]
                    continue
                same = [self.dots[id(d)] for d in dots if d.result.type.shape == y.type.shape]
                if same and y.type.elem.name in ("f32", "f16", "i32", "u32"):
                    positions[p] = same[0]
            if positions:
                out[id(op)] = positions
        return out

    def _plan(self, kernel, caps, axis, candidates):
        for op in kernel.walk():
            if id(op) in self.dots:
                self.matrix[id(op.result)] = self.dots[id(op)]
        for op in kernel.walk():
            positions = candidates.get(id(op))
            if not positions:
                continue
            body = op.regions[0]
            for p, cfg in positions.items():
                self.matrix[id(op.results[p])] = cfg
                self.matrix[id(body.args[1 + p])] = cfg
            self.carried[id(op)] = dict(positions)
            self.loop_of_yield[id(body.terminator)] = op
        coopmat_epilogue.plan(self, kernel, caps, axis)

    def _matrix_use(self, op, i: int, v) -> bool:
        cfg = self.matrix[id(v)]
        if op.name == "dot":
            return i == 2 and same_layout(self.dots.get(id(op)), cfg)
        if op.name == "for":
            return same_layout(self.carried.get(id(op), {}).get(i - 3), cfg)
        if op.name == "yield" and id(op) in self.loop_of_yield:
            return same_layout(self.carried[id(self.loop_of_yield[id(op)])].get(i), cfg)
        if id(op) in self.epilogue:
            return self.epilogue[id(op)][1][i] == "matrix"
        if op.name == "store":
            return i == 1 and id(op) in self.stores
        return False

    def needs_blocked(self, value) -> bool:
        return id(value) in self.blocked_uses


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
        valid = lw.valid(M * N, r)
        idx = lw.flat(r, M * N)
        if valid is not None:
            idx = em.select(em.i32, valid, idx, em.ci(0))
        out.append(em.op("OpLoad", ct, em.op("OpAccessChain", pc, c_sh, idx)))
    return out


def lower_dot_coopmat(lw, op, cfg):
    em, mem = lw.em, lw.mem
    _enable(em)
    a_t, b_t, c_t = (v.type for v in op.operands)
    M, K = a_t.shape
    N = b_t.shape[1]
    a, b = lw.get(op.operands[0]), lw.get(op.operands[1])
    acc = to_matrix(lw, lw.get(op.operands[2]), c_t, cfg)
    in_dt = a_t.elem
    it = memory_type(em, in_dt)
    ta = em.b.type_cooperative_matrix_khr(operand_type(em, in_dt), "Subgroup", cfg.m, cfg.k, "MatrixAKHR")
    tb = em.b.type_cooperative_matrix_khr(operand_type(em, in_dt), "Subgroup", cfg.k, cfg.n, "MatrixBKHR")
    direct = [lw.coop_plan.direct_operands.get((id(op), i)) for i in (0, 1)]
    direct = [None if ld is None else
              coopmat_operands.DirectOperand(lw, ld, lw.coop_plan.direct[id(ld)], use, t, rows, cols)
              for ld, use, t, rows, cols in zip(direct, "ab", (ta, tb), (cfg.m, cfg.k), (cfg.k, cfg.n))]
    staged = [d is None for d in direct]
    # Double-buffered staging where shared memory allows: consecutive coopmat dots (the K
    # loop) alternate between two halves, so one barrier per dot suffices, because a write to
    # a half is always separated from the last reads of that half by another dot's barrier.
    # The parity is one Function variable shared by every dot of the kernel, so the argument
    # holds across dot sites too.  Otherwise one buffer, and a barrier before writing it.
    double = _staging_bytes(a_t, b_t, double=True) <= shared_budget(lw.caps)
    halves = 2 if double else 1
    pin = em.b.type_pointer("Workgroup", it)
    a_sh = _shared_array(mem, "coop_a", it, halves * M * K, in_dt.bits // 8) if staged[0] else None
    b_sh = _shared_array(mem, "coop_b", it, halves * K * N, in_dt.bits // 8) if staged[1] else None
    a_base = b_base = em.ci(0)
    if any(staged):
        if double:
            parity_var = _parity_variable(lw)
            parity = em.load_var(em.i32, parity_var)
            em.store_var(parity_var, em.op("OpISub", em.i32, em.ci(1), parity))
            a_base, b_base = em.imul(parity, em.ci(M * K)), em.imul(parity, em.ci(K * N))
        else:
            em.barrier()
        if staged[0]:
            _stage(lw, a_sh, pin, M * K, a.regs, in_dt, in_dt, a_base)
        if staged[1]:
            _stage(lw, b_sh, pin, K * N, b.regs, in_dt, in_dt, b_base)
        em.barrier()
    how = {(True, True): "A/B staged", (False, True): "A from memory, B staged",
           (True, False): "A staged, B from memory", (False, False): "A/B from memory"}[tuple(staged)]
    lw.note(op, how + (" (double-buffered)" if any(staged) and double else "") + ", " + coopmat2.describe(cfg))

    layout = em.cu(ROW_MAJOR)
    tiles = _Tiles(lw, cfg, M, N)
    # signed operands must say so: the component types alone do not carry signedness
    operands = ["MatrixASignedComponentsKHR|MatrixBSignedComponentsKHR|MatrixCSignedComponentsKHR|"
                "MatrixResultSignedComponentsKHR"] if in_dt.name == "i8" else []

    def mma(by_elements: bool):
        out = []
        for t, c in zip(tiles.index, acc.ids):
            r0, c0 = tiles.row_col(em, t)
            for tk in range(K // cfg.k):
                kk = em.ci(tk * cfg.k)
                if direct[0] is not None:
                    am = (direct[0].load_by_elements if by_elements else direct[0].load)(r0, kk)
                else:
                    a_off = em.iadd(a_base, em.iadd(em.imul(r0, em.ci(K)), kk))
                    am = em.op("OpCooperativeMatrixLoadKHR", ta, em.op("OpAccessChain", pin, a_sh, a_off), layout,
                               em.cu(K))
                if direct[1] is not None:
                    bm = (direct[1].load_by_elements if by_elements else direct[1].load)(kk, c0)
                else:
                    b_off = em.iadd(b_base, em.iadd(em.ci(tk * cfg.k * N), c0))
                    bm = em.op("OpCooperativeMatrixLoadKHR", tb, em.op("OpAccessChain", pin, b_sh, b_off), layout,
                               em.cu(N))
                c = em.op("OpCooperativeMatrixMulAddKHR", acc.tile_type, am, bm, c, *operands)
            out.append(c)
        return out

    checks = [d.check for d in direct if d is not None and d.check is not None]
    if not checks:
        out = mma(by_elements=False)
    else:       # a runtime stride: direct loads need it >= 0 (Vulkan); else gather by elements
        ok = checks[0] if len(checks) == 1 else em.land(*checks)
        vars_ = [em.local_var(acc.tile_type) for _ in acc.ids]

        def branch(by_elements):
            for var, c in zip(vars_, mma(by_elements)):
                em.store_var(var, c)
        coopmat_epilogue._if_else(em, lw, ok, lambda: branch(False), lambda: branch(True))
        out = [em.load_var(acc.tile_type, var) for var in vars_]
    cv = CoopValue(cfg, acc.tile_type, out)
    regs = to_blocked(lw, cv, c_t) if lw.coop_plan.needs_blocked(op.result) else None
    lw.bind(op, LV(regs, False, coop=cv))
