"""The GGUF type every metadata key the llama runner reads must have.

A key of the wrong type (a rope base stored as a string, token ids as floats, a token
list of integers) is refused when the file is opened, with an error that names the key,
the type expected and the type found, instead of failing somewhere downstream.

Keys under the architecture's prefix (``llama.rope.freq_base``) are listed without it.
Keys not listed here are returned as stored. Add new keys the runner reads here.
"""

from __future__ import annotations

from .gguf_reader import ARRAY, BOOL, FLOAT_TYPES, INT_TYPES, STRING, Field

INT, FLOAT, STR, FLAG, STR_LIST, INT_LIST, FLOAT_LIST = (
    "integer", "number", "string", "bool", "array of strings", "array of integers", "array of numbers")

GENERAL_KEYS = {
    "general.architecture": STR,
    "general.name": STR,
    "general.alignment": INT,
    "tokenizer.ggml.model": STR,
    "tokenizer.ggml.pre": STR,
    "tokenizer.ggml.tokens": STR_LIST,
    "tokenizer.ggml.scores": FLOAT_LIST,
    "tokenizer.ggml.token_type": INT_LIST,
    "tokenizer.ggml.merges": STR_LIST,
    "tokenizer.ggml.bos_token_id": INT,
    "tokenizer.ggml.eos_token_id": INT,
    "tokenizer.ggml.unknown_token_id": INT,
    "tokenizer.ggml.padding_token_id": INT,
    "tokenizer.ggml.add_bos_token": FLAG,
    "tokenizer.ggml.add_eos_token": FLAG,
    "tokenizer.ggml.add_space_prefix": FLAG,
    "tokenizer.chat_template": STR,
}

ARCH_KEYS = {  # under f"{arch}."
    "vocab_size": INT,
    "context_length": INT,
    "embedding_length": INT,
    "block_count": INT,
    "feed_forward_length": INT,
    "expert_count": INT,
    "attention.head_count": INT,
    "attention.head_count_kv": INT,
    "attention.key_length": INT,
    "attention.value_length": INT,
    "attention.layer_norm_rms_epsilon": FLOAT,
    "rope.freq_base": FLOAT,
    "rope.dimension_count": INT,
    "rope.scaling.type": STR,
    "rope.scaling.factor": FLOAT,
    "rope.scale_linear": FLOAT,
}


def expected_kind(key: str) -> str | None:
    """The kind ``key`` must have, or None for keys the runner does not read."""
    if key in GENERAL_KEYS:
        return GENERAL_KEYS[key]
    prefix, _, rest = key.partition(".")
    if prefix in ("general", "tokenizer"):
        return None
    return ARCH_KEYS.get(rest)


def matches(field: Field, kind: str) -> bool:
    """Whether a stored field has the kind (integers count as numbers; bools are not integers)."""
    t, item = field.vtype, field.item_type
    return {
        INT: t in INT_TYPES,
        FLOAT: t in FLOAT_TYPES or t in INT_TYPES,
        STR: t == STRING,
        FLAG: t == BOOL,
        STR_LIST: t == ARRAY and item == STRING,
        INT_LIST: t == ARRAY and item in INT_TYPES,
        FLOAT_LIST: t == ARRAY and (item in FLOAT_TYPES or item in INT_TYPES),
    }[kind]
