"""The on-disk kernel cache: hits, keys, and corrupt entries."""
import json
import textwrap

import numpy as np
import pytest

import spvjit
from spvjit import cache, compiler


def _write_module(tmp_path, name, helper_body="return x + 1"):
    src = textwrap.dedent(f"""
        import spvjit, spvjit.language as sl

        @spvjit.kernel
        def helper(x):
            {helper_body}

        @spvjit.kernel
        def k(x_ptr, n, BLOCK: sl.constexpr):
            offs = sl.arange(0, BLOCK)
            m = offs < n
            sl.store(x_ptr + offs, helper(sl.load(x_ptr + offs, mask=m)), mask=m)
    """)
    path = tmp_path / f"{name}.py"
    path.write_text(src)
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPVJIT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "kernels"


def _count_compiles(monkeypatch):
    calls = []
    real = compiler._lower

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)
    monkeypatch.setattr(compiler, "_lower", counting)
    return calls


def _run(mod):
    t = spvjit.tensor(np.arange(8, dtype=np.float32))
    mod.k[(1,)](t, 8, BLOCK=8)
    return t.numpy()


def test_second_process_reuses_entry(tmp_path, fresh_cache, monkeypatch):
    calls = _count_compiles(monkeypatch)
    np.testing.assert_array_equal(_run(_write_module(tmp_path, "m1")), np.arange(8) + 1)
    assert len(calls) == 1 and len(list(fresh_cache.glob("*.json"))) == 1
    # a new JITFunction (as in a new process) with the same source hits the disk entry
    np.testing.assert_array_equal(_run(_write_module(tmp_path, "m1")), np.arange(8) + 1)
    assert len(calls) == 1


def test_key_covers_callee_source_and_constexprs(tmp_path, fresh_cache, monkeypatch):
    calls = _count_compiles(monkeypatch)
    _run(_write_module(tmp_path, "m2"))
    out = _run(_write_module(tmp_path, "m2", helper_body="return x + 2"))
    np.testing.assert_array_equal(out, np.arange(8) + 2)      # the callee's edit is seen
    assert len(calls) == 2
    mod = _write_module(tmp_path, "m2", helper_body="return x + 2")
    t = spvjit.tensor(np.zeros(16, np.float32))
    mod.k[(1,)](t, 16, BLOCK=16)
    assert len(calls) == 3


@pytest.mark.parametrize("damage", ["garbage", "truncate", "bad_spirv"])
def test_corrupt_entry_is_recompiled(tmp_path, fresh_cache, monkeypatch, damage):
    calls = _count_compiles(monkeypatch)
    _run(_write_module(tmp_path, "m3"))
    (entry,) = fresh_cache.glob("*.json")
    text = entry.read_text()
    if damage == "garbage":
        entry.write_bytes(b"\x00\xff not json")
    elif damage == "truncate":
        entry.write_text(text[: len(text) // 2])
    else:
        d = json.loads(text)
        d["spirv"] = "AAAA"
        entry.write_text(json.dumps(d))
    np.testing.assert_array_equal(_run(_write_module(tmp_path, "m3")), np.arange(8) + 1)
    assert len(calls) == 2
    assert cache.load_kernel(entry.stem) is not None      # rewritten whole


def test_unwritable_cache_dir_still_runs(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("SPVJIT_CACHE_DIR", str(blocker))     # a file, so mkdir fails
    np.testing.assert_array_equal(_run(_write_module(tmp_path, "m4")), np.arange(8) + 1)


def test_key_covers_kernels_passed_as_constexpr_arguments(tmp_path, fresh_cache, monkeypatch):
    import importlib.util
    calls = _count_compiles(monkeypatch)
    main_src = textwrap.dedent("""
        import spvjit, spvjit.language as sl

        @spvjit.kernel
        def apply(out_ptr, FN: sl.constexpr):
            sl.store(out_ptr + sl.arange(0, 8), FN(sl.zeros((8,), sl.float32)))
    """)
    (tmp_path / "mainmod.py").write_text(main_src)
    results = []
    for body in ("return x + 1.0", "return x + 2.0"):
        helpers = _write_module(tmp_path, "helpers_fn", helper_body=body)
        spec = importlib.util.spec_from_file_location("mainmod", tmp_path / "mainmod.py")
        main = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(main)
        out = spvjit.zeros(8, np.float32)
        main.apply[(1,)](out, FN=helpers.helper)
        results.append(float(out.numpy()[0]))
    assert results == [1.0, 2.0] and len(calls) == 2


def test_key_covers_lowering_environment(tmp_path, fresh_cache, monkeypatch):
    # SPVJIT_DISABLE_COOPMAT changes the SPIR-V on coopmat devices: it must not hit an entry
    # (on disk or in memory) compiled without it
    calls = _count_compiles(monkeypatch)
    mod = _write_module(tmp_path, "m4")
    _run(mod)
    monkeypatch.setenv("SPVJIT_DISABLE_COOPMAT", "1")
    np.testing.assert_array_equal(_run(mod), np.arange(8) + 1)
    np.testing.assert_array_equal(_run(_write_module(tmp_path, "m4")), np.arange(8) + 1)
    assert len(calls) == 2 and len(list(fresh_cache.glob("*.json"))) == 2


def _redigest(d: dict) -> dict:
    """Damage that keeps the digest consistent, as a careless tool or an attacker would."""
    body = {k: v for k, v in d.items() if k != "digest"}
    return {**body, "digest": cache._digest(body)}


@pytest.mark.parametrize("damage", ["null", "list", "missing_binding", "push_size", "fifo", "dev_zero",
                                    "huge"])
def test_untrustworthy_entry_is_rebuilt_with_one_warning(tmp_path, fresh_cache, monkeypatch, damage):
    import os
    calls = _count_compiles(monkeypatch)
    _run(_write_module(tmp_path, "m5"))
    (entry,) = fresh_cache.glob("*.json")
    d = json.loads(entry.read_text())
    if damage in ("null", "list"):
        entry.write_text("null" if damage == "null" else "[1, 2]")
    elif damage == "missing_binding":       # the module still uses binding 0: must not dispatch
        entry.write_text(json.dumps(_redigest({**d, "bindings": d["bindings"][1:]})))
    elif damage == "push_size":
        entry.write_text(json.dumps(_redigest({**d, "push_size": d["push_size"] - 4})))
    elif damage == "fifo":                  # reading it would block forever
        entry.unlink()
        os.mkfifo(entry)
    elif damage == "dev_zero":              # reading it would never end
        entry.unlink()
        entry.symlink_to("/dev/zero")
    else:
        with open(entry, "wb") as f:
            f.truncate(cache.MAX_ENTRY_BYTES + 1)
    with pytest.warns(RuntimeWarning, match="spvjit cache entry"):
        np.testing.assert_array_equal(_run(_write_module(tmp_path, "m5")), np.arange(8) + 1)
    assert len(calls) == 2
    if damage not in ("fifo", "dev_zero"):
        assert cache.load_kernel(entry.stem) is not None      # rewritten whole


def test_entry_stored_under_another_key_is_not_run(tmp_path, fresh_cache, monkeypatch):
    # a compiled `sub` copied over `add`'s entry (digest intact) must not run as `add`
    mod_add = _write_module(tmp_path, "m_add", helper_body="return x + 1")
    mod_sub = _write_module(tmp_path, "m_sub", helper_body="return x - 1")
    _run(mod_add)
    before = set(fresh_cache.glob("*.json"))
    _run(mod_sub)
    (add_entry,) = before
    (sub_entry,) = set(fresh_cache.glob("*.json")) - before
    add_entry.write_text(sub_entry.read_text())
    with pytest.warns(RuntimeWarning, match="stored under another key"):
        out = _run(_write_module(tmp_path, "m_add", helper_body="return x + 1"))
    np.testing.assert_array_equal(out, np.arange(8) + 1)


def test_cache_directory_writable_by_others_is_refused(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("SPVJIT_CACHE_DIR", str(shared))
    with pytest.warns(RuntimeWarning, match="writable by other users"):
        np.testing.assert_array_equal(_run(_write_module(tmp_path, "m6")), np.arange(8) + 1)
    assert not list(shared.rglob("*.json"))


def test_new_cache_directory_is_private_and_leaves_no_temp_files(tmp_path, fresh_cache):
    _run(_write_module(tmp_path, "m7"))
    assert (fresh_cache.parent.stat().st_mode & 0o077) == 0
    assert (fresh_cache.stat().st_mode & 0o077) == 0
    assert not list(fresh_cache.glob(".tmp-*"))
