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

from .. import knobs
from . import coopmat2, coopmat2_functions, coopmat_epilogue, coopmat_operands
from .coopmat_values import (_OPERAND_TYPES, ROW_MAJOR, CoopValue, _enable, _parity_variable,
                             _shared_array, _stage, _Tiles, memory_type, operand_type, same_layout,
                             to_blocked, to_matrix)
from .values import LV


def shared_budget(caps) -> int:
    """Shared memory the coopmat arrays may take; the rest stays for reductions and moves."""
    return caps.max_shared_memory * 3 // 4


def _staging_bytes(a_t, b_t, double: bool) -> int:
    """A and B staging (twice when double-buffered) plus the f32-sized C conversion array."""
    (M, K), N = a_t.shape, b_t.shape[1]
    return (2 if double else 1) * a_t.elem.bits // 8 * (M * K + K * N) + 4 * M * N


def find_config(caps, w: int, a_t, b_t, c_t, flexible: bool = True):
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
    if flexible:        # VK_NV_cooperative_matrix2 (flexible=False: the device's own granule shapes)
        tile = coopmat2.find_flexible(caps, w, M, N, K, in_name, c_t.elem.name)
        if tile is not None:
            return tile
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



def _a_from_matrix(p, op, caps) -> bool:
    """The dot's A is a matrix-layout value (`dot(p.to(f16), v)` in attention) whose tiles are
    this dot's A tiles: VK_NV_cooperative_matrix2's conversions turn each accumulator tile into
    an A matrix (OpCooperativeMatrixConvertNV) instead of a trip through shared memory.  Only on
    granule shapes (coopmat2_functions.granule_shape) and with one subgroup per program, which
    then owns every tile of A."""
    v = op.operands[0]
    src, cfg = p.matrix.get(id(v)), p.dots[id(op)]
    if src is None or not coopmat2_functions.reported(caps, "conversions") or p.w != caps.subgroup_size:
        return False
    if not (coopmat2_functions.granule_shape(src) and coopmat2_functions.granule_shape(cfg)):
        return False
    return (src.m, src.n) == (cfg.m, cfg.k) and v.type.elem == op.operands[1].type.elem and \
        _OPERAND_TYPES.get(v.type.elem.name) == cfg.a_type and v.type.elem.name != "bf16"


class Plan:
    """Which values of a kernel live in matrix layout, and which of them also need the
    blocked layout (some use is not coopmat-aware)."""

    def __init__(self, kernel, caps, w: int, axis: dict | None = None):
        self.dots: dict[int, object] = {}          # id(dot op) -> config
        self.direct: dict[int, object] = {}        # id(load op) -> Strided: read by the dot itself
        self.direct_operands: dict[tuple, object] = {}   # (id(dot), 0 | 1) -> that load op
        self.storage_params: set[int] = set()      # pointer params those loads need as storage buffers
        self.w, self.caps = w, caps
        self.a_from_matrix: dict[int, object] = {}   # id(dot) -> config of its matrix-layout A
        self._reset()
        self.blocked_uses: set[int] = set()        # values with a use that needs registers
        if caps is None:
            return
        # A dot whose matrices a reduction would run on (coopmat2_reduce) takes the device's
        # granule shapes instead of flexible ones (the reductions need them), decided by planning
        # once with flexible shapes and, where a reduction asked for granules, once more.
        granule: set = set()
        while True:
            self.dots = {}
            for op in kernel.walk():
                if op.name == "dot":
                    types = [v.type for v in op.operands]
                    cfg = find_config(caps, w, *types)
                    if cfg is not None and cfg in granule:       # (none: keep the flexible tile)
                        cfg = find_config(caps, w, *types, flexible=False) or cfg
                    if cfg is not None:
                        self.dots[id(op)] = cfg
            self._plan_layout(kernel, caps, axis or {})
            if granule or not self.wants_granule:
                break
            granule = set(self.wants_granule)
        coopmat_operands.plan(self, kernel, caps, w, axis or {})
        self._elide_reduced_broadcasts(kernel)
        self.a_from_matrix = {id(op): self.matrix[id(op.operands[0])] for op in kernel.walk()
                              if id(op) in self.dots and _a_from_matrix(self, op, caps)}
        for op in kernel.walk():
            for i, v in enumerate(op.operands):
                if id(v) in self.matrix and not self._matrix_use(op, i, v):
                    self.blocked_uses.add(id(v))
                elif id(v) in self.reduced and id(op) not in self.elided:
                    self.blocked_uses.add(id(v))      # a reduction used as a 1-D blocked value

    def _plan_layout(self, kernel, caps, axis):
        # Loop-carried positions: optimistically every 2-D carried value of a loop with a coopmat
        # dot of its shape (the accumulator of `acc = dot(a, b, acc)`, but also of
        # `acc += dot(a, b).to(f32) * scale`), then drop those whose yielded value did not
        # end up in matrix layout, until none is dropped.
        candidates = self._loop_candidates(kernel)
        while True:
            self._reset()
            self._plan(kernel, caps, axis, candidates)
            dropped = False
            for op in kernel.walk():
                for p, cfg in list(candidates.get(id(op), {}).items()):
                    y = op.regions[0].terminator.operands[p]
                    if not same_layout(self.matrix.get(id(y)), cfg):
                        del candidates[id(op)][p]
                        dropped = True
            if not dropped:
                break

    def _reset(self):
        self.epilogue: dict[int, tuple] = {}       # id(elementwise op) -> (config, operand kinds)
        self.stores: dict[int, object] = {}        # id(store op) -> config of the stored value
        self.store_layout: dict[int, object] = {}  # id(store op) -> coopmat_affine.Strided or None
        self.carried: dict[int, dict] = {}         # id(for op) -> {position: config}
        self.matrix: dict[int, object] = {}        # id(value) -> config
        self.loop_of_yield: dict[int, object] = {}  # id(yield op) -> its for op
        self.reductions: dict[int, tuple] = {}     # id(reduce op) -> (config, tile groups): coopmat2_reduce
        self.reduced: dict[int, object] = {}       # id(result of such a reduce) -> the reduce op
        self.elided: set[int] = set()              # expand_dims / broadcast ops nothing lowers
        self.wants_granule: set = set()            # flexible configs a reduction could not run on

    def _elide_reduced_broadcasts(self, kernel):
        """`m[:, None]` broadcasts of a matrix-layout reduction that only matrix-layout ops use
        (they read the reduced tiles themselves): their expand_dims and broadcast emit nothing."""
        uses: dict[int, list] = {}
        for op in kernel.walk():
            for i, v in enumerate(op.operands):
                uses.setdefault(id(v), []).append((op, i))
        reduced_uses = {(id(op), i) for op in kernel.walk() if id(op) in self.epilogue
                        for i, k in enumerate(self.epilogue[id(op)][1]) if k == "reduced"}
        for op in kernel.walk():
            if op.name == "broadcast" and uses.get(id(op.result)) and \
                    all((id(u), i) in reduced_uses for u, i in uses[id(op.result)]):
                self.elided.add(id(op))
        for op in kernel.walk():
            if op.name in ("expand_dims", "reshape") and id(op.operands[0]) in self.reduced and \
                    uses.get(id(op.result)) and all(id(u) in self.elided for u, _ in uses[id(op.result)]):
                self.elided.add(id(op))

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
            return i == 2 and same_layout(self.dots.get(id(op)), cfg) or i == 0 and id(op) in self.a_from_matrix
        if op.name == "for":
            return same_layout(self.carried.get(id(op), {}).get(i - 3), cfg)
        if op.name == "yield" and id(op) in self.loop_of_yield:
            return same_layout(self.carried[id(self.loop_of_yield[id(op)])].get(i), cfg)
        if id(op) in self.epilogue:
            return self.epilogue[id(op)][1][i] == "matrix"
        if op.name == "store":
            return i == 1 and id(op) in self.stores
        if op.name == "reduce":
            return id(op) in self.reductions
        return False

    def needs_blocked(self, value) -> bool:
        return id(value) in self.blocked_uses



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
    a_tiles = None
    if id(op) in lw.coop_plan.a_from_matrix:     # A's accumulator tiles become A matrices
        coopmat2_functions.enable(em, "CooperativeMatrixConversionsNV")
        a_tiles = [em.op("OpCooperativeMatrixConvertNV", ta, c) for c in a.coop.ids]
    staged = [d is None for d in direct]
    staged[0] = staged[0] and a_tiles is None
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
    if a_tiles is not None:
        how = how.replace("A from memory", "A converted from its accumulator tiles (OpCooperativeMatrixConvertNV)")
    lw.note(op, how + (" (double-buffered)" if any(staged) and double else "") + ", " + coopmat2.describe(cfg))

    layout = em.cu(ROW_MAJOR)
    tiles = _Tiles(lw, cfg, M, N)
    # signed operands must say so: the component types alone do not carry signedness
    operands = ["MatrixASignedComponentsKHR|MatrixBSignedComponentsKHR|MatrixCSignedComponentsKHR|"
                "MatrixResultSignedComponentsKHR"] if in_dt.name == "i8" else []

    def mma(by_elements: bool):
        out = []
        for j, (t, c) in enumerate(zip(tiles.index, acc.ids)):
            r0, c0 = tiles.row_col(em, t)
            for tk in range(K // cfg.k):
                kk = em.ci(tk * cfg.k)
                if a_tiles is not None:         # one subgroup: tile j is tile row j // (N / n)
                    am = a_tiles[(j // (N // cfg.n)) * (K // cfg.k) + tk]
                elif direct[0] is not None:
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
