"""Sampler: argument checks, greedy equivalences, exact cuts, and sampled frequencies."""

from __future__ import annotations

import numpy as np
import pytest

from spvjit.models.llama import Sampler

# Chi-square critical value for 3 degrees of freedom at p = 1e-6: a correct sampler
# exceeds it once in a million seeds, a wrong distribution (e.g. off by 0.02 in one
# probability at N = 20000) exceeds it by far. The seeds are fixed, so runs repeat.
CHI2_DF3_P1E6 = 30.66
N = 20000


def frequencies(sampler: Sampler, logits: np.ndarray, n: int = N) -> np.ndarray:
    return np.bincount([sampler.sample(logits) for _ in range(n)], minlength=logits.size)


def chi2(counts: np.ndarray, p: np.ndarray) -> float:
    expected = counts.sum() * p
    keep = expected > 0
    assert counts[~keep].sum() == 0, "sampled a token that has probability 0"
    return float(((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum())


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(temperature=-0.1), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.01), "top_p"),
        (dict(top_k=-1), "top_k"),
        (dict(top_k=2.5), "top_k"),
    ],
)
def test_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Sampler(**kwargs)


def test_greedy_equivalences():
    rng = np.random.default_rng(0)
    for _ in range(20):
        logits = rng.standard_normal(1000).astype(np.float32)
        best = int(np.argmax(logits))
        assert Sampler(temperature=0).sample(logits) == best
        assert Sampler(temperature=1.5, top_k=1, seed=1).sample(logits) == best


def test_seed_reproducible():
    logits = np.random.default_rng(1).standard_normal(50)
    a = [Sampler(1.0, 0, 1.0, seed=123).sample(logits) for _ in range(3)]
    assert len(set(a)) == 1  # a fresh sampler with the same seed draws the same first token
    s1, s2, s3 = Sampler(1.0, 0, 1.0, seed=123), Sampler(1.0, 0, 1.0, seed=123), Sampler(1.0, 0, 1.0, seed=124)
    d1 = [s1.sample(logits) for _ in range(200)]
    assert d1 == [s2.sample(logits) for _ in range(200)]
    assert d1 != [s3.sample(logits) for _ in range(200)]


def test_top_p_cut_is_exact():
    # Probabilities 1/2, 1/4, 1/8, 1/16, 1/16: the kept prefix is the shortest one whose
    # mass reaches top_p (thresholds chosen away from the cumulative sums 0.5/0.75/0.875).
    logits = np.log(np.array([0.5, 0.25, 0.125, 0.0625, 0.0625]))
    def kept(**kw):
        return Sampler(1.0, **kw).candidates(logits).tolist()
    assert kept(top_k=0, top_p=0.49) == [0]
    assert kept(top_k=0, top_p=0.51) == [0, 1]
    assert kept(top_k=0, top_p=0.74) == [0, 1]
    assert kept(top_k=0, top_p=0.76) == [0, 1, 2]
    assert kept(top_k=0, top_p=1.0) == [0, 1, 2, 3, 4]
    # top-p applies after top-k, to the renormalized survivors 4/7, 2/7, 1/7: reaching
    # 0.8 needs only two of them (it would need three without renormalizing).
    assert kept(top_k=3, top_p=0.8) == [0, 1]
    assert kept(top_k=2, top_p=1.0) == [0, 1]


def test_plain_sampling_frequencies():
    p = np.array([0.5, 0.3, 0.15, 0.05])
    counts = frequencies(Sampler(1.0, top_k=0, top_p=1.0, seed=7), np.log(p))
    assert chi2(counts, p) < CHI2_DF3_P1E6


def test_temperature_reshapes():
    # softmax(log p / T) is proportional to p ** (1/T).
    p = np.array([0.5, 0.3, 0.15, 0.05])
    for temperature in (0.5, 2.0):
        q = p ** (1 / temperature)
        q /= q.sum()
        counts = frequencies(Sampler(temperature, top_k=0, top_p=1.0, seed=8), np.log(p) + 3.0)
        assert chi2(counts, q) < CHI2_DF3_P1E6


def test_cut_then_renormalize():
    # top_p=0.8 keeps 3 tokens of 1/2, 1/4, 1/8 (+ two of 1/16); they are drawn 4:2:1 and
    # the cut tokens never.
    p = np.array([0.5, 0.25, 0.125, 0.0625, 0.0625])
    counts = frequencies(Sampler(1.0, top_k=0, top_p=0.8, seed=9), np.log(p))
    expected = np.array([4, 2, 1, 0, 0]) / 7
    assert chi2(counts, expected) < 27.63  # 2 degrees of freedom at p = 1e-6
