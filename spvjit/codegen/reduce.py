"""Reductions and `dot` in the blocked layout.

A full reduction first folds each lane's own registers (no data movement),
then combines the W per-lane partials through shared memory.  An axis
reduction and `dot` stage their operands in shared memory and let each lane
compute the outputs it owns.  Correct on every device; the performance work
replaces these with subgroup and register-blocked forms where they win.
"""
from __future__ import annotations

import numpy as np

from ..ir import types as T
from . import block_loops, coopmat, dot_forms, dot_trans, subgroup
from .layout import flat_np, lane_np, reduce_base_map, reg_np
from .values import LV


def _identity(em, kind: str, dt: T.DType) -> int:
    if kind == "sum":
        return em.const(dt, 0)
    big = kind in ("min", "argmin")
    if dt.is_float:
        return em.const(dt, float("inf") if big else float("-inf"))
    if dt.is_bool:
        return em.const(dt, big)
    info_max = (1 << (dt.bits - 1)) - 1 if dt.is_signed else (1 << dt.bits) - 1
    info_min = -(1 << (dt.bits - 1)) if dt.is_signed else 0
    return em.const(dt, info_max if big else info_min)


class _Combiner:
    """acc (value, index) <- combine(acc, (value, index)); argmax ties keep the smaller index."""

    def __init__(self, lw, kind: str, dt: T.DType):
        self.lw, self.kind, self.dt = lw, kind, dt
        self.em = lw.em
        self.rt = self.em.type_of(dt)

    def better(self, a, b) -> int:
        """bool: value a strictly beats b for max/min-like kinds."""
        em, dt = self.em, self.dt
        want_max = self.kind in ("max", "argmax")
        if dt.is_float:
            return em.op("OpFOrdGreaterThan" if want_max else "OpFOrdLessThan", em.bool, a, b)
        if dt.is_bool:
            a, b = (em.select(em.i32, x, em.ci(1), em.ci(0)) for x in (a, b))
            return em.op("OpSGreaterThan" if want_max else "OpSLessThan", em.bool, a, b)
        pre = "S" if dt.is_signed else "U"
        return em.op(f"Op{pre}GreaterThan" if want_max else f"Op{pre}LessThan", em.bool, a, b)

    def combine(self, acc, acc_i, v, v_i):
        em, dt, kind = self.em, self.dt, self.kind
        if kind == "sum":
            if dt.is_float:
                s = em.op("OpFAdd", self.rt, acc, v)
                return (em.round_bf16(s) if dt.name == "bf16" else s), None
            return em.op("OpIAdd", self.rt, acc, v), None
        take = self.better(v, acc)
        if kind in ("argmax", "argmin"):
            eq = em.op("OpFOrdEqual" if dt.is_float else ("OpLogicalEqual" if dt.is_bool else "OpIEqual"),
                       em.bool, v, acc)
            take = em.op("OpLogicalOr", em.bool, take, em.land(eq, em.ilt(v_i, acc_i)))
            return em.select(self.rt, take, v, acc), em.select(em.i32, take, v_i, acc_i)
        return em.select(self.rt, take, v, acc), None


def lower_reduce(lw, op):
    src_t = op.operands[0].type
    kind, axis = op.attrs["kind"], op.attrs["axis"]
    src = lw.get(op.operands[0])
    in_dt = src_t.elem
    if src.uniform:
        raise lw.error("reduction of a scalar")
    if len(src_t.shape) == 1:
        sg_reduce = lw.sg.get("reduce") and lw.sg.get("size", 0) > 1
        lw.note(op, "per-lane fold + " + ("subgroup reduction" if sg_reduce and lw.sg.get("whole") else
                                          "subgroup reductions + partials in shared memory"
                                          if sg_reduce and lw.W % lw.sg["size"] == 0 else "shared memory"))
        _reduce_full(lw, op, src, src_t.numel, kind, in_dt)
    else:
        _reduce_axis(lw, op, src, src_t.shape, axis, kind, in_dt)


def _reduce_full(lw, op, src, numel, kind, dt):
    em, mem, W = lw.em, lw.mem, lw.W
    c = _Combiner(lw, kind, dt)
    want_idx = kind in ("argmax", "argmin")
    ident = _identity(em, kind, dt)
    acc, acc_i = ident, em.ci(numel)
    for r, reg in enumerate(src.regs):            # each lane folds its own registers, in flat order
        valid = lw.valid(numel, r)
        n_acc, n_i = c.combine(acc, acc_i, reg, lw.flat(r, numel) if want_idx else None)
        if valid is not None:
            n_acc = em.select(c.rt, valid, n_acc, acc)
            if want_idx:
                n_i = em.select(em.i32, valid, n_i, acc_i)
        acc, acc_i = n_acc, n_i
    sg = lw.sg.get("size", 0)
    if W > 1 and lw.sg.get("reduce") and lw.sg.get("whole"):
        acc, acc_i = _subgroup_finish(lw, c, kind, dt, acc, acc_i)
    elif W > 1 and lw.sg.get("reduce") and sg > 1 and W % sg == 0:
        # GPUs (several subgroups): reduce inside each subgroup, then only W/sg partials go
        # through shared memory, instead of every lane folding all W of them
        acc, acc_i = _subgroup_finish(lw, c, kind, dt, acc, acc_i)
        parts = W // sg
        sgid = em.op("OpSDiv", em.i32, lw.lane, em.ci(sg))
        em.barrier()
        with em.if_then(em.op("OpIEqual", em.bool, em.op("OpSMod", em.i32, lw.lane, em.ci(sg)), em.ci(0))):
            mem.store_value(sgid, acc, dt, 2 * parts)       # 64-bit: high words after the indices
            if want_idx:
                mem.scratch_store(em.iadd(sgid, em.ci(parts)), mem.to_word(acc_i, T.i32))
        em.barrier()
        acc, acc_i = ident, em.ci(numel)
        for part in range(parts):               # every lane folds the partials in the same order
            v = mem.load_value(em.ci(part), dt, 2 * parts)
            v_i = mem.from_word(mem.scratch_load(em.ci(parts + part)), T.i32) if want_idx else None
            acc, acc_i = c.combine(acc, acc_i, v, v_i)
    elif W > 1:
        em.barrier()
        mem.store_value(lw.lane, acc, dt, 2 * W)
        if want_idx:
            mem.scratch_store(em.iadd(lw.lane, em.ci(W)), mem.to_word(acc_i, T.i32))
        em.barrier()
        acc, acc_i = ident, em.ci(numel)
        for lane in range(min(W, numel)):         # every lane folds the partials in the same order
            v = mem.load_value(em.ci(lane), dt, 2 * W)
            v_i = mem.from_word(mem.scratch_load(em.ci(W + lane)), T.i32) if want_idx else None
            acc, acc_i = c.combine(acc, acc_i, v, v_i)
    lw.bind(op, LV([acc_i if want_idx else acc], True))


def _subgroup_finish(lw, c, kind, dt, acc, acc_i):
    """Per-lane partials -> one uniform result with subgroup reductions (no shared memory)."""
    em = lw.em
    if kind == "sum":
        return subgroup.reduce(lw, "sum", dt, acc), None
    best = subgroup.reduce(lw, "max" if kind in ("max", "argmax") else "min", dt, acc)
    if kind in ("max", "min"):
        return best, None
    # argmax: the smallest index among lanes whose partial equals the best value
    eq = em.op("OpFOrdEqual" if dt.is_float else ("OpLogicalEqual" if dt.is_bool else "OpIEqual"),
               em.bool, acc, best)
    cand = em.select(em.i32, eq, acc_i, em.ci(2**31 - 1))
    return best, subgroup.reduce(lw, "min", T.i32, cand)


def _local_plan(lw, base_map, kstride, K, dst_numel, n_dst):
    """For each dest register: the source register of each k if every lane owns its own
    elements (no data movement at all), else None."""
    W = lw.W
    v_dst, v_src = lw.vec(dst_numel), lw.vec(dst_numel * K)
    lanes = np.arange(W)
    plans = []
    for r in range(n_dst):
        f = flat_np(lanes, r, W, v_dst)
        live = f < dst_numel
        base = base_map.eval(np.where(live, f, 0))
        qs = []
        for k in range(K):
            s = (base + k * kstride)[live]
            if not np.all(lane_np(s, W, v_src) == lanes[live]) or len(set(reg_np(s, W, v_src))) != 1:
                return None
            qs.append(int(reg_np(s[0], W, v_src)))
        plans.append(qs)
    return plans


def _reduce_axis(lw, op, src, shape, axis, kind, dt):
    em, mem, W = lw.em, lw.mem, lw.W
    c = _Combiner(lw, kind, dt)
    want_idx = kind in ("argmax", "argmin")
    base_map, kstride, K = reduce_base_map(shape, axis)
    dst_numel = op.result.type.numel
    src_numel = dst_numel * K
    n_dst = lw.nregs(op.result.type)
    plans = _local_plan(lw, base_map, kstride, K, dst_numel, n_dst)
    if plans is not None:                  # e.g. axis 0 of [K, N] with N % W == 0: lanes own columns
        lw.note(op, "in-lane fold (no data movement)")
        out = []
        for qs in plans:
            acc, acc_i = _identity(em, kind, dt), em.ci(K)
            for k, q in enumerate(qs):
                acc, acc_i = c.combine(acc, acc_i, src.regs[q], em.ci(k) if want_idx else None)
            out.append(acc_i if want_idx else acc)
        lw.bind(op, LV(out, False))
        return
    if lw.sg.get("whole") and lw.sg.get("reduce") and dst_numel * K // W <= 4096 and \
            dst_numel <= MAX_SUBGROUP_ROWS:
        runs = [_row_runs(lw, base_map, kstride, K, g, src_numel) for g in range(dst_numel)]
        if all(r is not None for r in runs):
            lw.note(op, "per-lane fold + subgroup reduction per row")
            _reduce_rows_subgroup(lw, op, src, runs, base_map, kstride, kind, dt, c, dst_numel)
            return
    lw.note(op, "shared memory + barriers")
    em.barrier()
    hi = len(src.regs) * W
    mem.store_tile(lw, src.regs, src_numel, dt, hi)
    em.barrier()
    out = []
    lanes, v_dst = np.arange(W), lw.vec(dst_numel)
    for r in range(lw.nregs(op.result.type)):
        base = lw.emit_index(base_map, lw.flat_or_zero(r, dst_numel))
        f = flat_np(lanes, r, W, v_dst)
        base_np = base_map.eval(np.where(f < dst_numel, f, 0))
        # a row of consecutive, 4-aligned words in every lane: 4 k at a time as one uvec4
        by_quads = kstride == 1 and K % 4 == 0 and bool(np.all(base_np % 4 == 0)) and \
            (dt.bits != 64 or hi % 4 == 0)
        quad = em.op("OpShiftRightArithmetic", em.i32, base, em.ci(2)) if by_quads else None
        acc, acc_i = _identity(em, kind, dt), em.ci(K)
        for k in range(K):
            if by_quads:
                if k % 4 == 0:
                    four = mem.load_values4(quad if k == 0 else em.iadd(quad, em.ci(k // 4)), dt, hi)
                v = four[k % 4]
            else:
                v = mem.load_value(em.iadd(base, em.ci(k * kstride)), dt, hi)
            acc, acc_i = c.combine(acc, acc_i, v, em.ci(k) if want_idx else None)
        out.append(acc_i if want_idx else acc)
    lw.bind(op, LV(out, False))


def _dot_work(out_dt: T.DType) -> T.DType:
    """The type products are summed in: f32/i32, or f64 for a float64 dot (Triton's fp64 dot)."""
    if out_dt.bits == 64:
        return out_dt
    return T.f32 if out_dt.is_float else T.i32


def lower_dot(lw, op):
    cfg = lw.coop_plan.dots.get(id(op))
    if cfg is not None:
        lw.note(op, f"cooperative matrix {cfg.m}x{cfg.n}x{cfg.k} {cfg.a_type}->{cfg.result_type}")
        coopmat.lower_dot_coopmat(lw, op, cfg)
        return
    form = dot_forms.form(lw, op)
    if form == "looped":
        block_loops.lower_dot_looped(lw, op)
        return
    if form == "subgroup":
        lw.note(op, "register blocks, A by subgroup broadcast")
        _dot_subgroup(lw, op, dot_forms.subgroup_plan(lw, op))
        return
    lw.note(op, "shared-memory staging")
    em, mem, W = lw.em, lw.mem, lw.W
    a_t, b_t, c_t = (v.type for v in op.operands)
    M, K = a_t.shape
    N = b_t.shape[1]
    # an operand that is trans(x) (dot_trans.py) is staged as x and read transposed
    (a, a_tr), (b, b_tr) = dot_trans.operand(lw, op, 0), dot_trans.operand(lw, op, 1)
    acc = lw.get(op.operands[2])
    in_dt, out_dt = a_t.elem, c_t.elem
    work = _dot_work(out_dt)                       # products are formed in the accumulator's width
    hi = (len(a.regs) + len(b.regs)) * W          # 64-bit: high words after all the low ones
    em.barrier()
    b_base = len(a.regs) * W
    mem.store_tile(lw, [lw.convert(reg, in_dt, work) for reg in a.regs], M * K, work, hi)
    mem.store_tile(lw, [lw.convert(reg, in_dt, work) for reg in b.regs], K * N, work, hi, b_base)
    em.barrier()
    # A[i, k] at word i*K + k (its source x[k, i] at k*M + i); B[k, j] at k*N + j (x[j, k]: j*K + k)
    a_row, a_kstep = (1, M) if a_tr else (K, 1)
    b_col, b_kstep = (K, 1) if b_tr else (1, N)
    wt = em.type_of(work)
    # C registers whose lanes all hold the same rows (columns) read the same A (B) words at
    # every k: each distinct word is read once per k (16x16 tiles on 8 lanes: 8 A and 4 B
    # reads per k instead of 32 each).  lavapipe turns every per-lane shared read into a
    # loop over the lanes, so this is most of the dot's code.
    lanes = np.arange(W)
    vc = lw.vec(M * N)
    a_of, b_of, a_addr, b_addr, accs = [], [], {}, {}, []
    for r, reg in enumerate(acc.regs):
        f_np = flat_np(lanes, r, W, vc)
        f_np = np.where(f_np < M * N, f_np, 0)
        ka, kb = tuple((f_np // N).tolist()), tuple((f_np % N).tolist())
        if ka not in a_addr or kb not in b_addr:
            f = lw.flat_or_zero(r, M * N)
            if ka not in a_addr:
                i = em.op("OpSDiv", em.i32, f, em.ci(N))
                a_addr[ka] = i if a_row == 1 else em.imul(i, em.ci(a_row))
            if kb not in b_addr:
                j = em.op("OpSMod", em.i32, f, em.ci(N))
                b_addr[kb] = em.iadd(j if b_col == 1 else em.imul(j, em.ci(b_col)), em.ci(b_base))
        a_of.append(ka)
        b_of.append(kb)
        accs.append(em.local_var(wt, lw.convert(reg, out_dt, work)))

    def body(k):
        a_k = k if a_kstep == 1 else em.imul(k, em.ci(a_kstep))
        b_k = k if b_kstep == 1 else em.imul(k, em.ci(b_kstep))
        av = {key: mem.load_value(em.iadd(base, a_k), work, hi) for key, base in a_addr.items()}
        bv = {key: mem.load_value(em.iadd(base, b_k), work, hi) for key, base in b_addr.items()}
        for ka, kb, var in zip(a_of, b_of, accs):
            cur = em.load_var(wt, var)
            if work.is_float:
                nxt = em.op("OpFAdd", wt, cur, em.op("OpFMul", wt, av[ka], bv[kb]))
            else:
                nxt = em.op("OpIAdd", wt, cur, em.op("OpIMul", wt, av[ka], bv[kb]))
            em.store_var(var, nxt)

    em.counted_loop(em.ci(K), body)
    out = []
    for var in accs:
        out.append(lw.convert(em.load_var(wt, var), work, out_dt))
    lw.bind(op, LV(out, False))


# Outputs of an axis reduction on one subgroup reduced by one subgroup operation each (beyond
# this many, shared memory); and the runs of lanes a row may fall into (a 16-wide row of a
# 16x16 tile on 8 lanes lies in 4 lanes: runs "none, these 4 lanes' registers, none").
MAX_SUBGROUP_ROWS = 256
MAX_ROW_RUNS = 3


def _row_runs(lw, base_map, kstride, K, g, src_numel):
    """Output g's source elements, as [(first lane, that lane's registers holding them)] over
    runs of consecutive lanes holding the same registers (an empty tuple: none), or None when
    there are more than MAX_ROW_RUNS runs."""
    W, v = lw.W, lw.vec(src_numel)
    flats = int(base_map.eval(np.array([g]))[0]) + np.arange(K) * kstride
    ln, rg = lane_np(flats, W, v), reg_np(flats, W, v)
    runs = []
    for lane in range(W):
        held = tuple(sorted(set(rg[ln == lane].tolist())))
        if not runs or runs[-1][1] != held:
            if len(runs) == MAX_ROW_RUNS:
                return None
            runs.append((lane, held))
    return runs


def _reduce_rows_subgroup(lw, op, src, runs, base_map, kstride, kind, dt, c, dst_numel):
    """Reduce an axis on one subgroup: each lane folds its own registers of a row (lanes
    holding none of it take the identity), one subgroup reduction per row, then each lane
    picks the rows it owns.  Rows that lie in different lanes but the same registers (the
    rows of a 16x16 tile on 8 lanes, two per register) share one fold."""
    em, W = lw.em, lw.W
    want_idx = kind in ("argmax", "argmin")
    src_numel = op.operands[0].type.numel
    K = src_numel // dst_numel
    lanes = np.arange(W)
    rt_ = em.type_of(dt)
    folds = {}

    def fold(regs, g):
        """This lane's (value, index along the axis) over `regs`, in register (= flat) order."""
        key = regs if not want_idx else (regs, g)
        if key not in folds:
            acc, acc_i = _identity(em, kind, dt), em.ci(K)
            base = int(base_map.eval(np.array([g]))[0])
            for q in regs:
                idx = None
                if want_idx:
                    idx = em.iadd(lw.flat(q, src_numel), em.ci(-base))
                    if kstride != 1:
                        idx = em.op("OpSDiv", em.i32, idx, em.ci(kstride))
                acc, acc_i = c.combine(acc, acc_i, src.regs[q], idx)
            folds[key] = (acc, acc_i)
        return folds[key]

    totals = []
    for g in range(dst_numel):
        acc, acc_i = fold(runs[g][0][1], g)
        for start, regs in runs[g][1:]:
            later = em.op("OpSGreaterThanEqual", em.bool, lw.lane, em.ci(start))
            v_, i_ = fold(regs, g)
            acc = em.select(rt_, later, v_, acc)
            if want_idx:
                acc_i = em.select(em.i32, later, i_, acc_i)
        v_, i = _subgroup_finish(lw, c, kind, dt, acc, acc_i)
        totals.append(i if want_idx else v_)
    rt = em.i32 if want_idx else rt_
    v_dst = lw.vec(dst_numel)
    out = []
    for r in range(lw.nregs(op.result.type)):
        owners = flat_np(lanes, r, W, v_dst)          # the row each lane's register r holds
        value = totals[min(int(owners[0]), dst_numel - 1)]
        for lane in range(1, W):
            g = int(owners[lane])
            if g < dst_numel and g != int(owners[lane - 1]):
                value = em.select(rt, em.op("OpSGreaterThanEqual", em.bool, lw.lane, em.ci(lane)),
                                  totals[g], value)
        out.append(value)
    lw.bind(op, LV(out, False))


def _dot_subgroup(lw, op, plan):
    """C += A @ B with no shared memory when each lane already owns the B columns of its C
    elements: A[i, k], which every lane of a C row needs, arrives by subgroup broadcast
    (the lavapipe-friendly form: register blocks per lane, operands handed out by lane).
    An A that is trans(x) (dot_trans.py) is broadcast from where x holds x[k, i]."""
    em, W = lw.em, lw.W
    a_t, c_t = op.operands[0].type, op.operands[2].type
    M, K = a_t.shape
    va = lw.vec(M * K)
    (a, a_tr), (b, _) = dot_trans.operand(lw, op, 0), dot_trans.operand(lw, op, 1)
    acc = lw.get(op.operands[2])
    in_dt, out_dt = a_t.elem, c_t.elem
    work = _dot_work(out_dt)
    wt = em.type_of(work)
    b_work = [lw.convert(x, in_dt, work) for x in b.regs]
    a_cache = {}

    def a_elem(i, k):
        if (i, k) not in a_cache:
            fa = k * M + i if a_tr else i * K + k
            src = a.regs[int(reg_np(fa, W, va))]
            a_cache[(i, k)] = lw.convert(subgroup.broadcast(lw, in_dt, src, int(lane_np(fa, W, va))), in_dt, work)
        return a_cache[(i, k)]

    out = []
    for r, p in enumerate(plan):
        c = lw.convert(acc.regs[r], out_dt, work)
        if p is not None:
            i, bq = p
            for k in range(K):
                prod = em.op("OpFMul" if work.is_float else "OpIMul", wt, a_elem(i, k), b_work[bq[k]])
                c = em.op("OpFAdd" if work.is_float else "OpIAdd", wt, c, prod)
        out.append(lw.convert(c, work, out_dt))
    lw.bind(op, LV(out, False))
