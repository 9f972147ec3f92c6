"""The command line under misuse (issue 13): one line on stderr, exit 2 (130 for Ctrl-C),
never a traceback; or, for text it can repair, a warning line and the run goes on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gguf
import numpy as np
import pytest

from .conftest import write_tiny_gguf
from .test_cli import assert_usage_error, spvjit

SPVJIT_COMMAND = Path(sys.executable).parent / "spvjit"  # the console script, as users start it


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    return str(write_tiny_gguf(tmp_path_factory.mktemp("cli-edge") / "tiny.gguf"))


def test_negative_seed(tiny_file):
    assert_usage_error(spvjit("run", tiny_file, "--seed", "-1", "--temp", "0.8"), "--seed must be >= 0, got -1")


def test_prompt_that_is_not_utf8(tiny_file):
    # argv bytes that are not UTF-8 reach Python as lone surrogates; encoding them failed.
    res = subprocess.run([sys.executable, "-m", "spvjit.cli.main", "run", tiny_file, "-n", "2", "--temp", "0",
                          "-p", b"h\xffello"], capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr
    err = res.stderr.decode()
    assert "Traceback" not in err
    assert "spvjit: warning: the prompt is not valid UTF-8; undecodable bytes were replaced with U+FFFD" in err
    assert res.stdout.startswith("h\ufffdello".encode())


def test_stdout_that_cannot_encode_the_text(tiny_file):
    res = spvjit("run", tiny_file, "-n", "2", "--temp", "0", "-p", "h\u00e9llo \u65e5",
                 env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.count("cannot show all of the text") == 1
    assert res.stdout.startswith("h?llo ?")


@pytest.mark.parametrize("var,value", [("SPVJIT_PROGRAMS_PER_WORKGROUP", "0"), ("SPVJIT_PROGRAMS_PER_WORKGROUP", "x"),
                                       ("LP_NUM_THREADS", "-2")])
def test_environment_variable_out_of_range(tiny_file, var, value):
    res = spvjit("run", tiny_file, "-n", "2", "--temp", "0", env={**os.environ, var: value})
    assert_usage_error(res, var, repr(value))  # one line naming the variable and its value


def test_bad_driver_manifest_says_what_is_wrong(tmp_path):
    manifest = tmp_path / "broken_icd.json"
    manifest.write_text("{ not json")
    env = {k: v for k, v in os.environ.items() if k not in ("VK_DRIVER_FILES", "VK_ADD_DRIVER_FILES")}
    res = spvjit("devices", env={**env, "VK_ICD_FILENAMES": str(manifest)})
    if "no Vulkan driver" in res.stderr:
        pytest.skip("this Vulkan loader reports a broken manifest as no driver at all")
    # The loader says VK_ERROR_OUT_OF_HOST_MEMORY; the message must point at the manifest.
    assert_usage_error(res, "driver manifest", f"VK_ICD_FILENAMES={manifest}")


def _nan_weights_file(tmp_path) -> Path:
    """The tiny model with its output norm all NaN: every logit is NaN."""
    path = write_tiny_gguf(tmp_path / "nan.gguf")
    info = next(t for t in gguf.GGUFReader(path).tensors if t.name == "output_norm.weight")
    data = bytearray(path.read_bytes())
    start = int(info.data_offset)
    data[start : start + int(info.n_bytes)] = np.full(int(info.n_elements), np.nan, np.float32).tobytes()
    path.write_bytes(bytes(data))
    return path


def test_nan_weights_with_sampling(tmp_path):
    res = spvjit("run", str(_nan_weights_file(tmp_path)), "-n", "2", "--temp", "0.8", "--seed", "1", "-p", "hello")
    assert_usage_error(res, "logits contain NaN")


def test_unreadable_model_file(tmp_path, monkeypatch):
    from spvjit.models.llama import ModelError, load_gguf

    path = Path(write_tiny_gguf(tmp_path / "locked.gguf"))
    real_open = os.open

    def deny(p, *a, **k):  # root reads anything, so chmod 000 cannot stand in for this
        if str(p) == str(path):
            raise PermissionError(13, "Permission denied", str(p))
        return real_open(p, *a, **k)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(ModelError) as e:
        load_gguf(path)
    assert str(e.value) == f"{path}: cannot read the model file: permission denied"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a chmod 000 file")
def test_unreadable_model_file_cli(tmp_path):
    path = Path(write_tiny_gguf(tmp_path / "locked.gguf"))
    path.chmod(0)
    assert_usage_error(spvjit("run", str(path)), "permission denied")


@pytest.mark.skipif(not SPVJIT_COMMAND.exists(), reason="the spvjit console script is not installed")
@pytest.mark.parametrize("delay", [0.2, 0.3, 0.4])
def test_early_ctrl_c(tiny_file, delay):
    # Ctrl-C while the command is still importing used to print a KeyboardInterrupt traceback.
    # (The first ~30 ms, before the interpreter reaches spvjit's first line, are Python's own:
    # too short to aim at by hand, and too load-dependent to test.)
    proc = subprocess.Popen([str(SPVJIT_COMMAND), "run", tiny_file, "-n", "4"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err, err
    if proc.returncode == 0:  # finished before the signal arrived (a fast, warm machine)
        return
    assert proc.returncode == 130, (proc.returncode, err)
    assert "spvjit: interrupted" in err.splitlines()


def test_bench_escapes_the_model_name(tiny_file, tmp_path):
    from fuzz.gguf_mutations import read_doc, serialize

    doc = read_doc(Path(tiny_file))
    for kv in doc.kvs:
        if kv.key == "general.name":
            kv.value = "evil\x1b]0;pwned\x07\x1b[31m"
    path = tmp_path / "evil.gguf"
    path.write_bytes(serialize(doc).data)
    res = spvjit("bench", str(path), "-p", "0", "-n", "1", "-r", "1")
    assert res.returncode == 0, res.stderr
    assert "\x1b" not in res.stdout + res.stderr  # no raw escape reaches the terminal
    assert "evil\\x1b]0;pwned\\x07\\x1b[31m" in res.stdout  # shown escaped instead
