"""Rotary position embedding, fused with the Q/K/V bias and the KV-cache write.

The angle of pair i at position p is ``p * inv_freq[i]``, with ``inv_freq`` computed on
the host from the config (``base ** (-2i / rope_dim)``, rope_freqs and linear scaling
applied) and zero-padded to head_dim / 2 entries: a zero frequency is the identity, so
dims past rope_dim pass through unchanged. Pair i is dims (2i, 2i+1) of a head (the
order llama GGUFs store Q/K in), or (i, i + D/2) with NEOX (qwen2, which keeps HF's
order; then rope_dim = D, which the config checks).
"""

from __future__ import annotations

import spvjit
import spvjit.language as sl


@spvjit.kernel
def _biased(row, bias_ptr, col, mask, BIAS: sl.constexpr):
    """qkv[col] of one row, plus its bias when the model has one."""
    x = sl.load(row + col, mask=mask, other=0.0)
    if BIAS:
        x += sl.load(bias_ptr + col, mask=mask, other=0.0)
    return x


@spvjit.kernel
def rope_kv_kernel(qkv_ptr, k_cache, v_cache, inv_freq, pos_ptr, bias_ptr, ld,
                   N_HEAD: sl.constexpr, N_KV: sl.constexpr, D: sl.constexpr, HALF: sl.constexpr,
                   NEOX: sl.constexpr, BIAS: sl.constexpr):
    """Grid (n_tokens, N_HEAD + N_KV). Row t of qkv (stride ld) is [q | k | v] for position
    pos_ptr[0] + t (read from a tensor, so a recorded decode step can be replayed); with
    BIAS, bias_ptr holds the [q | k | v] bias to add first. Programs h < N_HEAD rotate query
    head h in place; the others rotate key head h - N_HEAD into k_cache and copy its value
    head into v_cache (both laid out [position, N_KV, D])."""
    t = sl.program_id(0)
    h = sl.program_id(1)
    pos = sl.load(pos_ptr) + t
    i = sl.arange(0, HALF)
    im = i < D // 2
    ang = pos.to(sl.float32) * sl.load(inv_freq + i, mask=im, other=0.0)
    c = sl.cos(ang)
    s = sl.sin(ang)
    row = qkv_ptr + t * ld
    a = i if NEOX else 2 * i          # the pair's first dim; the second is a + OFF
    OFF = D // 2 if NEOX else 1
    if h < N_HEAD:
        col = h * D + a
        x0 = _biased(row, bias_ptr, col, im, BIAS)
        x1 = _biased(row, bias_ptr, col + OFF, im, BIAS)
        sl.store(row + col, x0 * c - x1 * s, mask=im)
        sl.store(row + col + OFF, x0 * s + x1 * c, mask=im)
    else:
        kh = h - N_HEAD
        col = N_HEAD * D + kh * D + a
        dst = (pos * N_KV + kh) * D + a
        x0 = _biased(row, bias_ptr, col, im, BIAS)
        x1 = _biased(row, bias_ptr, col + OFF, im, BIAS)
        sl.store(k_cache + dst, x0 * c - x1 * s, mask=im)
        sl.store(k_cache + dst + OFF, x0 * s + x1 * c, mask=im)
        vcol = col + N_KV * D
        sl.store(v_cache + dst, _biased(row, bias_ptr, vcol, im, BIAS), mask=im)
        sl.store(v_cache + dst + OFF, _biased(row, bias_ptr, vcol + OFF, im, BIAS), mask=im)
