"""`spvjit run` and `spvjit bench` as a user runs them: subprocesses, exit codes, streams."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import gguf
import pytest

Q = gguf.GGMLQuantizationType


def spvjit(*args, timeout=300, **kw):
    return subprocess.run([sys.executable, "-m", "spvjit.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, **kw)


def assert_usage_error(res, *fragments):
    """Exit code 2, and stderr is exactly one line `spvjit: error: ...` naming the problem."""
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spvjit: error: "), res.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    from .conftest import write_tiny_gguf

    return str(write_tiny_gguf(tmp_path_factory.mktemp("cli") / "tiny.gguf"))


def test_run_help_lists_the_weight_types():
    from spvjit.models.llama.kernels import SUPPORTED

    res = spvjit("run", "--help")
    assert res.returncode == 0
    text = " ".join(res.stdout.split())
    for qtype in SUPPORTED:
        assert qtype in text, qtype
    assert "IQ4_XS" in text and "Q2_K" in text and "BF16" in text


def test_missing_file(tmp_path):
    assert_usage_error(spvjit("run", str(tmp_path / "nope.gguf")), "nope.gguf", "no such model file")


def test_truncated_file(tmp_path, tiny_file):
    data = open(tiny_file, "rb").read()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert_usage_error(spvjit("run", str(cut)), "cut.gguf", "truncated")


def test_not_a_gguf(tmp_path):
    bad = tmp_path / "text.gguf"
    bad.write_text("hello")
    assert_usage_error(spvjit("bench", str(bad)), "not a GGUF file")


def test_other_architecture(make_tiny_gguf):
    path = make_tiny_gguf("gpt2.gguf", arch="gpt2")
    assert_usage_error(spvjit("run", str(path)), "architecture 'gpt2' is not supported")


def test_unknown_tensor_type(make_tiny_gguf):
    path = make_tiny_gguf("q8_1.gguf", type_overrides={"blk.1.ffn_up.weight": Q.Q8_1})
    assert_usage_error(spvjit("run", str(path)), "blk.1.ffn_up.weight", "Q8_1")


def test_prompt_longer_than_context(tiny_file):
    assert_usage_error(spvjit("run", tiny_file, "--ctx", "4", "-p", "hello hello hello world"),
                       "prompt has", "context of 4")


@pytest.mark.parametrize("flags,fragment", [
    (["-n", "-1"], "-n must be >= 0"),
    (["--temp", "-0.5"], "--temp must be >= 0"),
    (["--top-k", "-3"], "--top-k must be >= 0"),
    (["--top-p", "0"], "--top-p must be in (0, 1]"),
    (["--top-p", "1.5"], "--top-p must be in (0, 1]"),
    (["--ctx", "0"], "--ctx must be at least 1"),
    (["-n", "many"], "invalid int value: 'many'"),
])
def test_bad_run_flags(tiny_file, flags, fragment):
    assert_usage_error(spvjit("run", tiny_file, *flags), fragment)


def test_unknown_flag():
    # reported by the top-level parser (cli/main.py) as one line
    res = spvjit("run", "--frobnicate")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        "spvjit: error: unrecognized arguments: --frobnicate (see spvjit --help)"]


@pytest.mark.parametrize("flags,fragment", [(["-r", "0"], "-r must be at least 1"), (["-p", "-2"], ">= 0")])
def test_bad_bench_flags(tiny_file, flags, fragment):
    assert_usage_error(spvjit("bench", tiny_file, *flags), fragment)


def test_run_tiny_model(tiny_file):
    res = spvjit("run", tiny_file, "-p", "hello world", "-n", "6", "--temp", "0")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("hello world")
    assert "Traceback" not in res.stderr
    for key in ("load time:", "prompt:", "generation:", "tokens/s"):
        assert key in res.stderr


def test_run_sampling_is_reproducible_with_a_seed(tiny_file):
    a = spvjit("run", tiny_file, "-p", "hello", "-n", "8", "--seed", "7", "--temp", "1.5", "--top-k", "0")
    b = spvjit("run", tiny_file, "-p", "hello", "-n", "8", "--seed", "7", "--temp", "1.5", "--top-k", "0")
    assert a.returncode == b.returncode == 0, a.stderr
    assert a.stdout == b.stdout


def test_bench_json(tiny_file):
    res = spvjit("bench", tiny_file, "-p", "8", "-n", "4", "-r", "1", "--json")
    assert res.returncode == 0, res.stderr
    results = json.loads(res.stdout)
    assert [r["test"] for r in results] == ["pp8", "tg4"]
    assert all(r["avg_ts"] > 0 and r["load_s"] > 0 for r in results)


def test_run_default_model_greedy(default_path):
    res = spvjit("run", "-p", "Once upon a time, there was", "-n", "12", "--temp", "0")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("Once upon a time, there was a small town nestled in the heart of a bustling city.")


def test_ctrl_c_stops_with_stats(default_path):
    proc = subprocess.Popen([sys.executable, "-m", "spvjit.cli.main", "run", "-p", "Once upon a time", "-n", "2000",
                             "--temp", "0.8", "--seed", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.read(len("Once upon a time") + 8)  # the prompt echo and some tokens
        assert first.startswith("Once upon a time")
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "generation:" in err and "stopped:     interrupted" in err


class _ScriptedModel:
    """Stands in for DeviceLlama in generate(): yields a fixed token sequence."""

    def __init__(self, config, script, interrupt_at=None, max_ctx=64):
        self.config, self.script, self.interrupt_at, self.max_ctx = config, list(script), interrupt_at, max_ctx
        self.calls = []

    def forward_argmax(self, tokens, pos):
        self.calls.append((list(tokens), pos))
        if self.interrupt_at is not None and len(self.calls) > self.interrupt_at:
            raise KeyboardInterrupt
        return self.script[len(self.calls) - 1]


def test_generate_stops_at_eos_length_context_and_ctrl_c(tiny_model):
    from spvjit.models.llama import Sampler, Tokenizer
    from spvjit.models.llama.generate import generate

    tok = Tokenizer.from_gguf(tiny_model)
    eos = tiny_model.config.eos_token_id
    greedy = Sampler(temperature=0)
    text = []
    m = _ScriptedModel(tiny_model.config, [260, 261, eos, 262])
    st = generate(m, tok, [1, 5], 10, greedy, text.append)
    assert st.tokens == [260, 261, eos] and st.stop_reason == "eos"
    assert m.calls == [([1, 5], 0), ([260], 2), ([261], 3)]   # positions follow the prompt
    assert "".join(text) == tok.decode([260, 261], special=False)
    st = generate(_ScriptedModel(tiny_model.config, [260] * 9), tok, [1], 4, greedy)
    assert st.gen_tokens == 4 and st.decode_steps == 3 and st.stop_reason == "length"
    st = generate(_ScriptedModel(tiny_model.config, [260] * 9, max_ctx=4), tok, [1, 2], 9, greedy)
    assert st.tokens == [260] * 3 and st.stop_reason == "context"   # positions 2 and 3 decoded
    st = generate(_ScriptedModel(tiny_model.config, [260] * 9, interrupt_at=3), tok, [1], 9, greedy)
    assert st.stop_reason == "interrupted" and st.tokens == [260] * 3 and st.prompt_tps > 0
