"""Causal grouped-query attention over the KV cache, with an online softmax.

The first query's position is read from a one-element int32 tensor (``pos_ptr``), not
passed as a scalar, so a recorded decode step replays at every position. The caches hold ``[cache row, n_head_kv, head_dim]`` float32 per layer (a sequence's
positions start at a base row, so several sequences share one cache); query head h
reads key/value head ``h // GQA``. Scores are scaled by ``scale`` (1/sqrt(head_dim)).
Keys are visited in blocks of BT with a running maximum ``m`` and denominator ``l``
(flash-attention style), so no score row is ever stored.
"""

from __future__ import annotations

import spvjit
import spvjit.language as sl

_NEG = sl.constexpr(-1.0e30)  # stands for -inf where inf - inf would make NaN


@spvjit.kernel
def attention_rows_kernel(q_ptr, k_cache, v_cache, out_ptr, pos_ptr, base_ptr, ldq, scale,
                          N_HEAD: sl.constexpr, N_KV: sl.constexpr, D: sl.constexpr, BD: sl.constexpr,
                          GQA: sl.constexpr, BT: sl.constexpr, ROW_POS: sl.constexpr):
    """One query row of one head per program (grid: N_HEAD, n_rows): row i of q (stride
    ldq) sits at position pos_ptr[0] + i and sees cache positions 0..pos_ptr[0] + i,
    stored from cache row base_ptr[0] on. With ROW_POS each row is a sequence of its own
    (batched decoding): position pos_ptr[i], cache rows from base_ptr[i]; the arithmetic
    on the values does not depend on which rows share a launch."""
    h = sl.program_id(0)
    i = sl.program_id(1)
    if ROW_POS:
        T = sl.load(pos_ptr + i) + 1
        base = sl.load(base_ptr + i)
    else:
        T = sl.load(pos_ptr) + i + 1
        base = sl.load(base_ptr)
    kvh = h // GQA
    d = sl.arange(0, BD)
    dm = d < D
    q = sl.load(q_ptr + i * ldq + h * D + d, mask=dm, other=0.0) * scale
    m = sl.max(sl.full((BT,), _NEG, sl.float32), axis=0)
    l = sl.sum(sl.zeros((BT,), sl.float32), axis=0)
    acc = sl.zeros((BD,), sl.float32)
    for t0 in range(0, T, BT):
        t = t0 + sl.arange(0, BT)
        offs = ((base + sl.minimum(t, T - 1))[:, None] * N_KV + kvh) * D + d[None, :]
        k = sl.load(k_cache + offs, mask=dm[None, :], other=0.0)
        s = sl.where(t < T, sl.sum(k * q[None, :], axis=1), _NEG)
        m_new = sl.maximum(m, sl.max(s, axis=0))
        p = sl.exp(s - m_new)
        alpha = sl.exp(m - m_new)
        l = l * alpha + sl.sum(p, axis=0)
        v = sl.load(v_cache + offs, mask=dm[None, :], other=0.0)
        acc = acc * alpha + sl.sum(p[:, None] * v, axis=0)
        m = m_new
    sl.store(out_ptr + i * (N_HEAD * D) + h * D + d, acc / l, mask=dm)


@spvjit.kernel
def attention_prefill_kernel(q_ptr, k_cache, v_cache, out_ptr, n, pos_ptr, base_ptr, ldq, scale,
                             N_HEAD: sl.constexpr, N_KV: sl.constexpr, D: sl.constexpr,
                             BD: sl.constexpr, GQA: sl.constexpr, BQ: sl.constexpr, BT: sl.constexpr):
    """BQ query rows of one head per program (grid: N_HEAD, cdiv(n, BQ)). Query i (row i
    of q, stride ldq) sits at position pos_ptr[0] + i and sees keys 0..pos_ptr[0] + i,
    stored from cache row base_ptr[0] on."""
    start_pos = sl.load(pos_ptr)
    base = sl.load(base_ptr)
    h = sl.program_id(0)
    qb = sl.program_id(1)
    kvh = h // GQA
    i = qb * BQ + sl.arange(0, BQ)
    ic = sl.minimum(i, n - 1)
    d = sl.arange(0, BD)
    dm = d < D
    q = sl.load(q_ptr + ic[:, None] * ldq + h * D + d[None, :], mask=dm[None, :], other=0.0) * scale
    q_pos = start_pos + ic
    m = sl.full((BQ,), _NEG, sl.float32)
    l = sl.zeros((BQ,), sl.float32)
    acc = sl.zeros((BQ, BD), sl.float32)
    end = sl.minimum(start_pos + qb * BQ + BQ, start_pos + n)   # keys the last row sees
    for t0 in range(0, end, BT):
        t = t0 + sl.arange(0, BT)
        tc = sl.minimum(t, end - 1)
        kt = sl.load(k_cache + ((base + tc)[None, :] * N_KV + kvh) * D + d[:, None], mask=dm[:, None], other=0.0)
        s = sl.dot(q, kt)                                           # [BQ, BT]
        s = sl.where(t[None, :] <= q_pos[:, None], s, _NEG)
        m_new = sl.maximum(m, sl.max(s, axis=1))
        p = sl.exp(s - m_new[:, None])
        alpha = sl.exp(m - m_new)
        l = l * alpha + sl.sum(p, axis=1)
        v = sl.load(v_cache + ((base + tc)[:, None] * N_KV + kvh) * D + d[None, :], mask=dm[None, :], other=0.0)
        acc = acc * alpha[:, None] + sl.dot(p, v)
        m = m_new
    out = out_ptr + ic[:, None] * (N_HEAD * D) + h * D + d[None, :]
    sl.store(out, acc / l[:, None], mask=(i[:, None] < n) & dm[None, :])


@spvjit.kernel
def softmax_kernel(x_ptr, out_ptr, N, BLOCK: sl.constexpr, ROWS: sl.constexpr):
    """Row-wise softmax of rows of N floats, in three passes over blocks: maximum, sum of
    exponentials, normalized output. ROWS rows per program, one after another (grid:
    n_rows / ROWS; ROWS divides n_rows), each exactly as a lone row (spvjit.layouts)."""
    for r in sl.static_range(ROWS):
        row = sl.program_id(0) * ROWS + r
        x_row = x_ptr + row * N
        mx = sl.full((BLOCK,), _NEG, sl.float32)
        for k in range(0, N, BLOCK):
            offs = k + sl.arange(0, BLOCK)
            mx = sl.maximum(mx, sl.load(x_row + offs, mask=offs < N, other=_NEG))
        top = sl.max(mx, axis=0)
        tot = sl.zeros((BLOCK,), sl.float32)
        for k in range(0, N, BLOCK):
            offs = k + sl.arange(0, BLOCK)
            x = sl.load(x_row + offs, mask=offs < N, other=_NEG)
            tot += sl.where(offs < N, sl.exp(x - top), 0.0)
        inv = 1.0 / sl.sum(tot, axis=0)
        for k in range(0, N, BLOCK):
            offs = k + sl.arange(0, BLOCK)
            mask = offs < N
            x = sl.load(x_row + offs, mask=mask, other=_NEG)
            sl.store(out_ptr + row * N + offs, sl.exp(x - top) * inv, mask=mask)
