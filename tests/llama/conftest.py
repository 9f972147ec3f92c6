"""Fixtures: the default model (loaded once) and tiny random llama GGUFs written on the fly.

The tiny model has a SentencePiece ("llama") vocabulary, F16/Q8_0/F32 tensors and
untied output weights, so loader, tokenizer and reference run on a second, very
different file. ``make_tiny_gguf(**changes)`` writes variants, broken ones included.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from spvjit.models.llama import QUANT_TYPES, ModelError, default_model_path, load_gguf

Q = gguf.GGMLQuantizationType
SPACE = "\u2581"

# Tiny SentencePiece vocabulary: <unk> <s> </s>, 256 byte tokens, then scored pieces.
# Higher score = merged earlier. The tokenizer tests derive expected splits from this.
TINY_PIECES = [
    (SPACE, -1.0), ("a", -2.0), ("h", -5.0), ("e", -6.0), ("l", -7.0), ("o", -8.0), ("w", -9.0),
    ("r", -10.0), ("d", -11.0), ("ll", -12.0), ("he", -13.0), (SPACE + "he", -14.0), ("llo", -15.0),
    ("hello", -16.0), (SPACE + "hello", -17.0), (SPACE + "w", -18.0), ("or", -19.0),
    (SPACE + "wor", -20.0), ("ld", -21.0), ("aa", -22.0),
]
TINY_USER_DEFINED = ["<tool>"]  # recognized in text even without parse_special


def tiny_vocab() -> tuple[list[str], list[float], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    scores = [0.0] * len(tokens)
    for piece, score in TINY_PIECES:
        tokens.append(piece)
        scores.append(score)
        types.append(1)
    for piece in TINY_USER_DEFINED:
        tokens.append(piece)
        scores.append(0.0)
        types.append(4)
    return tokens, scores, types


TINY = dict(n_embd=64, n_layer=2, n_head=4, n_head_kv=2, n_ff=96, n_ctx=128, rope_base=10000.0, eps=1e-5)
# gguf's numpy quantizer covers these; the other types get random blocks (random_quantized)
GGUF_QUANTIZES = {Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.BF16}


def random_quantized(shape: tuple[int, int], qtype: Q, std: float, rng) -> np.ndarray:
    """GGUF bytes of a (rows, cols) matrix of type qtype whose values have about ``std``.

    For types gguf cannot quantize (the K-quants, IQ4): random blocks, every quant and
    packed-scale byte random, the fp16 fields (d, dmin, m) drawn N(0, 1) and then scaled
    together, so that the decoded values have the wanted spread (they are linear in them).
    """
    from spvjit.models.llama import dequantize

    qt = QUANT_TYPES[qtype.name]
    n_blocks = shape[0] * shape[1] // qt.block_elems
    blocks = rng.integers(0, 256, (n_blocks, qt.block_bytes), dtype=np.uint8)
    halves = [f for f in qt.fields if f.dtype == "<f2"]
    base = {f.name: rng.standard_normal((n_blocks, f.count)) for f in halves}

    def put(scale: float) -> np.ndarray:
        for f in halves:
            vals = (base[f.name] * scale).astype("<f2").view(np.uint8).reshape(n_blocks, -1)
            blocks[:, f.offset:f.offset + f.n_bytes] = vals
        return blocks.reshape(-1)

    measured = dequantize(put(1.0), qtype.name, shape).std()
    return put(std / measured)


def write_tiny_gguf(
    path: Path,
    *,
    arch: str = "llama",
    tied: bool = False,
    seed: int = 0,
    drop_tensor: str | None = None,
    type_overrides: dict[str, Q] | None = None,
    tokenizer_model: str = "llama",
    pre: str | None = None,
    hparams: dict | None = None,
    all_types: Q | None = None,
    dims: dict | None = None,
    rope_freqs: np.ndarray | None = None,
    qkv_bias: bool = False,
) -> Path:
    """Write a random-weight llama GGUF with the TINY hyperparameters (updated by ``dims``, then
    by ``hparams``) to ``path``. ``all_types``: every matrix (token_embd and output included)
    of that type."""
    rng = np.random.default_rng(seed)
    c = {**TINY, **(dims or {}), **(hparams or {})}
    head_dim = c["n_embd"] // c["n_head"]
    tokens, scores, types = tiny_vocab()
    w = gguf.GGUFWriter(str(path), arch)
    w.add_string("general.name", "tiny-test-llama")
    w.add_uint32(f"{arch}.context_length", c["n_ctx"])
    w.add_uint32(f"{arch}.embedding_length", c["n_embd"])
    w.add_uint32(f"{arch}.block_count", c["n_layer"])
    w.add_uint32(f"{arch}.feed_forward_length", c["n_ff"])
    w.add_uint32(f"{arch}.attention.head_count", c["n_head"])
    w.add_uint32(f"{arch}.attention.head_count_kv", c["n_head_kv"])
    w.add_uint32(f"{arch}.rope.dimension_count", head_dim)
    w.add_float32(f"{arch}.rope.freq_base", c["rope_base"])
    w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", c["eps"])
    w.add_string("tokenizer.ggml.model", tokenizer_model)
    if pre is not None:
        w.add_string("tokenizer.ggml.pre", pre)
    w.add_array("tokenizer.ggml.tokens", tokens)
    w.add_array("tokenizer.ggml.scores", scores)
    w.add_array("tokenizer.ggml.token_type", types)
    w.add_uint32("tokenizer.ggml.bos_token_id", 1)
    w.add_uint32("tokenizer.ggml.eos_token_id", 2)
    w.add_uint32("tokenizer.ggml.unknown_token_id", 0)
    w.add_bool("tokenizer.ggml.add_bos_token", True)
    w.add_string("tokenizer.chat_template", "{% for m in messages %}{{ '<|im_start|>' + m['role'] }}{% endfor %}")

    n_vocab, d, f = len(tokens), c["n_embd"], c["n_ff"]
    kv = c["n_head_kv"] * head_dim
    shapes = {"token_embd.weight": ((n_vocab, d), Q.F16), "output_norm.weight": ((d,), Q.F32)}
    if not tied:
        shapes["output.weight"] = ((n_vocab, d), Q.Q8_0)
    for i in range(c["n_layer"]):
        b = f"blk.{i}."
        shapes |= {
            b + "attn_norm.weight": ((d,), Q.F32), b + "ffn_norm.weight": ((d,), Q.F32),
            b + "attn_q.weight": ((d, d), Q.Q8_0), b + "attn_k.weight": ((kv, d), Q.F16),
            b + "attn_v.weight": ((kv, d), Q.Q8_0), b + "attn_output.weight": ((d, d), Q.F16),
            b + "ffn_gate.weight": ((f, d), Q.Q8_0), b + "ffn_up.weight": ((f, d), Q.F16),
            b + "ffn_down.weight": ((d, f), Q.Q8_0),
        }
    if rope_freqs is not None:   # llama 3.1-style frequency factors
        shapes["rope_freqs.weight"] = ((head_dim // 2,), Q.F32)
    if qkv_bias:                 # qwen2: biases on the q, k and v projections
        for i in range(c["n_layer"]):
            shapes |= {f"blk.{i}.attn_q.bias": ((d,), Q.F32), f"blk.{i}.attn_k.bias": ((kv,), Q.F32),
                       f"blk.{i}.attn_v.bias": ((kv,), Q.F32)}
    for name, (shape, qtype) in shapes.items():
        if all_types is not None and len(shape) == 2:
            qtype = all_types
        qtype = (type_overrides or {}).get(name, qtype)
        if name.endswith("norm.weight"):
            values = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name == "rope_freqs.weight":
            values = np.asarray(rope_freqs, np.float32)
        elif name.endswith(".bias"):
            values = 0.5 * rng.standard_normal(shape)
        else:  # scaled so activations stay O(1) through the layers
            values = rng.standard_normal(shape) / np.sqrt(shape[-1])
        if name == drop_tensor:
            continue
        if qtype == Q.F32:
            w.add_tensor(name, values.astype(np.float32))
        elif qtype == Q.F16:
            w.add_tensor(name, values.astype(np.float16))
        elif qtype in GGUF_QUANTIZES:
            w.add_tensor(name, gguf.quants.quantize(values.astype(np.float32), qtype), raw_dtype=qtype)
        elif qtype.name in QUANT_TYPES:
            raw = random_quantized(shape, qtype, 1.0 / np.sqrt(shape[-1]), rng)
            w.add_tensor(name, raw.reshape(shape[0], -1), raw_dtype=qtype)
        else:   # a type the runner does not read (the error tests): any bytes of the right size
            block, size = gguf.GGML_QUANT_SIZES[qtype]
            w.add_tensor(name, rng.integers(0, 256, (shape[0], shape[1] // block * size), dtype=np.uint8),
                         raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def make_tiny_gguf(tmp_path):
    """``make_tiny_gguf(name="x.gguf", **write_tiny_gguf options) -> Path``."""

    def make(name: str = "tiny.gguf", **kwargs) -> Path:
        return write_tiny_gguf(tmp_path / name, **kwargs)

    return make


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


@pytest.fixture(scope="session")
def tiny_model(tiny_path):
    return load_gguf(tiny_path)


@pytest.fixture(scope="session")
def default_path() -> Path:
    try:
        return default_model_path()
    except ModelError as e:  # the default model is a setup step, not a test subject here
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def default_model(default_path):
    return load_gguf(default_path)


@pytest.fixture(scope="session")
def default_tokenizer(default_model):
    from spvjit.models.llama import Tokenizer

    return Tokenizer.from_gguf(default_model)
