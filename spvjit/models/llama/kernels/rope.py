"""Rotary position embedding on adjacent pairs (2i, 2i+1), fused with the KV-cache write.

The angle of pair i at position p is ``p * inv_freq[i]``, with ``inv_freq`` computed on
the host from the config (``base ** (-2i / rope_dim)``, rope_freqs and linear scaling
applied) and zero-padded to head_dim / 2 entries: a zero frequency is the identity, so
dims past rope_dim pass through unchanged.
"""

from __future__ import annotations

import spvjit
import spvjit.language as sl


@spvjit.kernel
def rope_kv_kernel(qkv_ptr, k_cache, v_cache, inv_freq, pos_ptr, base_ptr, ld,
                   N_HEAD: sl.constexpr, N_KV: sl.constexpr, D: sl.constexpr, HALF: sl.constexpr,
                   ROW_POS: sl.constexpr):
    """Grid (n_tokens, N_HEAD + N_KV). Row t of qkv (stride ld) is [q | k | v] for position
    pos_ptr[0] + t (read from a tensor, so a recorded decode step can be replayed), its
    keys and values going to cache row base_ptr[0] + position. With ROW_POS every row is
    a sequence of its own (batched decoding): position pos_ptr[t], cache row base_ptr[t]
    + pos_ptr[t]; the arithmetic on the values is the same either way. Programs h < N_HEAD
    rotate query head h in place; the others rotate key head h - N_HEAD into k_cache and
    copy its value head into v_cache (both laid out [cache row, N_KV, D])."""
    t = sl.program_id(0)
    h = sl.program_id(1)
    if ROW_POS:
        pos = sl.load(pos_ptr + t)
        base = sl.load(base_ptr + t)
    else:
        pos = sl.load(pos_ptr) + t
        base = sl.load(base_ptr)
    i = sl.arange(0, HALF)
    im = i < D // 2
    ang = pos.to(sl.float32) * sl.load(inv_freq + i, mask=im, other=0.0)
    c = sl.cos(ang)
    s = sl.sin(ang)
    row = qkv_ptr + t * ld
    if h < N_HEAD:
        src = row + h * D + 2 * i
        x0 = sl.load(src, mask=im, other=0.0)
        x1 = sl.load(src + 1, mask=im, other=0.0)
        sl.store(src, x0 * c - x1 * s, mask=im)
        sl.store(src + 1, x0 * s + x1 * c, mask=im)
    else:
        kh = h - N_HEAD
        src = row + N_HEAD * D + kh * D + 2 * i
        dst = ((base + pos) * N_KV + kh) * D + 2 * i
        x0 = sl.load(src, mask=im, other=0.0)
        x1 = sl.load(src + 1, mask=im, other=0.0)
        sl.store(k_cache + dst, x0 * c - x1 * s, mask=im)
        sl.store(k_cache + dst + 1, x0 * s + x1 * c, mask=im)
        vsrc = src + N_KV * D
        sl.store(v_cache + dst, sl.load(vsrc, mask=im, other=0.0), mask=im)
        sl.store(v_cache + dst + 1, sl.load(vsrc + 1, mask=im, other=0.0), mask=im)
