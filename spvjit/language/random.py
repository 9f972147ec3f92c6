"""`tl.rand`, `tl.randint`, `tl.randn` and friends: counter-based Philox4x32 random numbers.

Philox4x32 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11) with the
standard multipliers and Weyl key increments, laid out as Triton lays out its streams: the
counter words are (offset, 0, 0, 0), the key is (seed low 32 bits, seed high 32 bits), ten
rounds by default, and a uniform float comes from the first word's signed value scaled by
2^-31 — so for a seed and offsets the numbers agree with Triton's bit for bit.
Seeds are 32-bit here (spvjit has no 64-bit scalars), so the key's high word is 0.
"""
from __future__ import annotations

from .core import _sem, constexpr, uint32, int32, float32
from .builtins import cos, log, maximum, sin, sqrt, static_range, umulhi, where

PHILOX_ROUND_A = constexpr(0xD2511F53)
PHILOX_ROUND_B = constexpr(0xCD9E8D57)
PHILOX_KEY_A = constexpr(0x9E3779B9)
PHILOX_KEY_B = constexpr(0xBB67AE85)
N_ROUNDS_DEFAULT = constexpr(10)


def _u32(x):
    x = _sem().to_tensor(x)
    return x if x.dtype == uint32 else _sem().cast(x, uint32, bitcast=x.dtype.bits == 32 and x.dtype.is_int)


def philox_impl(c0, c1, c2, c3, k0, k1, n_rounds=N_ROUNDS_DEFAULT):
    """n_rounds of Philox4x32 on uint32 counters c0..c3 under key (k0, k1)."""
    n = int(constexpr(n_rounds).value)
    for _ in range(n):
        prev_c0, prev_c2 = c0, c2
        c0 = umulhi(prev_c2, PHILOX_ROUND_B.value) ^ c1 ^ k0
        c2 = umulhi(prev_c0, PHILOX_ROUND_A.value) ^ c3 ^ k1
        c1 = prev_c2 * PHILOX_ROUND_B.value
        c3 = prev_c0 * PHILOX_ROUND_A.value
        k0 = k0 + PHILOX_KEY_A.value
        k1 = k1 + PHILOX_KEY_B.value
    return c0, c1, c2, c3


def philox(seed, c0, c1, c2, c3, n_rounds=N_ROUNDS_DEFAULT):
    seed = _sem().to_tensor(seed)
    if seed.dtype.bits > 32:
        raise TypeError("64-bit seeds need 64-bit integers, which spvjit does not have yet")
    k0 = _u32(seed)
    k1 = _sem().constant(0, uint32, seed.shape)
    c0, c1, c2, c3 = (_u32(c) for c in (c0, c1, c2, c3))
    return philox_impl(c0, c1, c2, c3, k0, k1, n_rounds)


def randint4x(seed, offset, n_rounds=N_ROUNDS_DEFAULT):
    """Four blocks of random uint32 for each offset."""
    offset = _sem().to_tensor(offset)
    zero = offset * 0
    return philox(seed, offset, zero, zero, zero, n_rounds)


def randint(seed, offset, n_rounds=N_ROUNDS_DEFAULT):
    return randint4x(seed, offset, n_rounds)[0]


def uint_to_uniform_float(x):
    """uint32 -> float32 in [0, 1): the signed value, folded to non-negative, times 2^-31."""
    x = _sem().to_tensor(x)
    if x.dtype != uint32:
        raise TypeError(f"uint_to_uniform_float takes uint32 values, got {x.dtype}")
    s = _sem().cast(x, int32, bitcast=True)
    s = where(s < 0, -s - 1, s)
    return s.to(float32) * 4.6566127342e-10


def rand(seed, offset, n_rounds=N_ROUNDS_DEFAULT):
    return uint_to_uniform_float(randint(seed, offset, n_rounds))


def rand4x(seed, offset, n_rounds=N_ROUNDS_DEFAULT):
    return tuple(uint_to_uniform_float(i) for i in randint4x(seed, offset, n_rounds))


def pair_uniform_to_normal(u1, u2):
    """Box-Muller: two uniforms to two standard normals."""
    u1 = maximum(1.0e-7, u1)
    th = 6.283185307179586 * u2
    r = sqrt(-2.0 * log(u1))
    return r * cos(th), r * sin(th)


def randn(seed, offset, n_rounds=N_ROUNDS_DEFAULT):
    i1, i2, _, _ = randint4x(seed, offset, n_rounds)
    n1, _ = pair_uniform_to_normal(uint_to_uniform_float(i1), uint_to_uniform_float(i2))
    return n1


def randn4x(seed, offset, n_rounds=N_ROUNDS_DEFAULT):
    u1, u2, u3, u4 = rand4x(seed, offset, n_rounds)
    n1, n2 = pair_uniform_to_normal(u1, u2)
    n3, n4 = pair_uniform_to_normal(u3, u4)
    return n1, n2, n3, n4


del static_range
