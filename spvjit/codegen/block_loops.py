"""`dot` on big tiles as a loop over k, so its code does not grow with K.

The unrolled lowering of `dot` (reduce.py) emits every multiply-add of every register:
M*N*K/W of them per lane, 32,768 for a 64x64x64 f32 dot on lavapipe (W = 8), which took
lavapipe minutes and gigabytes to compile.  Above `Target.dot_unroll_limit` multiply-adds per
lane, and from a quarter of it where the loop reads both operands itself (looped_dots), a dot
whose layouts allow it becomes one loop over k instead, its body a fixed sequence over the
accumulator's vec4 register blocks:

    A and B read by the loop itself where they are affine loads (dot_operands.py), else
    A staged in shared memory (A[i, k] at word i*K + k; an f16 A as packed halves, two rows
    per uvec4, staged_pairs.py), B in a Function-storage array of vec4
    acc[c] (vec4, c over C's register blocks) <- C's registers
    for k in 0, U, 2U, ... < K:                (U copies of the step per trip: W where W | K,
                                                on CPU drivers while the body stays small)
        for each block c (row i = c // R, column block cb = c % R):
            acc[c] += A[i, k] * B_blocks[k*R + cb]

The condition is that C's rows span whole vec4 blocks of every lane, N % (4W) == 0 (R = N/4W
blocks per row): then register block c of every lane lies in row c // R, so A[i, k] is one
uniform shared-memory word, and the B elements the block needs (row k, the same columns) are
block k*R + c % R of B *in the same lane* (B's layout has the same period), read from the
Function array with a uniform index.  Narrower rows (N < 4W: a block spans P = 4W/N rows, one
per group of N/4 lanes) loop too, with A read per lane and B only from memory (_RowGroups).
The accumulators stay SSA values (loop phis), so the loop adds no memory traffic for them.
Code size: one multiply-add per register block per copy of the step, M*N/(4W)*U, instead of
M*N*K/W.

Loop-header visits (lavapipe before Mesa 26 counts them against a per-invocation budget, see
loop_budget.py): K/U per dot, the loop being rotated (phi_loop), counted as K/U + 1, an upper
bound; `dot_forms.extra_visits` tells loop_budget's counters, and where the kernel carries the
hidden status buffer the loop checks at its exit that it ran to the end.
"""
from __future__ import annotations

from ..ir import types as T
from .dot_loop_plan import dot_copies, dot_shape, plan_dot_reads, rows_per_block
from .loop_status import status_binding
from . import dot_operands, dot_reader, staged_pairs, subgroup
from .values import LV

def is_looped(lw, op) -> bool:
    """Whether the lowering makes `op` (a dot, not on cooperative matrices) a loop over k:
    the set plan_dot_reads computed once (looped_dots without the coopmat dots)."""
    return analysis(lw).looped(op)


def analysis(lw) -> dot_operands.Analysis:
    """Which loads the kernel's looped dots read themselves (compiler.py plans it before
    lowering; found here on first use where a caller did not)."""
    if getattr(lw, "dot_reads", None) is None:
        lw.dot_reads = plan_dot_reads(lw.kernel, lw.W, lw.caps, lw.coop_plan.dots, lw.vectorize)
    return lw.dot_reads


def unused(lw) -> set[int]:
    """Ops (ids) not to lower: their values only fed the masks of loads a looped dot reads."""
    return analysis(lw).unused


def trans_read_by_dot(lw, op) -> bool:
    """A trans of a load that looped dots read themselves: they read it transposed."""
    return _skip(lw, op, analysis(lw).transposes, "read transposed by the dot's k loop (no registers)")


def read_by_dot(lw, op) -> bool:
    """A load that only feeds looped dots: the dots load its elements themselves (dot_operands.py)."""
    return _skip(lw, op, analysis(lw).fused, "read by the dot's k loop (no registers)")


def _skip(lw, op, ids, why: str) -> bool:
    """Leave `op` unlowered (no registers) where its id is in `ids`."""
    if id(op) not in ids:
        return False
    lw.note(op, why)
    lw.bind(op, LV(None, False))
    return True


def lower_dot_looped(lw, op):
    em, mem, W = lw.em, lw.mem, lw.W
    M, N, K = dot_shape(op)
    a_t, c_t = op.operands[0].type, op.operands[2].type
    a, b, acc = (lw.get(v) for v in op.operands)
    in_dt, out_dt = a_t.elem, c_t.elem
    work = T.f32 if out_dt.is_float else T.i32        # products formed in the accumulator's width
    wt = em.type_of(work)
    v4 = em.b.type_vector(wt, 4)
    R = max(1, N // (4 * W))          # vec4 register blocks per row of C (and of B)
    P = rows_per_block(N, W)         # rows per block: 1, or 4W/N where a row spans N/4 lanes
    rows = _RowGroups(em, lw.lane, P, N)
    an = analysis(lw)
    a_load = an.operand_load(op, 0)
    U = dot_copies(op, W, lw.caps, an)
    b_read = an.operand_read(op, 1)
    b_load, b_transposed = b_read if b_read else (None, False)
    a_mode = "shared"
    if a_load is not None:
        ra = dot_reader.Reader(lw, an, a_load, 1, work)
        if U % 4 == 0 and ra.a_vec4_ok():
            a_mode = "vec4"           # A[i, k..k+3] is one fetch at a uniform address
        elif U == W and lw.sg.get("whole") and P == 1:
            a_mode = "lane"           # one element per lane, then subgroup broadcasts
        else:
            a_mode = "element"        # one load at a uniform address per element
    elif P > 1 and _shuffles_a(lw, M, K, U):
        a_mode = "shuffle"            # a computed A stays in its registers (_shuffled_a)
    lw.note(op, f"loop over k ({K // U} trips of {U} steps), vec4 register blocks; "
                + {"vec4": "A read as vec4 in the loop", "lane": "A read by lane and broadcast",
                   "element": "A loaded in the loop", "shared": "A in shared memory",
                   "shuffle": "A exchanged by subgroup shuffles"}[a_mode] + ", "
                + ("B loaded in the loop" + (" through trans" if b_transposed else "") if b_load
                   else "B in a Function array"))

    if a_load is not None:
        bases = rows.pointers(ra.row_bases(M, K))
        steps = {}                    # per trip: what all rows share, and what each row loaded

        def a_at(i, k, u, ku):
            """A[row i, k + u] (k the trip's first step, ku = k + u as an id; i a row, or with
            P > 1 a group of P rows, the lane's own among them)."""
            if a_mode == "vec4":
                g = u // 4
                if (k, g) not in steps:
                    kg = k if g == 0 else em.iadd(k, em.ci(4 * g))
                    steps[(k, g)] = (kg, ra.a_step(kg, K))
                if (k, g, i) not in steps:
                    kg, shared = steps[(k, g)]
                    steps[(k, g, i)] = ra.a_vec4(bases[i], lambda: rows.offset(i, K), kg, shared)
                return steps[(k, g, i)][u % 4]
            if a_mode == "lane":
                if k not in steps:
                    steps[k] = ra.a_lane_step(k)
                if (k, i) not in steps:
                    steps[(k, i)] = ra.a_lane_element(bases[i], lambda: rows.offset(i, K), k, steps[k])
                return subgroup.broadcast(lw, work, steps[(k, i)], u)
            if ku not in steps:
                steps[ku] = ra.a_step(ku, K)
            return ra.a_element(bases[i], lambda: rows.offset(i, K), ku, steps[ku])
    elif a_mode == "shuffle":
        a_at = _shuffled_a(lw, a.regs, in_dt, work, rows, K)
    elif P == 1 and staged_pairs.applies(lw, a_t, U):   # f16 A -> shared memory as packed halves
        lw.note(op, "A in shared memory as f16 pairs, two rows and 4 steps per uvec4")
        em.barrier()
        staged_pairs.store(lw, a.regs, M, K)
        em.barrier()
        pairs = staged_pairs.Reader(lw, M)

        def a_at(i, k, u, ku):
            return pairs.at(i, k, u)
    else:                             # A -> shared memory, word i*K + k (its flat index)
        if not (K % 4 or U % 4):
            lw.note(op, "A read from shared memory 4 steps per uvec4")
        em.barrier()                  # uvec4 stores where A's layout is v=4 (memory.store_tile)
        mem.store_tile(lw, [lw.convert(reg, in_dt, work) for reg in a.regs], M * K, work, 0)
        em.barrier()
        quads = {}

        def a_at(i, k, u, ku):
            if K % 4 or U % 4:
                return mem.from_word(mem.scratch_load(em.iadd(ku, rows.offset(i, K))), work)
            # a trip starts at a multiple of U, so A[i, k+4g .. k+4g+3] is scratch quad
            # i*K/4 + k/4 + g: one uvec4 load (at a uniform address where P == 1) for 4 steps
            g = u // 4
            if k not in quads:
                quads[k] = em.op("OpShiftRightArithmetic", em.i32, k, em.ci(2))
            if (k, i, g) not in quads:
                if P == 1:
                    const = i * (K // 4) + g
                    quad = quads[k] if const == 0 else em.iadd(quads[k], em.ci(const))
                else:
                    quad = em.iadd(quads[k], em.iadd(rows.offset(i, K // 4), em.ci(g)))
                quads[(k, i, g)] = mem.load_values4(quad, work, 0)
            return quads[(k, i, g)][u % 4]

    if b_load is not None:
        rb = dot_reader.Reader(lw, an, b_load, 1 if b_transposed else 0, work, b_transposed, rows.lane_row)
        if rb.vec4 and not b_transposed:
            lw.note(op, "B read as vec4")

        def b_at(cb, k):
            return em.op("OpCompositeConstruct", v4, *rb.b_block(cb, k, N))
    else:                             # B -> Function array of vec4 blocks (the lane's own elements)
        nb = len(b.regs) // 4
        b_var = em.local_var(em.b.type_array(v4, nb))
        ptr_v4 = em.b.type_pointer("Function", v4)
        for blk in range(nb):
            vals = [lw.convert(x, in_dt, work) for x in b.regs[4 * blk:4 * blk + 4]]
            em.store_var(em.op("OpAccessChain", ptr_v4, b_var, em.ci(blk)),
                         em.op("OpCompositeConstruct", v4, *vals))

        def b_at(cb, k):
            idx = em.iadd(em.imul(k, em.ci(R)), em.ci(cb))
            return em.load_var(v4, em.op("OpAccessChain", ptr_v4, b_var, idx))

    nc = len(acc.regs) // 4
    init = [em.op("OpCompositeConstruct", v4, *(lw.convert(x, out_dt, work) for x in acc.regs[4 * c:4 * c + 4]))
            for c in range(nc)]

    def body(k, accs):
        # Block-major: each accumulator block takes its U multiply-adds in a row (the same
        # order of additions per element as U sequential steps), so a CPU driver keeps one
        # block in registers at a time instead of spilling every block once per step.
        ks = [k if u == 0 else em.iadd(k, em.ci(u)) for u in range(U)]
        b_blocks = [[b_at(cb, ks[u]) for cb in range(R)] for u in range(U)]
        out = list(accs)
        for i in range(M // P):       # rows (P == 1), else groups of P rows, one per lane
            avs = [a_at(i, k, u, ks[u]) for u in range(U)]
            for cb in range(R):
                c = i * R + cb
                v = out[c]
                for u in range(U):
                    if work.is_float:
                        v = em.op("OpFAdd", v4, v, em.op("OpVectorTimesScalar", v4, b_blocks[u][cb], avs[u]))
                    else:
                        splat = em.op("OpCompositeConstruct", v4, avs[u], avs[u], avs[u], avs[u])
                        v = em.op("OpIAdd", v4, v, em.op("OpIMul", v4, splat, b_blocks[u][cb]))
                out[c] = v
        return out

    with lw.scope():                  # ids first emitted in the loop do not dominate what follows
        final, k_out = phi_loop(em, K, U, v4, init, body)
    if status_binding(mem) is not None:
        _check_exit(lw, k_out, K)
    out = []
    for c in range(nc):
        for e in range(4):
            out.append(lw.convert(em.op("OpCompositeExtract", wt, final[c], e), work, out_dt))
    lw.bind(op, LV(out, False))


SHUFFLES_BEFORE_MESA = (26, 0)
     # llvmpipe versions below this take a narrow dot's A by shuffles: Mesa 22.3 compiled
     # tutorial 06's dK/dV at 32x128 in 44 s with them against 68 s staged, Mesa 26.1 in 85 s
     # against 30 s (its shared-memory accesses are cheap, its shuffles are not)


def _shuffles_a(lw, M: int, K: int, U: int) -> bool:
    """Whether a narrow dot's computed A reaches the lanes that need it by subgroup shuffles
    instead of shared memory: on llvmpipe before SHUFFLES_BEFORE_MESA, where the workgroup is
    one subgroup that shuffles, A's layout holds A[r, c..c+3] (c % 4 == 0) in one lane as a
    vec4 register block, and a trip's steps (a multiple of 4) stay within one block of 4W
    elements (K divides 4W)."""
    W, target = lw.W, lw.caps
    mesa = target.mesa_version
    return bool(target.cpu and mesa is not None and mesa < SHUFFLES_BEFORE_MESA
                and lw.sg.get("whole") and lw.sg.get("shuffle") and lw.vec(M * K) == 4
                and U % 4 == 0 and (4 * W) % K == 0)


def _shuffled_a(lw, regs: list[int], in_dt, work, rows: _RowGroups, K: int):
    """a_at for a narrow dot's A held in the registers of its own layout (layout.flat_np,
    v = 4): A[r, k+u] (k a trip's first step, a multiple of 4) is register
    4*(r*K // 4W) + u % 4 of lane ((r*K) % 4W)/4 + k/4 + u//4, since K divides 4W.  Lane l
    needs row i*P + lane_row of group i: one shuffle per row of the group, and a select of
    its own.  lavapipe 22.3 turns each shuffle into a loop over the lanes without branches,
    each per-lane shared-memory access into a loop with an `if` per lane: tutorial 06's dK/dV
    at 32x128 blocks compiled in 49 s of driver CPU instead of 73, its 32x32 kernels in 6-8 s
    instead of 8-12 (docs/PERFORMANCE.md)."""
    em, W, P = lw.em, lw.W, rows.P
    wt = em.type_of(work)
    vals = [lw.convert(r, in_dt, work) for r in regs]
    lanes = {}

    def source_lane(k: int, first: int) -> int:
        """id of k/4 + first (k the trip's first step)."""
        if k not in lanes:
            lanes[k] = em.op("OpShiftRightArithmetic", em.i32, k, em.ci(2))
        if (k, first) not in lanes:
            lanes[(k, first)] = lanes[k] if first == 0 else em.iadd(lanes[k], em.ci(first))
        return lanes[(k, first)]

    def a_at(i, k, u, ku):
        per_row = [subgroup.shuffle(lw, work, vals[4 * (r * K // (4 * W)) + u % 4],
                                    source_lane(k, (r * K) % (4 * W) // 4 + u // 4))
                   for r in range(i * P, (i + 1) * P)]
        return rows.own(per_row, wt)
    return a_at


class _RowGroups:
    """Which row of A a lane's C register block i needs.  Where C's rows span whole vec4
    blocks of every lane (P == 1) block row i is the same in every lane: A[i, k] is one
    uniform value.  Where a row is narrower (N < 4W: N/4 lanes per row, P = 4W/N rows per
    block) lane l's block i lies in row i*P + l // (N/4), and A is read per lane."""

    def __init__(self, em, lane: int, P: int, N: int):
        self.em, self.P = em, P
        self.lane_row = (em.op("OpShiftRightLogical", em.i32, lane, em.ci((N // 4).bit_length() - 1))
                         if P > 1 else None)
        # emitted here, before the k loop, for own(): lane_row == j for j = 1 .. P-1
        self._is_row = [em.op("OpIEqual", em.bool, self.lane_row, em.ci(j)) for j in range(1, P)]
        self._offsets = {}

    def offset(self, i: int, scale: int) -> int:
        """id of (block i's row in this lane) * scale."""
        em = self.em
        if self.P == 1:
            return em.ci(i * scale)
        if (i, scale) not in self._offsets:
            self._offsets[(i, scale)] = em.iadd(em.ci(i * self.P * scale), em.imul(self.lane_row, em.ci(scale)))
        return self._offsets[(i, scale)]

    def own(self, values: list[int], type_id: int) -> int:
        """Of P values, one per row of a register block, the one of this lane's row."""
        v = values[0]
        for j, cond in enumerate(self._is_row, start=1):
            v = self.em.select(type_id, cond, values[j], v)
        return v

    def pointers(self, per_row: list[int]) -> list[int]:
        """Per block: the uniform per-row values (A's row pointers) chosen for this lane's row."""
        if self.P == 1:
            return per_row
        P = self.P
        return [self.own(per_row[i * P:(i + 1) * P], self.em.i32) for i in range(len(per_row) // P)]


def phi_loop(em, count: int, step: int, value_type: int, inits: list[int], body):
    """for (k = 0; k < count; k += step) values = body(k, values), the values carried as OpPhis
    (registers, not memory), `count` a positive multiple of `step`.  Returns (the values after
    the loop, k after the loop).

    The loop is rotated (a do-while): the body runs first and the back edge tests k + step <
    count, since a dot's loop always takes at least one trip.  With the test in the header,
    llvmpipe (Mesa 22.3) carried each OpPhi through extra masked copies: a trip of the
    tutorial matmul's 64x64x32 dot was 17,202 instructions of machine code, 2,049 of them
    blends and 5,396 stack moves; rotated it is 14,067, with 1,170 blends and 3,267 moves,
    and the matmul runs 25% faster (docs/PERFORMANCE.md)."""
    assert count >= step > 0 and count % step == 0, (count, step)
    b = em.b
    header, body_l, cont, merge = (b.new_id() for _ in range(4))
    pre = b.current_label
    em.op("OpBranch", None, header)
    b.label(header)
    k, k_next = b.new_id(), b.new_id()
    b.emit_with_id("OpPhi", em.i32, k, em.ci(0), pre, k_next, cont)
    phis = [b.new_id() for _ in inits]
    nexts = [b.new_id() for _ in inits]
    for p, init, n in zip(phis, inits, nexts):
        b.emit_with_id("OpPhi", value_type, p, init, pre, n, cont)
    em.op("OpLoopMerge", None, merge, cont, 0)
    em.op("OpBranch", None, body_l)
    b.label(body_l)
    new = body(k, phis)
    em.op("OpBranch", None, cont)
    b.label(cont)
    for n, v in zip(nexts, new):
        b.emit_with_id("OpCopyObject", value_type, n, v)
    b.emit_with_id("OpIAdd", em.i32, k_next, k, em.ci(step))
    em.op("OpBranchConditional", None, em.ilt(k_next, em.ci(count)), header, merge)
    b.label(merge)
    return nexts, k_next


def _check_exit(lw, k_out: int, K: int):
    """The driver's loop limiter is the only thing that ends the loop before K: report it
    through the hidden status buffer, as loop_budget's exit checks do for the kernel's loops."""
    em, mem = lw.em, lw.mem
    bd = status_binding(mem)
    with em.if_then(em.ilt(k_out, em.ci(K))):
        mem.store_elem(bd, em.ci(0), em.ci(1))

