"""Which of its lowerings a (non-batched) `dot` gets, decided in one place.

reduce.lower_dot dispatches on `form`; dot_trans asks it before lowering, to know whether a
`trans` feeding the dot can be read transposed instead of being moved.  `subgroup_plan` is the
register-block form's plan: which row and which B registers each C register uses.
"""
from __future__ import annotations

import numpy as np

from . import block_loops
from .layout import flat_np, lane_np, reg_np


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
