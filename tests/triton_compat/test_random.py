"""Triton-compatibility of tl.randint / tl.rand / tl.randn: Philox4x32-10 streams checked against
an independent numpy Philox (itself checked on the Random123 known-answer vector) in Triton's
layout: counter (offset, 0, 0, 0), key (seed, 0), uniform = folded signed value * 2^-31."""
from __future__ import annotations

import numpy as np
import pytest

from compat import empty_device, launch, make_kernel, to_device

M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85


def philox_np(c, k, rounds=10):
    """Philox4x32 on uint64 arrays holding 32-bit words (the Random123 round function)."""
    c = [np.asarray(x, np.uint64) & 0xFFFFFFFF for x in c]
    k0, k1 = (np.asarray(x, np.uint64) for x in k)
    mask = np.uint64(0xFFFFFFFF)
    for _ in range(rounds):
        p0, p1 = np.uint64(M0) * c[0], np.uint64(M1) * c[2]
        c = [((p1 >> np.uint64(32)) ^ c[1] ^ k0) & mask, p1 & mask,
             ((p0 >> np.uint64(32)) ^ c[3] ^ k1) & mask, p0 & mask]
        k0, k1 = (k0 + np.uint64(W0)) & mask, (k1 + np.uint64(W1)) & mask
    return [x.astype(np.uint32) for x in c]


def test_reference_philox_known_answer():
    out = philox_np([0, 0, 0, 0], [0, 0])
    assert [int(x) for x in out] == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]


def uniform_np(u32):
    s = u32.view(np.int32).astype(np.int64)
    s = np.where(s < 0, -s - 1, s)
    return (s.astype(np.float32) * np.float32(4.6566127342e-10)).astype(np.float32)


RANDOM = '''
@triton.jit
def kernel(Z, seed, BLOCK: tl.constexpr):
    off = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(Z + off, GENERATE_TEST_HERE)
'''


@pytest.mark.parametrize("seed", [0, 42, 2**31 - 1])
def test_randint(mode, seed):
    n = 256
    k = launch(make_kernel(RANDOM, GENERATE_TEST_HERE="tl.randint(seed, off)"), mode)
    z = empty_device(n, "uint32")
    k[(n // 64,)](z, seed, BLOCK=64)
    off = np.arange(n)
    want = philox_np([off, 0 * off, 0 * off, 0 * off], [np.full(n, seed), np.zeros(n)])[0]
    np.testing.assert_array_equal(z.numpy(), want)


def test_randint4x(mode):
    n, seed = 128, 7
    k = launch(make_kernel(RANDOM.replace("tl.store(Z + off, GENERATE_TEST_HERE)", """a, b, c, d = tl.randint4x(seed, off)
    tl.store(Z + off * 4, a)
    tl.store(Z + off * 4 + 1, b)
    tl.store(Z + off * 4 + 2, c)
    tl.store(Z + off * 4 + 3, d)""")), mode)
    z = empty_device(4 * n, "uint32")
    k[(n // 64,)](z, seed, BLOCK=64)
    off = np.arange(n)
    want = np.stack(philox_np([off, 0 * off, 0 * off, 0 * off], [np.full(n, seed), np.zeros(n)]), 1)
    np.testing.assert_array_equal(z.numpy(), want.reshape(-1))


def test_rand(mode):
    n, seed = 1024, 123
    k = launch(make_kernel(RANDOM, GENERATE_TEST_HERE="tl.rand(seed, off)"), mode)
    z = empty_device(n, "float32")
    k[(n // 256,)](z, seed, BLOCK=256)
    off = np.arange(n)
    want = uniform_np(philox_np([off, 0 * off, 0 * off, 0 * off], [np.full(n, seed), np.zeros(n)])[0])
    np.testing.assert_array_equal(z.numpy(), want)      # bit for bit: one exact conversion, one multiply
    assert 0.0 <= z.numpy().min() and z.numpy().max() < 1.0


def test_randn(mode):
    n, seed = 1024, 5
    k = launch(make_kernel(RANDOM, GENERATE_TEST_HERE="tl.randn(seed, off)"), mode)
    z = empty_device(n, "float32")
    k[(n // 256,)](z, seed, BLOCK=256)
    off = np.arange(n)
    i1, i2, _, _ = philox_np([off, 0 * off, 0 * off, 0 * off], [np.full(n, seed), np.zeros(n)])
    u1 = np.maximum(np.float32(1e-7), uniform_np(i1)).astype(np.float64)
    u2 = uniform_np(i2).astype(np.float64)
    want = np.sqrt(-2.0 * np.log(u1)) * np.cos(6.283185307179586 * u2)
    # log, sqrt and cos in float32 on the device: a few ulp of each, relative to |r| <= 5.7
    np.testing.assert_allclose(z.numpy(), want, rtol=1e-5, atol=2e-5)
    assert abs(z.numpy().mean()) < 0.1 and abs(z.numpy().std() - 1) < 0.1
