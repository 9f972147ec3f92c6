"""Which of its lowerings a (non-batched) `dot` gets, decided in one place.

reduce.lower_dot dispatches on `form`; dot_trans asks it before lowering, to know whether a
`trans` feeding the dot can be read transposed instead of being moved.  `subgroup_plan` is the
register-block form's plan: which row and which B registers each C register uses.
"""
from __future__ import annotations

import numpy as np

from . import block_loops, dot_loop_plan, subgroup
from .layout import flat_np, lane_np, reg_np, regs, vec_width


def form(lw, dot) -> str:
    """Which lowering `dot` gets: "coopmat", "looped", "subgroup" or "staged" (in this order
    of preference; reduce.lower_dot dispatches on it, dot_trans asks it in advance)."""
    if id(dot) in lw.coop_plan.dots:
        return "coopmat"
    if block_loops.is_looped(lw, dot):
        return "looped"
    if lw.sg.get("whole") and lw.sg.get("broadcast") and subgroup_plan(lw, dot) is not None:
        return "subgroup"
    return "staged"


def extra_visits(w: int, target, kernel, vectorize: bool = True):
    """For loop_budget's counters: the loop-header visits an op's lowering adds.  A looped dot
    adds its K/U trips plus the final check (block_loops), a staged dot its loop over all K
    steps (reduce.lower_dot: K + 1); the other forms are unrolled.  `kernel` is the IR as it
    will be lowered (the choice depends on the dots' operands).  The choice repeats `form`
    without a Lowerer: cooperative-matrix dots never meet a loop limit (it is gone in the
    Mesa 26 lavapipe that has them), so only looped, register-block and staged dots count."""
    reads = dot_loop_plan.plan_dot_reads(kernel, w, target, (), vectorize)   # knows the looped dots
    sg = subgroup.available(target, w)
    layout = _Layout(w, vectorize)

    def visits(op) -> int:
        if op.name != "dot" or len(op.operands[0].type.shape) != 2 or len(op.operands[1].type.shape) != 2:
            return 0
        if reads.looped(op):
            return dot_loop_plan.trips_visits(op, w, target, reads)
        if sg.get("whole") and sg.get("broadcast") and _plan(layout, op) is not None:
            return 0
        return op.operands[0].type.shape[1] + 1
    return visits


class _Layout:
    """What `_plan` reads of a Lowerer, known before lowering."""

    def __init__(self, w: int, vectorize: bool):
        self.W, self.vectorize = w, vectorize

    def vec(self, numel: int) -> int:
        return vec_width(numel, self.W, self.vectorize)

    def nregs(self, ty) -> int:
        return 1 if ty.is_scalar else regs(ty.numel, self.W)


def subgroup_plan(lw, op):
    """The register-block form's plan when each lane already owns the B columns of its C
    elements (per C register: its row i and the B register of each k), else None.  Asked by
    `form` and then by the lowering: computed once per dot."""
    cache = lw.__dict__.setdefault("_subgroup_plans", {})
    if id(op) not in cache:
        cache[id(op)] = _plan(lw, op)
    return cache[id(op)]


def _plan(lw, op):
    W = lw.W
    a_t, b_t, c_t = (v.type for v in op.operands)
    M, K = a_t.shape
    N = b_t.shape[1]
    vb, vc = lw.vec(K * N), lw.vec(M * N)
    lanes = np.arange(W)
    plan = []                                       # per C register: (row i, [B register per k])
    for r in range(lw.nregs(c_t)):
        f = flat_np(lanes, r, W, vc)
        live = f < M * N
        if not live.any():
            plan.append(None)
            continue
        rows = set((f[live] // N).tolist())
        if len(rows) != 1:
            return None
        j = f % N
        bq = []
        for k in range(K):
            s = (k * N + j)[live]
            if not np.all(lane_np(s, W, vb) == lanes[live]) or len(set(reg_np(s, W, vb).tolist())) != 1:
                return None
            bq.append(int(reg_np(s[0], W, vb)))
        plan.append((rows.pop(), bq))
    return plan
