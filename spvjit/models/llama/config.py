"""LlamaConfig: the hyperparameters of a llama-architecture GGUF, read from its metadata.

GGUF keeps architecture hyperparameters under the architecture's own prefix
(``llama.block_count``, ``llama.attention.head_count``, ...), so the keys here are written
without it and looked up as ``f"{arch}.{key}"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from .errors import ModelError

SUPPORTED_ARCHITECTURES = ("llama", "qwen2")
# Architectures whose GGUF keeps Q/K in HF's order, so rope rotates the pairs (i, i + d/2) of a
# head (llama.cpp's NEOX rope), and that add biases to the Q/K/V projections.
NEOX_ROPE_ARCHITECTURES = ("qwen2",)
QKV_BIAS_ARCHITECTURES = ("qwen2",)
# llama.cpp's converter writes these when rope scaling is off or unknown.
_ROPE_SCALING_TYPES = ("none", "linear", "yarn", "longrope")


@dataclass(frozen=True)
class LlamaConfig:
    arch: str
    n_vocab: int
    n_ctx_train: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    rope_freq_base: float
    rope_dim: int  # leading dims of each head that are rotated (= head_dim for llama)
    rope_scaling_type: str  # "none" or "linear" (others are parsed, but not run)
    rope_scaling_factor: float
    rms_eps: float
    bos_token_id: int | None
    eos_token_id: int | None
    add_bos: bool
    add_eos: bool
    tied_embeddings: bool  # True: no output.weight, logits use token_embd.weight
    name: str = ""
    rope_neox: bool = False  # rotate pairs (i, i + rope_dim / 2), not (2i, 2i + 1)

    @property
    def n_gqa(self) -> int:
        """Query heads sharing one key/value head."""
        return self.n_head // self.n_head_kv

    @property
    def q_dim(self) -> int:
        return self.n_head * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_head_kv * self.head_dim

    @classmethod
    def from_metadata(
        cls,
        get: Callable[[str], Any],
        where: str,
        *,
        n_vocab_hint: int | None,
        tied_embeddings: bool,
        tokenizer_model: str | None,
    ) -> "LlamaConfig":
        """Build a config; ``get(key)`` returns a metadata value or None when absent.

        ``where`` prefixes error messages (the file name). ``n_vocab_hint`` is used when the
        file lacks ``{arch}.vocab_size`` (older converters): the token list's length.
        """
        arch = get("general.architecture")
        if arch is None:
            raise ModelError(f"{where}: metadata key 'general.architecture' is missing")
        if arch not in SUPPORTED_ARCHITECTURES:
            raise ModelError(
                f"{where}: architecture {arch!r} is not supported (supported: {', '.join(SUPPORTED_ARCHITECTURES)})"
            )

        def key(k: str) -> str:
            return f"{arch}.{k}"

        def req(k: str) -> Any:
            v = get(key(k))
            if v is None:
                raise ModelError(f"{where}: metadata key {key(k)!r} is missing")
            return v

        def opt(k: str, default: Any) -> Any:
            v = get(key(k))
            return default if v is None else v

        def positive(k: str, v: Any) -> int:
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ModelError(f"{where}: metadata key {key(k)!r} must be a positive integer, got {v!r}")
            return v

        def positive_float(k: str, v: Any) -> float:
            # NaN, infinities, 0 and negatives all make rope or RMSNorm silently wrong.
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise ModelError(f"{where}: metadata key {key(k)!r} must be a finite number > 0, got {v!r}")
            return float(v)

        if opt("expert_count", 0):
            raise ModelError(f"{where}: metadata key {key('expert_count')!r}: mixture-of-experts llama is not supported")
        n_embd = positive("embedding_length", req("embedding_length"))
        n_layer = positive("block_count", req("block_count"))
        n_head = positive("attention.head_count", req("attention.head_count"))
        n_head_kv = positive("attention.head_count_kv", opt("attention.head_count_kv", n_head))
        if n_head % n_head_kv:
            raise ModelError(
                f"{where}: metadata key {key('attention.head_count_kv')!r}: {n_head} query heads "
                f"are not a multiple of {n_head_kv} key/value heads"
            )
        if get(key("attention.key_length")) is None and n_embd % n_head:
            raise ModelError(f"{where}: metadata key {key('embedding_length')!r}: {n_embd} is not a multiple "
                             f"of {n_head} heads")
        head_dim = positive("attention.key_length", opt("attention.key_length", n_embd // n_head))
        v_dim = opt("attention.value_length", head_dim)
        if v_dim != head_dim:
            raise ModelError(f"{where}: metadata key {key('attention.value_length')!r}: {v_dim} != key length {head_dim}")
        n_vocab = opt("vocab_size", n_vocab_hint)
        if n_vocab is None:
            raise ModelError(f"{where}: metadata key {key('vocab_size')!r} is missing and there is no token list")
        rope_dim = positive("rope.dimension_count", opt("rope.dimension_count", head_dim))
        if rope_dim > head_dim or rope_dim % 2:
            raise ModelError(f"{where}: metadata key {key('rope.dimension_count')!r}: bad value {rope_dim} for head size {head_dim}")
        neox = arch in NEOX_ROPE_ARCHITECTURES
        if neox and rope_dim != head_dim:
            raise ModelError(f"{where}: metadata key {key('rope.dimension_count')!r}: partial rotation "
                             f"({rope_dim} of {head_dim}) with {arch}'s rope is not supported")
        scaling = str(opt("rope.scaling.type", "none"))
        if scaling not in _ROPE_SCALING_TYPES:
            raise ModelError(f"{where}: metadata key {key('rope.scaling.type')!r}: unknown rope scaling {scaling!r}")
        factor = positive_float("rope.scaling.factor", opt("rope.scaling.factor", 1.0) or 1.0)
        # Older files wrote linear scaling only as rope.scale_linear.
        if scaling == "none" and opt("rope.scale_linear", None) not in (None, 1.0):
            scaling, factor = "linear", positive_float("rope.scale_linear", opt("rope.scale_linear", 1.0))

        # SentencePiece ("llama") vocabularies conventionally start with BOS; byte-level BPE
        # ones do not unless the file says so (matching llama.cpp's defaults).
        add_bos_default = tokenizer_model == "llama"
        add_bos = get("tokenizer.ggml.add_bos_token")
        add_eos = get("tokenizer.ggml.add_eos_token")
        return cls(
            arch=arch,
            n_vocab=positive("vocab_size", n_vocab),
            n_ctx_train=positive("context_length", opt("context_length", 2048)),
            n_embd=n_embd,
            n_layer=n_layer,
            n_head=n_head,
            n_head_kv=n_head_kv,
            head_dim=head_dim,
            n_ff=positive("feed_forward_length", req("feed_forward_length")),
            rope_freq_base=positive_float("rope.freq_base", opt("rope.freq_base", 10000.0)),
            rope_dim=rope_dim,
            rope_scaling_type=scaling,
            rope_scaling_factor=factor,
            rms_eps=positive_float("attention.layer_norm_rms_epsilon", opt("attention.layer_norm_rms_epsilon", 1e-5)),
            bos_token_id=get("tokenizer.ggml.bos_token_id"),
            eos_token_id=get("tokenizer.ggml.eos_token_id"),
            add_bos=add_bos_default if add_bos is None else bool(add_bos),
            add_eos=False if add_eos is None else bool(add_eos),
            tied_embeddings=tied_embeddings,
            name=str(get("general.name") or ""),
            rope_neox=neox,
        )
