"""Dispatch labels, `spvjit bench --profile`, `spvjit tune` and the tuning table, on the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import spvjit
import spvjit.language as sl

from .test_cli import assert_usage_error


def spvjit_cli(*args, cache_dir=None, env=None, timeout=300):
    e = dict(os.environ)
    if cache_dir is not None:
        e["SPVJIT_CACHE_DIR"] = str(cache_dir)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "spvjit.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=e)


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    from .conftest import write_tiny_gguf

    return str(write_tiny_gguf(tmp_path_factory.mktemp("tune") / "tiny.gguf"))


@pytest.fixture(scope="module")
def tune_cache(tmp_path_factory):
    """A cache directory of its own: the tuning table these tests write stays out of the
    session's cache (compiled kernels still come from Mesa's shader cache)."""
    return tmp_path_factory.mktemp("tune-cache")


@spvjit.kernel
def _scale(x_ptr, out_ptr, n, BLOCK: sl.constexpr):
    offs = sl.program_id(0) * BLOCK + sl.arange(0, BLOCK)
    sl.store(out_ptr + offs, sl.load(x_ptr + offs, mask=offs < n) * 2.0, mask=offs < n)


@spvjit.kernel
def _shift(x_ptr, out_ptr, n, BLOCK: sl.constexpr):
    offs = sl.program_id(0) * BLOCK + sl.arange(0, BLOCK)
    sl.store(out_ptr + offs, sl.load(x_ptr + offs, mask=offs < n) + 1.0, mask=offs < n)


def test_batch_and_graph_labels(device):
    x = spvjit.tensor(np.arange(256, dtype=np.float32))
    y = spvjit.empty_like(x)
    with spvjit.batch(timestamps=True) as b:
        _scale[(4,)](x, y, 256, BLOCK=64)
        _shift[(4,)](y, y, 256, BLOCK=64)
        _scale[(4,)](y, y, 256, BLOCK=64)
    assert b.labels == ["_scale", "_shift", "_scale"]
    assert len(b.elapsed_ns) == 3 and all(t > 0 for t in b.elapsed_ns)
    np.testing.assert_allclose(y.numpy(), (np.arange(256) * 2 + 1) * 2)
    with spvjit.record(timestamps=True) as g:
        _shift[(4,)](x, y, 256, BLOCK=64)
    g.replay()
    assert g.labels == ["_shift"] and len(g.elapsed_ns) == 1
    g.close()


def test_model_profile_labels_every_dispatch(tiny_file):
    from spvjit.models.llama.device_model import DeviceLlama
    from spvjit.models.llama.tuning import dispatch_sites

    model = DeviceLlama(tiny_file, max_ctx=32, tuning=None)
    try:
        model.timestamps = True
        best = model.forward_argmax([1, 5, 7, 9], 0)
        prompt = model.profile
        names = {label for label, _ in prompt}
        assert {"dequant_rows_kernel", "rope_kv_kernel", "attention_rows_kernel", "argmax_kernel"} <= names
        assert any(n.startswith("matmul") for n in names) and any(n.startswith("matvec") for n in names)
        assert all(ns > 0 for _, ns in prompt)
        assert dispatch_sites(model.trace_launches(4, 0), [label for label, _ in prompt]) is not None
        model.forward_argmax([best], 4)
        decode = model.profile
        keys = dispatch_sites(model.trace_launches(1, 4), [label for label, _ in decode])
        assert keys is not None and "argmax n=280" in keys and "rope_kv" in keys
        model.timestamps = False
        model.forward_argmax([best], 4)       # the plain graph still replays, and records nothing
        assert model.profile == decode
    finally:
        model.close()


def test_bench_profile_table(tiny_file, tune_cache):
    res = spvjit_cli("bench", tiny_file, "-p", "8", "-n", "3", "-r", "1", "--profile", "--json", cache_dir=tune_cache)
    assert res.returncode == 0, res.stderr
    results = {r["test"]: r for r in json.loads(res.stdout)}
    pp, tg = results["pp8"]["profile"], results["tg3"]["profile"]
    for p in (pp, tg):
        kernels = {k["kernel"]: k for k in p["kernels"]}
        assert {"dequant_rows_kernel", "rope_kv_kernel", "attention_rows_kernel", "argmax_kernel"} <= set(kernels)
        assert sum(k["ms"] for k in p["kernels"]) == pytest.approx(p["gpu_ms"], rel=1e-9)
        assert sum(k["share"] for k in p["kernels"]) == pytest.approx(1.0)
        assert sum(k["calls"] for k in p["kernels"]) == p["dispatches"]
        assert sum(s["ms"] for s in p["shapes"]) == pytest.approx(p["gpu_ms"], rel=1e-9)
        assert p["overhead_ms"] == pytest.approx(p["wall_ms"] - p["gpu_ms"])
    assert tg["per"] == "token" and tg["passes"] == 3 and pp["per"] == "prompt"
    assert any(k.startswith("matmul") for k in {k["kernel"] for k in pp["kernels"]})
    text = spvjit_cli("bench", tiny_file, "-p", "4", "-n", "2", "-r", "1", "--profile", cache_dir=tune_cache)
    assert text.returncode == 0, text.stderr
    assert "tg2: GPU time per generated token" in text.stdout and "host overhead (wall - GPU)" in text.stdout
    assert "| kernel" in text.stdout and "| total" in text.stdout


def test_tune_persists_and_reuses(tiny_file, tune_cache):
    args = ("tune", tiny_file, "--kernels", "argmax,attention_rows,dequant_rows", "-p", "0", "--pos", "8",
            "--max-configs", "3", "-r", "2", "--json")
    first = spvjit_cli(*args, cache_dir=tune_cache)
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    sites = {f"{s['kernel']} {s['shape']}": s for s in out["sites"]}
    assert set(sites) == {"argmax n=280", "attention_rows 4x16 kv2", "dequant_rows F16 280x64"}
    assert out["benchmarked"] == 3 and not any(s["cached"] for s in sites.values())
    for s in sites.values():
        assert s["config"] and s["ms"] > 0 and s["default_ms"] > 0 and 1 <= s["tried"] <= 3
    with open(out["table"]) as f:
        saved = json.load(f)["entries"]
    assert set(saved) == set(sites)

    again = spvjit_cli(*args, cache_dir=tune_cache)
    assert again.returncode == 0, again.stderr
    out2 = json.loads(again.stdout)
    assert out2["benchmarked"] == 0 and all(s["cached"] for s in out2["sites"])
    assert [s["config"] for s in out2["sites"]] == [s["config"] for s in out["sites"]]
    with open(out["table"]) as f:
        assert json.load(f)["entries"] == saved      # nothing measured or written again

    text = spvjit_cli(*args[:-1], cache_dir=tune_cache)
    assert text.returncode == 0 and "| argmax " in text.stdout and "(cached)" in text.stdout


def _plant(cache_dir, key: str, config: dict) -> None:
    """Put a tuned entry into the table of this device under cache_dir."""
    from spvjit.models.llama.tuning import TuningTable

    table = TuningTable.for_device(directory=cache_dir / "tuning")
    table.put(key, {"config": config, "ms": 0.01, "default": None, "default_ms": None, "timings": {}})
    table.save()


def test_run_and_bench_use_tuned_configs(tiny_file, tune_cache):
    from spvjit.models.llama import kernels as K
    from spvjit.models.llama.device_model import DeviceLlama
    from spvjit.models.llama.tuning import TuningTable, axes, config_str, default_config

    plain = DeviceLlama(tiny_file, max_ctx=32, tuning=None)
    calls = {c.key: c for c in plain.trace_launches(1, 0)}
    wo = default_config(calls["matvec F16 64x64 acc"])          # a non-default config for this site
    axis = axes(wo)[0]
    wo[axis] = wo[axis] * 2 if wo[axis] else 2
    _plant(tune_cache, "argmax n=280", {"BLOCK": 64})
    _plant(tune_cache, "matvec F16 64x64 acc", wo)

    table = TuningTable.for_device(directory=tune_cache / "tuning")
    tuned = DeviceLlama(tiny_file, max_ctx=32, tuning=table)
    try:
        ids = [1, 270, 271, 5]
        np.testing.assert_allclose(tuned.forward(ids, 0), plain.forward(ids, 0), rtol=1e-4, atol=1e-4)
        a = tuned.generate_greedy(ids, 4)
        assert a == plain.generate_greedy(ids, 4)
        assert {"argmax n=280", "matvec F16 64x64 acc"} <= table.used
        blocks = [dict((n, v) for n, kind, v in key[0] if kind == "constexpr") for key in K.argmax_kernel._compiled]
        assert any(b.get("BLOCK") == 64 for b in blocks)     # the tuned block size reached the kernel
    finally:
        tuned.close()
        plain.close()

    env = {"SPVJIT_PRINT_AUTOTUNING": "1"}
    run = spvjit_cli("run", tiny_file, "-p", "hello world", "-n", "3", "--temp", "0", cache_dir=tune_cache, env=env)
    assert run.returncode == 0, run.stderr
    assert "tuned argmax n=280: BLOCK=64" in run.stderr and f"tuned matvec F16 64x64 acc: {config_str(wo)}" in run.stderr
    off = spvjit_cli("run", tiny_file, "-p", "hello world", "-n", "3", "--temp", "0", cache_dir=tune_cache,
                     env={**env, "SPVJIT_DISABLE_TUNING": "1"})
    assert off.returncode == 0 and "tuned " not in off.stderr
    assert off.stdout == run.stdout                          # same greedy text either way

    bench = spvjit_cli("bench", tiny_file, "-p", "4", "-n", "2", "-r", "1", "--json", cache_dir=tune_cache)
    assert bench.returncode == 0, bench.stderr
    assert {"argmax n=280", "matvec F16 64x64 acc"} <= set(json.loads(bench.stdout)[0]["tuned"])


def test_failing_entry_falls_back_to_defaults(tiny_file, tmp_path, capfd):
    from spvjit.models.llama.device_model import DeviceLlama
    from spvjit.models.llama.tuning import TuningTable

    table = TuningTable.for_device(directory=tmp_path)
    table.put("argmax n=280", {"config": {"NOT_A_BLOCK": 3}})      # what the launcher does not take
    tuned = DeviceLlama(tiny_file, max_ctx=32, tuning=table)
    plain = DeviceLlama(tiny_file, max_ctx=32, tuning=None)
    try:
        assert tuned.generate_greedy([1, 5], 3) == plain.generate_greedy([1, 5], 3)
        assert "argmax n=280" not in table.entries
        assert "ignoring the tuned config of argmax n=280" in capfd.readouterr().err
    finally:
        tuned.close()
        plain.close()


def test_stale_entries_are_ignored(tmp_path):
    from spvjit.models.llama.tuning import TuningTable

    table = TuningTable.for_device(directory=tmp_path)
    table.put("argmax n=280", {"config": {"BLOCK": 64}})
    table.save()
    data = json.loads(table.path.read_text())
    assert TuningTable.for_device(directory=tmp_path).valid("argmax n=280") is not None
    data["entries"]["argmax n=280"]["source"] = "0" * 16          # an older kernel source
    table.path.write_text(json.dumps(data))
    assert TuningTable.for_device(directory=tmp_path).valid("argmax n=280") is None
    table.path.write_text("{not json")                             # damaged: as if never tuned
    assert TuningTable.for_device(directory=tmp_path).entries == {}


def test_tune_bad_input(tmp_path, tiny_file):
    assert_usage_error(spvjit_cli("tune", str(tmp_path / "nope.gguf")), "nope.gguf", "no such model file")
    assert_usage_error(spvjit_cli("tune", tiny_file, "--kernels", "bogus"), "--kernels", "bogus")
    assert_usage_error(spvjit_cli("tune", tiny_file, "--max-configs", "0"), "--max-configs")
    assert_usage_error(spvjit_cli("tune", tiny_file, "--budget", "0"), "--budget")
