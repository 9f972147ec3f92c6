"""@spvjit.autotune: picks a config, skips configs that cannot compile, persists results."""
import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit import testing


@spvjit.kernel
def scale_sum(x_ptr, out_ptr, n, BLOCK: sl.constexpr):
    offs = sl.program_id(0) * BLOCK + sl.arange(0, BLOCK)
    x = sl.load(x_ptr + offs, mask=offs < n, other=0.0)
    sl.atomic_add(out_ptr, sl.sum(x * 2.0, axis=0))


CONFIGS = [spvjit.Config({"BLOCK": 64}, num_warps=1), spvjit.Config({"BLOCK": 256}, num_warps=2),
           spvjit.Config({"BLOCK": 100}, num_warps=4)]      # not a power of two: cannot compile


def make_tuned():
    return spvjit.autotune(configs=CONFIGS, key=["n"], reset_to_zero=["out_ptr"])(scale_sum)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPVJIT_CACHE_DIR", str(tmp_path))
    return tmp_path


def _count_benches(monkeypatch):
    calls = []
    real = testing.do_bench

    def counting(fn, *a, **k):
        calls.append(1)
        return real(fn, *a, **k)
    monkeypatch.setattr(testing, "do_bench", counting)
    return calls


def run(tuned, n):
    x = np.arange(n, dtype=np.float32) / n
    out = spvjit.zeros(1, np.float32)
    tuned[lambda meta: (spvjit.cdiv(n, meta["BLOCK"]),)](spvjit.tensor(x), out, n)
    return float(out.numpy()[0]), float(2 * x.astype(np.float64).sum())


def test_tunes_skips_bad_config_and_result_is_right(fresh_cache, monkeypatch, capsys):
    monkeypatch.setenv("SPVJIT_PRINT_AUTOTUNING", "1")
    tuned = make_tuned()
    got, want = run(tuned, 5000)
    # reset_to_zero: benchmark runs must not leave their sums behind; f32 atomics over <= 79 partials
    assert got == pytest.approx(want, rel=1e-5)
    err = capsys.readouterr().err
    assert "skipped BLOCK: 100" in err and "best BLOCK:" in err
    (key,) = tuned.cache
    assert tuned.cache[key].kwargs["BLOCK"] in (64, 256)
    assert list(fresh_cache.glob("autotune/*.json"))


def test_results_persist_across_processes_and_keys(fresh_cache, monkeypatch):
    calls = _count_benches(monkeypatch)
    run(make_tuned(), 3000)
    tuned_once = len(calls)
    assert tuned_once >= 2
    got, want = run(make_tuned(), 3000)       # a new tuner, as in a new process: loads from disk
    assert len(calls) == tuned_once and got == pytest.approx(want, rel=1e-5)
    run(make_tuned(), 4000)                   # a new key value tunes again
    assert len(calls) > tuned_once


def test_bad_declarations():
    with pytest.raises(ValueError, match="not a parameter"):
        spvjit.autotune(configs=CONFIGS, key=["m"])(scale_sum)
    with pytest.raises(TypeError, match="stacked on a @spvjit.kernel"):
        spvjit.autotune(configs=CONFIGS, key=["n"])(lambda x: x)
    tuned = make_tuned()
    with pytest.raises(spvjit.LaunchError, match="set both"):
        tuned[(1,)](spvjit.tensor(np.ones(4, np.float32)), spvjit.zeros(1), 4, BLOCK=64)


def test_element_types_are_part_of_the_key(fresh_cache, monkeypatch):
    # as in Triton: f16 and f32 inputs of the same size are tuned separately
    calls = _count_benches(monkeypatch)
    tuned = make_tuned()
    n = 1000
    for dt in (np.float32, np.float16):
        x = np.linspace(0, 1, n).astype(dt)
        out = spvjit.zeros(1, np.float32)
        tuned[lambda meta: (spvjit.cdiv(n, meta["BLOCK"]),)](spvjit.tensor(x), out, n)
        np.testing.assert_allclose(out.numpy()[0], 2 * x.astype(np.float64).sum(), rtol=1e-3)
        assert tuned.best_config is tuned.cache[f"n={n},dtypes={np.dtype(dt).name}/float32"]
    assert len(tuned.cache) == 2 and len(calls) >= 4
