"""`dot` on cooperative matrices (VK_KHR_cooperative_matrix), where the device has them.

The operand tiles are staged in shared memory in row-major order, each
subgroup multiplies the output sub-tiles assigned to it with
OpCooperativeMatrixMulAddKHR, and the result returns to the blocked layout
through shared memory.  Chosen only when the device reports a configuration
(M, N, K granules, A/B/C/result types, subgroup scope) that tiles the dot
exactly; SPVJIT_DISABLE_COOPMAT=1 turns it off.
"""
from __future__ import annotations

import os

from ..ir import types as T
from .lower import LV

ROW_MAJOR = 0


def find_config(caps, w: int, a_t, b_t, c_t):
    if os.environ.get("SPVJIT_DISABLE_COOPMAT", "0") not in ("", "0"):
        return None
    M, K = a_t.shape
    N = b_t.shape[1]
    sg = getattr(caps, "subgroup_size", 0) or 0
    if not sg or w % sg:
        return None                       # every subgroup must be full
    shared = 2 * (M * K + K * N) + 4 * M * N
    if shared > getattr(caps, "max_shared_memory", 0) // 2:
        return None
    best = None
    for c in getattr(caps, "cooperative_matrix", ()) or ():
        if c.scope != "subgroup" or c.saturating:
            continue
        if (c.a_type, c.b_type) != (a_t.elem.name, b_t.elem.name) or a_t.elem.name != "f16":
            continue
        if c.c_type != c_t.elem.name or c.result_type != c_t.elem.name:
            continue
        if M % c.m or N % c.n or K % c.k:
            continue
        if best is None or c.m * c.n * c.k > best.m * best.n * best.k:
            best = c
    return best


def _enable(em):
    b = em.b
    em.capability("CooperativeMatrixKHR")
    b.extension("SPV_KHR_cooperative_matrix")
    em.capability("VulkanMemoryModel")
    b.extension("SPV_KHR_vulkan_memory_model")
    # atomics in these kernels use Device scope, which the Vulkan memory model gates
    em.capability("VulkanMemoryModelDeviceScope")
    b.memory_model("Logical", "Vulkan")


def _shared_array(mem, name: str, elem_type: int, count: int) -> int:
    key = ("coop_shared", name, count)
    if key not in mem._cache:
        b = mem.em.b
        var = b.variable(b.type_pointer("Workgroup", b.type_array(elem_type, count)), "Workgroup")
        b.name(var, name)
        mem._cache[key] = var
    return mem._cache[key]


def lower_dot_coopmat(lw, op, cfg, subgroup_size: int):
    em, mem, W = lw.em, lw.mem, lw.W
    _enable(em)
    a_t, b_t, c_t = (v.type for v in op.operands)
    M, K = a_t.shape
    N = b_t.shape[1]
    a, b, acc = (lw.get(v) for v in op.operands)
    out_dt = c_t.elem
    f16, ct = em.type_of(T.f16), em.type_of(out_dt)
    a_sh = _shared_array(mem, "coop_a", f16, M * K)
    b_sh = _shared_array(mem, "coop_b", f16, K * N)
    c_sh = _shared_array(mem, "coop_c", ct, M * N)
    p16, pc = em.b.type_pointer("Workgroup", f16), em.b.type_pointer("Workgroup", ct)

    def put(var, ptr_t, numel, regs, src_dt, dst_dt, dst_type):
        for q, reg in enumerate(regs):
            valid = lw.valid(numel, q)
            idx = lw.flat(q, numel)
            if valid is not None:       # lanes past the end park their write on element 0
                idx = em.select(em.i32, valid, idx, em.ci(0))
            value = lw.convert(reg, src_dt, dst_dt)
            if valid is not None:
                cur = em.op("OpLoad", dst_type, em.op("OpAccessChain", ptr_t, var, idx))
                value = em.select(dst_type, valid, value, cur)
            em.op("OpStore", None, em.op("OpAccessChain", ptr_t, var, idx), value)

    em.barrier()
    put(a_sh, p16, M * K, a.regs, a_t.elem, T.f16, f16)
    put(b_sh, p16, K * N, b.regs, b_t.elem, T.f16, f16)
    put(c_sh, pc, M * N, acc.regs, out_dt, out_dt, ct)
    em.barrier()

    ta = em.b.type_cooperative_matrix_khr(f16, "Subgroup", cfg.m, cfg.k, "MatrixAKHR")
    tb = em.b.type_cooperative_matrix_khr(f16, "Subgroup", cfg.k, cfg.n, "MatrixBKHR")
    tc = em.b.type_cooperative_matrix_khr(ct, "Subgroup", cfg.m, cfg.n, "MatrixAccumulatorKHR")
    layout = em.cu(ROW_MAJOR)
    n_sub = W // subgroup_size
    sgid = em.op("OpSDiv", em.i32, lw.lane, em.ci(subgroup_size)) if n_sub > 1 else None

    def tile(ti, tj):
        c_ptr = em.op("OpAccessChain", pc, c_sh, em.ci(ti * cfg.m * N + tj * cfg.n))
        c = em.op("OpCooperativeMatrixLoadKHR", tc, c_ptr, layout, em.cu(N))
        for tk in range(K // cfg.k):
            a_ptr = em.op("OpAccessChain", p16, a_sh, em.ci(ti * cfg.m * K + tk * cfg.k))
            b_ptr = em.op("OpAccessChain", p16, b_sh, em.ci(tk * cfg.k * N + tj * cfg.n))
            am = em.op("OpCooperativeMatrixLoadKHR", ta, a_ptr, layout, em.cu(K))
            bm = em.op("OpCooperativeMatrixLoadKHR", tb, b_ptr, layout, em.cu(N))
            c = em.op("OpCooperativeMatrixMulAddKHR", tc, am, bm, c)
        em.op("OpCooperativeMatrixStoreKHR", None, c_ptr, c, layout, em.cu(N))

    t = 0
    for ti in range(M // cfg.m):
        for tj in range(N // cfg.n):
            if sgid is None:
                tile(ti, tj)
            else:   # output tiles go round-robin to subgroups; the branch is uniform per subgroup
                with em.if_then(em.op("OpIEqual", em.bool, sgid, em.ci(t % n_sub))):
                    tile(ti, tj)
            t += 1
    em.barrier()
    out = []
    for r in range(len(acc.regs)):
        valid = lw.valid(M * N, r)
        idx = lw.flat(r, M * N)
        if valid is not None:
            idx = em.select(em.i32, valid, idx, em.ci(0))
        out.append(em.op("OpLoad", ct, em.op("OpAccessChain", pc, c_sh, idx)))
    lw.bind(op, LV(out, False))
