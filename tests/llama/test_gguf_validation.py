"""The validating GGUF reader: each damaged or hostile file named in issue 13 gets one
line naming the file and the key or tensor at fault, in bounded time and memory."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from fuzz.gguf_fuzz import run_case
from fuzz.gguf_mutations import KV, VT, read_doc, serialize
from spvjit.models.llama import ModelError, Tokenizer, chat_template_of, load_gguf
from spvjit.models.llama.errors import printable


@pytest.fixture(scope="module")
def seed_doc(tiny_path):
    return read_doc(tiny_path)


def write(doc, tmp_path, name="bad.gguf") -> Path:
    path = tmp_path / name
    path.write_bytes(serialize(doc).data)
    return path


def with_key(doc, key, vtype, value, item_type=None):
    kvs = [kv for kv in doc.kvs if kv.key != key] + [KV(key, vtype, value, item_type)]
    return replace(doc, kvs=kvs)


def with_tensor(doc, name, **changes):
    return replace(doc, tensors=[replace(t, **changes) if t.name == name else t for t in doc.tensors])


def load_error(path: Path) -> str:
    """Open the file as `spvjit run` does (config, tokenizer, template) and return the one-line error."""
    with pytest.raises(ModelError) as e:
        mf = load_gguf(path)
        Tokenizer.from_gguf(mf)
        chat_template_of(mf)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(path.name + ": "), msg
    return msg


def test_reencoded_seed_loads(seed_doc, tmp_path):
    # The tests below change one thing each; the unchanged file must be fine.
    mf = load_gguf(write(seed_doc, tmp_path, "same.gguf"))
    Tokenizer.from_gguf(mf)
    assert mf.config.n_layer == 2


# -- metadata of the wrong type ---------------------------------------------------------------

@pytest.mark.parametrize("key,vtype,value,item,expected,actual", [
    ("llama.rope.freq_base", VT.STRING, "10000", None, "number", "string"),
    ("tokenizer.ggml.pre", VT.UINT32, 7, None, "string", "uint32"),
    ("tokenizer.ggml.bos_token_id", VT.STRING, "1", None, "integer", "string"),
    ("tokenizer.ggml.eos_token_id", VT.FLOAT32, 2.0, None, "integer", "float32"),
    ("tokenizer.chat_template", VT.INT32, 5, None, "string", "int32"),
    ("tokenizer.ggml.tokens", VT.ARRAY, list(range(300)), VT.INT32, "array of strings", "array of int32"),
    ("tokenizer.ggml.merges", VT.ARRAY, [1, 2, 3], VT.UINT8, "array of strings", "array of uint8"),
    ("tokenizer.ggml.scores", VT.ARRAY, ["a"], VT.STRING, "array of numbers", "array of string"),
    ("llama.block_count", VT.FLOAT32, 2.0, None, "integer", "float32"),
    ("tokenizer.ggml.add_bos_token", VT.UINT8, 1, None, "bool", "uint8"),
])
def test_metadata_of_the_wrong_type(seed_doc, tmp_path, key, vtype, value, item, expected, actual):
    msg = load_error(write(with_key(seed_doc, key, vtype, value, item), tmp_path))
    assert msg == f"bad.gguf: metadata key {key!r} has type {actual}, expected {expected}"


def test_too_few_sentencepiece_scores(seed_doc, tmp_path):
    scores = next(kv for kv in seed_doc.kvs if kv.key == "tokenizer.ggml.scores").value
    doc = with_key(seed_doc, "tokenizer.ggml.scores", VT.ARRAY, scores[:10], VT.FLOAT32)
    msg = load_error(write(doc, tmp_path))
    assert msg == f"bad.gguf: metadata key 'tokenizer.ggml.scores' has 10 entries for {len(scores)} tokens"


def test_vocabulary_shorter_than_the_embedding(seed_doc, tmp_path):
    tokens = next(kv for kv in seed_doc.kvs if kv.key == "tokenizer.ggml.tokens").value
    doc = with_key(seed_doc, "llama.vocab_size", VT.UINT32, len(tokens))
    doc = with_key(doc, "tokenizer.ggml.tokens", VT.ARRAY, tokens[:-5], VT.STRING)
    msg = load_error(write(doc, tmp_path))
    assert f"'tokenizer.ggml.tokens' has {len(tokens) - 5} tokens, but the vocabulary size is {len(tokens)}" in msg


@pytest.mark.parametrize("value", [float("nan"), 0.0, -10000.0, float("inf")])
def test_rope_base_must_be_finite_and_positive(seed_doc, tmp_path, value):
    msg = load_error(write(with_key(seed_doc, "llama.rope.freq_base", VT.FLOAT32, value), tmp_path))
    assert "metadata key 'llama.rope.freq_base' must be a finite number > 0" in msg


def test_rms_epsilon_must_be_finite_and_positive(seed_doc, tmp_path):
    doc = with_key(seed_doc, "llama.attention.layer_norm_rms_epsilon", VT.FLOAT32, float("nan"))
    assert "must be a finite number > 0" in load_error(write(doc, tmp_path))


def test_heads_must_divide_the_embedding(seed_doc, tmp_path):
    doc = with_key(seed_doc, "llama.attention.head_count", VT.UINT32, 3)
    doc = with_key(doc, "llama.attention.head_count_kv", VT.UINT32, 3)
    doc = replace(doc, kvs=[kv for kv in doc.kvs if kv.key != "llama.rope.dimension_count"])
    assert "64 is not a multiple of 3 heads" in load_error(write(doc, tmp_path))


def test_bos_id_outside_the_vocabulary(seed_doc, tmp_path):
    doc = with_key(seed_doc, "tokenizer.ggml.bos_token_id", VT.UINT32, 10**6)
    assert "'tokenizer.ggml.bos_token_id' is 1000000, not a token id" in load_error(write(doc, tmp_path))


# -- hostile sizes: fast, small, and a message that says what is wrong --------------------------

def test_block_count_2_to_the_31(seed_doc, tmp_path):
    path = write(with_key(seed_doc, "llama.block_count", VT.UINT32, 2**31), tmp_path)
    t0 = time.perf_counter()
    r = run_case(path, target=lambda p: load_gguf(p))
    assert r.outcome == "rejected" and r.seconds < 5, r
    assert "'llama.block_count' is 2147483648, but the file has only" in r.message
    assert r.within_memory, r  # it used to build a dict entry per layer: 9-12 GB
    assert time.perf_counter() - t0 < 10


def test_block_count_smaller_than_the_tensors(seed_doc, tmp_path):
    msg = load_error(write(with_key(seed_doc, "llama.block_count", VT.UINT32, 1), tmp_path))
    assert "tensor 'blk.1.attn_norm.weight' does not belong to any of the 1 blocks" in msg


@pytest.mark.parametrize("count", [2**62 + 1, 2**64 - 1, 10**9])
def test_corrupt_array_length_is_not_walked(seed_doc, tmp_path, count):
    # A corrupt token count made gguf's reader walk the file element by element (GBs, minutes).
    enc = serialize(seed_doc)
    mark = next(m for m in enc.marks if m.label == "key tokenizer.ggml.tokens array length")
    data = bytearray(enc.data)
    data[mark.offset : mark.offset + 8] = count.to_bytes(8, "little")
    path = tmp_path / "count.gguf"
    path.write_bytes(bytes(data))
    r = run_case(path, target=lambda p: load_gguf(p))
    assert r.outcome == "rejected" and r.within_memory and r.seconds < 2, r
    assert f"metadata key 'tokenizer.ggml.tokens' claims {count} strings" in r.message
    assert "needs" not in r.message  # no absurd "needs 4611686018427389034 bytes"


def test_corrupt_array_item_type(seed_doc, tmp_path):
    enc = serialize(seed_doc)
    mark = next(m for m in enc.marks if m.label == "key tokenizer.ggml.scores item type")
    data = bytearray(enc.data)
    data[mark.offset : mark.offset + 4] = (11).to_bytes(4, "little")  # float32 -> int64: twice the bytes
    path = tmp_path / "itemtype.gguf"
    path.write_bytes(bytes(data))
    r = run_case(path, target=lambda p: Tokenizer.from_gguf(load_gguf(p)))
    assert r.outcome == "rejected" and r.within_memory, r


def test_zero_dimension_tensor(seed_doc, tmp_path):
    msg = load_error(write(with_tensor(seed_doc, "blk.0.attn_norm.weight", ne=()), tmp_path))
    assert msg == "bad.gguf: tensor 'blk.0.attn_norm.weight' has 0 dimensions (must be 1 to 4)"


def test_misaligned_tensor_offset(seed_doc, tmp_path):
    t = seed_doc.tensors[3]
    msg = load_error(write(with_tensor(seed_doc, t.name, offset=t.offset + 4), tmp_path))
    assert f"tensor {t.name!r} has data offset {t.offset + 4}, not a multiple of the alignment 32" in msg


@pytest.mark.parametrize("offset", [2**64 - 32, 2**63, 32 * 10**6])
def test_wrapping_or_distant_tensor_offset(seed_doc, tmp_path, offset):
    t = seed_doc.tensors[3]
    msg = load_error(write(with_tensor(seed_doc, t.name, offset=offset), tmp_path))
    assert f"tensor {t.name!r} has data offset {offset}, expected {t.offset}" in msg


def test_overlapping_tensors(seed_doc, tmp_path):
    a, b = seed_doc.tensors[2], seed_doc.tensors[3]
    msg = load_error(write(with_tensor(seed_doc, b.name, offset=a.offset), tmp_path))
    assert f"tensor {b.name!r} has data offset {a.offset}, expected {b.offset}" in msg


@pytest.mark.parametrize("ttype", [0, 2, 3, 30])  # F32, Q4_0, Q4_1, BF16 in place of the real type
def test_retyped_tensor(seed_doc, tmp_path, ttype):
    # A tensor given another type of a different size no longer ends where the next
    # begins (or overruns the file); the last tensor leaves bytes over or runs past the end.
    for t in (seed_doc.tensors[4], seed_doc.tensors[-1]):
        if t.ttype == ttype:
            continue
        msg = load_error(write(with_tensor(seed_doc, t.name, ttype=ttype), tmp_path))
        assert "offset" in msg or "after the last tensor" in msg or "truncated" in msg or "row length" in msg, msg


def test_unknown_tensor_type_id(seed_doc, tmp_path):
    t = seed_doc.tensors[0]
    assert f"tensor {t.name!r} has unknown type id 99" in load_error(write(with_tensor(seed_doc, t.name, ttype=99),
                                                                          tmp_path))


@pytest.mark.parametrize("value", [0, 3, 2**31 + 1])
def test_bad_alignment(seed_doc, tmp_path, value):
    msg = load_error(write(with_key(seed_doc, "general.alignment", VT.UINT32, value), tmp_path))
    assert f"'general.alignment' is {value}, not a power of two" in msg


def test_big_endian_file(seed_doc, tmp_path):
    msg = load_error(write(replace(seed_doc, version=0x03000000), tmp_path))
    assert msg == "bad.gguf: byte-swapped (big-endian) GGUF files are not supported"


def test_duplicate_key(seed_doc, tmp_path):
    msg = load_error(write(replace(seed_doc, kvs=seed_doc.kvs + seed_doc.kvs[:1]), tmp_path))
    assert f"metadata key {seed_doc.kvs[0].key!r} appears twice" in msg


# -- files that are not files --------------------------------------------------------------------

def test_directory_is_refused_by_name(tmp_path):
    (tmp_path / "model.gguf").mkdir()
    with pytest.raises(ModelError) as e:
        load_gguf(tmp_path / "model.gguf")
    assert str(e.value) == f"{tmp_path / 'model.gguf'}: is a directory, not a model file"


def test_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.gguf")
    with pytest.raises(ModelError) as e:
        load_gguf(tmp_path / "pipe.gguf")  # opening a FIFO for reading would wait for a writer
    assert str(e.value).endswith("pipe.gguf: is a FIFO (named pipe), not a model file")


def test_character_device_is_refused(tmp_path):
    os.symlink("/dev/zero", tmp_path / "zero.gguf")
    with pytest.raises(ModelError, match="zero.gguf: is a character device, not a model file"):
        load_gguf(tmp_path / "zero.gguf")


def test_empty_file(tmp_path):
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(ModelError, match=r"^empty\.gguf: not a GGUF file \(the file is empty\)$"):
        load_gguf(tmp_path / "empty.gguf")


# -- metadata shown on a terminal --------------------------------------------------------------------

def test_printable_escapes_terminal_controls():
    assert printable("tiny\x1b[2J\x07") == "tiny\\x1b[2J\\x07"
    assert printable("a\u202eb") == "a\\u202eb"  # right-to-left override
    assert printable("Llama 3 \u2013 \u65e5\u672c") == "Llama 3 \u2013 \u65e5\u672c"  # ordinary text unchanged
    assert len(printable("x" * 1000)) == 200


def test_metadata_type_is_reported(tiny_model):
    assert tiny_model.metadata_type("tokenizer.ggml.tokens") == "array of string"
    assert tiny_model.metadata_type("llama.block_count") == "uint32"


def test_token_that_is_not_utf8(seed_doc, tmp_path):
    tokens = next(kv for kv in seed_doc.kvs if kv.key == "tokenizer.ggml.tokens").value
    doc = with_key(seed_doc, "tokenizer.ggml.tokens", VT.ARRAY, tokens[:65] + [b"\xff\xfe"] + tokens[66:], VT.STRING)
    msg = load_error(write(doc, tmp_path))
    assert "metadata key 'tokenizer.ggml.tokens' item 65" in msg and "is not UTF-8" in msg


def test_cli_checks_the_vocabulary_before_the_device(seed_doc, tmp_path):
    # A bad token list used to surface only after the weights went to the device (220 MB of
    # setup in the fuzzer's measurement); now the command fails before touching it.
    from fuzz.gguf_fuzz import PAGE_ALLOWANCE, cli_case

    tokens = next(kv for kv in seed_doc.kvs if kv.key == "tokenizer.ggml.tokens").value
    bad = write(with_key(seed_doc, "tokenizer.ggml.tokens", VT.ARRAY, [b"\xff"] + tokens[1:], VT.STRING), tmp_path)
    bare = write(replace(seed_doc, kvs=[KV("general.name", VT.STRING, "bare")], tensors=[], data=b""), tmp_path,
                 "bare.gguf")
    _, _, base = cli_case(bare)
    code, err, peak = cli_case(bad)
    assert code == 2 and err.startswith("spvjit: error: bad.gguf: ") and "not UTF-8" in err, err
    assert peak - base <= 2 * bad.stat().st_size + PAGE_ALLOWANCE, (peak, base)
