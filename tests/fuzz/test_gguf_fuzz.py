"""Mutated GGUF files: one clear line or a working model, never a traceback, hang or memory bomb.

The CI part: 300+ hypothesis-chosen mutants run in this process (each under an alarm and a
data-size cap, peak RSS measured), and a few through the `spvjit run` command line in a
subprocess. `scripts/fuzz-gguf` runs the long mode (every deterministic mutant plus random
ones, 10,000+ cases, each in a worker process that is restarted if it crashes).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .gguf_fuzz import FAMILIES, PAGE_ALLOWANCE, SEEDS, Corpus, cli_case, run_case, write_case, write_seed
from .gguf_mutations import KV, VT, Doc, serialize


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, Corpus]:
    directory = tmp_path_factory.mktemp("fuzz")
    return {kind: Corpus(write_seed(kind, directory)) for kind in SEEDS}


@pytest.fixture(scope="module")
def corpus(corpora) -> Corpus:
    return corpora["spm"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mutants")


@pytest.mark.parametrize("kind", SEEDS)
def test_seed_file_is_accepted(corpora, workdir, kind):
    # The re-encoded seed must load and run: otherwise every mutant is trivially rejected.
    r = run_case(write_case(corpora[kind].enc.data, workdir))
    assert r.outcome == "ok", r.message


def test_bpe_seed_tokenizes_with_its_merges(corpora):
    from spvjit.models.llama import Tokenizer, load_gguf

    tok = Tokenizer.from_gguf(load_gguf(corpora["bpe"].seed_path))
    assert tok.model == "gpt2"
    ids = tok.encode("hello world", add_bos=False)
    assert [tok.tokens[i] for i in ids] == ["hello", "\u0120wor", "ld"]  # merges in BPE_MERGES


def test_corpus_covers_every_structure(corpus):
    labels = [m.label for m in corpus.enc.marks]
    assert any(label.startswith("key tokenizer.ggml.tokens") for label in labels)
    assert any(label.endswith("offset") for label in labels) and "tensor data" in labels
    doc_labels = [label for label, _ in corpus.docs]
    # every key the runner reads gets every other type
    assert any("llama.rope.freq_base as string" in x for x in doc_labels)
    assert any("tokenizer.ggml.tokens as array" in x for x in doc_labels)
    assert any(x == "key llama.block_count = 2147483648" for x in doc_labels)


@settings(max_examples=600, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.sampled_from(SEEDS), family=st.sampled_from(FAMILIES), index=st.integers(min_value=0, max_value=10**6))
def test_mutant(corpora, workdir, seed, family, index):
    label, data = corpora[seed].case(family, index)
    r = run_case(write_case(data, workdir))
    where = f"{seed} {family} {index} ({label})"
    assert r.outcome in ("ok", "rejected"), f"{where}: {r.outcome}: {r.message}"
    if r.outcome == "rejected":
        assert r.within_memory, f"{where}: peak {r.peak_bytes} bytes for a {r.file_bytes}-byte file"


# -- through the command line ------------------------------------------------------------

CLI_SAMPLE = [("doc", "key llama.rope.freq_base as string"), ("doc", "key llama.block_count = 2147483648"),
              ("huge", "key tokenizer.ggml.tokens array length = 18446744073709551615"),
              ("cut", "tensor data")]


def _find(corpus: Corpus, family: str, label: str) -> bytes:
    for i in range(corpus.size(family)):
        got, data = corpus.case(family, i)
        if got.startswith(label) or (family == "cut" and label in got):
            return data
    raise AssertionError(f"no {family} case {label!r}")


def test_cli_rejects_mutants_in_one_line(corpus, workdir):
    # The baseline: the same command on a 100-byte GGUF that parses and is then rejected
    # (the same code and imports, a negligible file).
    bare = Doc(kvs=[KV("general.name", VT.STRING, "bare")], tensors=[], data=b"")
    code, err, base_rss = cli_case(write_case(serialize(bare).data, workdir, "bare.gguf"))
    assert code == 2 and err == "spvjit: error: bare.gguf: metadata key 'general.architecture' is missing\n", err
    for family, label in CLI_SAMPLE:
        path = write_case(_find(corpus, family, label), workdir, "cli.gguf")
        code, err, rss = cli_case(path)
        assert code == 2, f"{label}: exit {code}: {err}"
        assert err.startswith("spvjit: error: cli.gguf: ") and err.count("\n") == 1, f"{label}: {err!r}"
        assert "Traceback" not in err
        bound = 2 * path.stat().st_size + PAGE_ALLOWANCE  # as run_case: pages and arenas, not bytes
        assert rss - base_rss <= bound, f"{label}: {rss - base_rss} bytes over the baseline"


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_cli_refuses_non_regular_files_by_name(workdir, kind):
    path = workdir / f"model-{kind}.gguf"
    if not path.exists():
        path.mkdir() if kind == "directory" else os.mkfifo(path)
    code, err, _ = cli_case(path, timeout=30)  # a FIFO must not block waiting for a writer
    assert code == 2, err
    expected = "a directory" if kind == "directory" else "a FIFO (named pipe)"
    assert err == f"spvjit: error: {path}: is {expected}, not a model file\n"
