"""End-of-generation tokens (llama.cpp's set, see models/llama/eog.py) and --system."""

from __future__ import annotations

import pytest

from spvjit.models.llama import ModelError, Sampler, Tokenizer
from spvjit.models.llama.eog import end_of_generation_ids
from spvjit.models.llama.generate import generate

from .conftest import tiny_vocab
from .test_cli import _ScriptedModel, spvjit


def tiny_metadata(extra_tokens=(), **keys):
    tokens, scores, types = tiny_vocab()
    tokens = tokens + [t for t, _ in extra_tokens]
    types = types + [ty for _, ty in extra_tokens]
    meta = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.token_type": types, "tokenizer.ggml.scores": scores + [0.0] * len(extra_tokens),
            "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2}
    meta.update({f"tokenizer.ggml.{k}": v for k, v in keys.items()})
    return meta


def test_default_model_stops_where_llama_cpp_does(default_tokenizer):
    # llama.cpp (llm_load_print_meta) lists EOG 0 <|endoftext|>, 2 <|im_end|>, 4 <reponame>
    assert default_tokenizer.eog_ids == {0, 2, 4}


def test_metadata_ids_and_end_of_turn_markers():
    n = len(tiny_vocab()[0])
    assert Tokenizer.from_metadata(tiny_metadata().get).eog_ids == {2}     # "</s>": eos only
    meta = tiny_metadata([("<|eot_id|>", 3), ("<|eom_id|>", 3), ("<|start_header_id|>", 3), ("<file_sep>", 3)],
                         eot_token_id=n, eom_token_id=n + 1, fim_sep_token_id=n + 3)
    assert Tokenizer.from_metadata(meta.get).eog_ids == {2, n, n + 1, n + 3}
    # markers count by their text even without metadata ids (and whatever their type)
    meta = tiny_metadata([("<end_of_turn>", 3), ("<|im_end|>", 1), ("<|fim_pad|>", 3)])
    assert Tokenizer.from_metadata(meta.get).eog_ids == {2, n, n + 1, n + 2}


@pytest.mark.parametrize("value", [10_000, -1, "3"])
def test_bad_ids_are_one_line_errors(value):
    meta = tiny_metadata(eot_token_id=value)
    with pytest.raises(ModelError) as e:
        end_of_generation_ids(meta["tokenizer.ggml.tokens"], meta.get, "x.gguf")
    assert str(e.value) == f"x.gguf: metadata key 'tokenizer.ggml.eot_token_id': {value!r} is not a token id"


def test_generate_stops_at_any_end_of_generation_token(tiny_model):
    meta = tiny_metadata([("<|im_end|>", 3)])
    tok = Tokenizer.from_metadata(meta.get)
    im_end = len(meta["tokenizer.ggml.tokens"]) - 1
    st = generate(_ScriptedModel(tiny_model.config, [260, im_end, 261]), tok, [1], 10, Sampler(temperature=0))
    assert st.tokens == [260, im_end] and st.stop_reason == "eos"


def test_run_with_a_system_message(default_path):
    # --system implies --chat; the answer ends at <|im_end|> long before -n
    res = spvjit("run", "--system", "You are a terse assistant. Answer in one word.",
                 "-p", "What color is the sky on a clear day?", "-n", "64", "--temp", "0")
    assert res.returncode == 0, res.stderr
    assert "blue" in res.stdout.lower() and "<|im" not in res.stdout
    assert "stopped:     eos" in res.stderr
