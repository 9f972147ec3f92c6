"""Loading llama GGUF files: metadata, config and memory-mapped tensors.

Shape convention. GGUF lists dimensions fastest-varying first (``ne[0]`` is contiguous);
this module exposes shapes in numpy order, i.e. reversed. A weight matrix therefore has
shape ``(rows, cols) = (output features, input features)`` and a layer computes
``y = W @ x``; each row is ``cols // block_elems`` consecutive blocks of its GGML type.
One-dimensional tensors (norm weights) have shape ``(n,)``.

Tensor bytes are never copied: ``QuantTensor.data`` is a uint8 view of the file's mmap
(:mod:`.gguf_reader` maps the file read-only after checking every size in its header;
:mod:`.metadata_types` lists the type each metadata key must have).

Rope layout. llama.cpp's HF converter permutes the rows of ``attn_q``/``attn_k`` back
to Meta's original order, so the rope that matches these files rotates *adjacent* pairs
``(2i, 2i+1)`` of each head (ggml's "normal" rope), not HF's split halves ``(i, i+d/2)``.
The reference model applies it that way; its test checks a known continuation.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import QKV_BIAS_ARCHITECTURES, LlamaConfig
from .errors import ModelError
from .gguf_reader import GGUFFile, open_gguf
from .metadata_types import expected_kind, matches
from .quants import QUANT_TYPES, QuantType, dequantize, dequantize_rows

_MISSING = object()


@dataclass(frozen=True)
class QuantTensor:
    """One tensor of a GGUF file, still encoded."""

    name: str
    ggml_type: str  # key of QUANT_TYPES, e.g. "Q4_1"
    shape: tuple[int, ...]  # numpy order: (rows, cols) for matrices
    data: np.ndarray  # uint8, 1-D, a view of the mmap
    n_bytes: int

    @property
    def quant(self) -> QuantType:
        return QUANT_TYPES[self.ggml_type]

    @property
    def rows(self) -> int:
        return self.shape[0]

    @property
    def cols(self) -> int:
        return self.shape[-1]

    def dequantize(self) -> np.ndarray:
        """The whole tensor as float32 of ``shape``."""
        return dequantize(self.data, self.ggml_type, self.shape)

    def dequantize_rows(self, rows) -> np.ndarray:
        """Selected rows of a matrix as float32 (len(rows), cols)."""
        return dequantize_rows(self.data, self.ggml_type, self.shape, rows)


def _layer_shapes(c: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """Tensors every llama block must have, with their numpy-order shapes."""
    return {
        "attn_norm.weight": (c.n_embd,),
        "attn_q.weight": (c.q_dim, c.n_embd),
        "attn_k.weight": (c.kv_dim, c.n_embd),
        "attn_v.weight": (c.kv_dim, c.n_embd),
        "attn_output.weight": (c.n_embd, c.q_dim),
        "ffn_norm.weight": (c.n_embd,),
        "ffn_gate.weight": (c.n_ff, c.n_embd),
        "ffn_up.weight": (c.n_ff, c.n_embd),
        "ffn_down.weight": (c.n_embd, c.n_ff),
    }


def _bias_shapes(c: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """Q/K/V projection biases (qwen2 has them)."""
    return {"attn_q.bias": (c.q_dim,), "attn_k.bias": (c.kv_dim,), "attn_v.bias": (c.kv_dim,)}


class LlamaModelFile:
    """An opened llama GGUF. Use :func:`load_gguf` to make one."""

    def __init__(self, path: Path, reader: GGUFFile):
        self.path = path
        self.reader = reader
        self._where = path.name
        self._values: dict[str, Any] = {}
        self._tensors = {t.name: t for t in reader.tensors}
        self._check_metadata_types()
        n_tokens = self._array_len("tokenizer.ggml.tokens")
        self.config = LlamaConfig.from_metadata(
            self._get_or_none,
            self._where,
            n_vocab_hint=n_tokens,
            tied_embeddings="output.weight" not in self._tensors,
            tokenizer_model=self._get_or_none("tokenizer.ggml.model"),
        )
        self._check_vocabulary(n_tokens)
        self._check_tensors()

    # -- metadata ---------------------------------------------------------------------

    def metadata(self, key: str, default: Any = _MISSING) -> Any:
        """A metadata value as a Python object (str, int, float, bool or list).

        Without ``default``, a missing key raises ModelError naming it. Keys the runner
        reads have the types :mod:`.metadata_types` lists (checked when the file opened).
        """
        if key not in self._values:
            if key not in self.reader.fields:
                if default is _MISSING:
                    raise ModelError(f"{self._where}: metadata key {key!r} is missing")
                return default
            self._values[key] = self.reader.value(key)
        return self._values[key]

    def _get_or_none(self, key: str) -> Any:
        return self.metadata(key, None)

    def has_metadata(self, key: str) -> bool:
        return key in self.reader.fields

    def metadata_keys(self) -> list[str]:
        return list(self.reader.fields)

    def metadata_type(self, key: str) -> str:
        """The stored GGUF type of ``key`` in words, e.g. ``array of int32``."""
        return self.reader.fields[key].type_name

    def _array_len(self, key: str) -> int | None:
        f = self.reader.fields.get(key)
        return None if f is None else f.count

    # -- tensors ----------------------------------------------------------------------

    @property
    def tensor_names(self) -> list[str]:
        return list(self._tensors)

    def has_tensor(self, name: str) -> bool:
        return name in self._tensors

    def tensor(self, name: str) -> QuantTensor:
        t = self._tensors.get(name)
        if t is None:
            raise ModelError(f"{self._where}: tensor {name!r} is missing")
        type_name = t.tensor_type.name
        if type_name not in QUANT_TYPES:
            raise ModelError(
                f"{self._where}: tensor {name!r} has unsupported type {type_name} (supported: {', '.join(QUANT_TYPES)})"
            )
        shape = tuple(int(d) for d in reversed(t.ne))
        return QuantTensor(name, type_name, shape, t.raw, int(t.n_bytes))  # a view: no copy of the mmap

    def layer_tensor(self, layer: int, kind: str) -> QuantTensor:
        """``blk.{layer}.{kind}.weight``, e.g. ``layer_tensor(0, "attn_q")``."""
        return self.tensor(f"blk.{layer}.{kind}.weight")

    def qkv_bias(self, layer: int):
        """Block ``layer``'s [q | k | v] projection bias as float32, or None without biases."""
        names = [f"blk.{layer}.attn_{p}.bias" for p in "qkv"]
        if not any(n in self._tensors for n in names):
            return None
        c = self.config
        sizes = (c.q_dim, c.kv_dim, c.kv_dim)
        return np.concatenate([self.tensor(n).dequantize().reshape(-1) if n in self._tensors
                               else np.zeros(k, np.float32) for n, k in zip(names, sizes)])

    def output_tensor(self) -> QuantTensor:
        """The output projection: ``output.weight``, or ``token_embd.weight`` when tied."""
        return self.tensor("token_embd.weight" if self.config.tied_embeddings else "output.weight")

    # -- validation -------------------------------------------------------------------

    def _check_metadata_types(self) -> None:
        for key, field in self.reader.fields.items():
            kind = expected_kind(key)
            if kind is not None and not matches(field, kind):
                raise ModelError(f"{self._where}: metadata key {key!r} has type {field.type_name}, expected {kind}")

    def _check_vocabulary(self, n_tokens: int | None) -> None:
        """Token list, its side arrays and the special ids agree with the vocabulary size."""
        c = self.config
        if n_tokens is not None and n_tokens != c.n_vocab:
            raise ModelError(f"{self._where}: metadata key 'tokenizer.ggml.tokens' has {n_tokens} tokens, "
                             f"but the vocabulary size is {c.n_vocab}")
        if n_tokens is not None:
            for key in ("tokenizer.ggml.token_type", "tokenizer.ggml.scores"):
                n = self._array_len(key)
                if n is not None and n != n_tokens:
                    raise ModelError(f"{self._where}: metadata key {key!r} has {n} entries for {n_tokens} tokens")
        # (not the padding id: the runner never uses it, and some converters write -1 there)
        for key in ("bos", "eos", "unknown"):
            tid = self._get_or_none(f"tokenizer.ggml.{key}_token_id")
            if tid is not None and not 0 <= tid < c.n_vocab:
                raise ModelError(f"{self._where}: metadata key 'tokenizer.ggml.{key}_token_id' is {tid}, "
                                 f"not a token id (vocabulary of {c.n_vocab})")

    def _check_tensors(self) -> None:
        c = self.config
        per_block = len(_layer_shapes(c))
        if c.n_layer * per_block > len(self._tensors):
            # Checked before building the list of expected names: block_count = 2**31
            # must not cost a dict entry per layer.
            raise ModelError(f"{self._where}: metadata key '{c.arch}.block_count' is {c.n_layer}, but the file has "
                             f"only {len(self._tensors)} tensors ({per_block} per block)")
        expected: dict[str, tuple[int, ...]] = {
            "token_embd.weight": (c.n_vocab, c.n_embd),
            "output_norm.weight": (c.n_embd,),
        }
        if not c.tied_embeddings:
            expected["output.weight"] = (c.n_vocab, c.n_embd)
        if "rope_freqs.weight" in self._tensors:
            expected["rope_freqs.weight"] = (c.rope_dim // 2,)
        for i in range(c.n_layer):
            for kind, shape in _layer_shapes(c).items():
                expected[f"blk.{i}.{kind}"] = shape
            for kind, shape in _bias_shapes(c).items():   # required for qwen2; checked if present
                if c.arch in QKV_BIAS_ARCHITECTURES or f"blk.{i}.{kind}" in self._tensors:
                    expected[f"blk.{i}.{kind}"] = shape
        for name in self._tensors:
            block = name.split(".")[1] if name.startswith("blk.") else None
            if block is not None and not (block.isdigit() and int(block) < c.n_layer):
                raise ModelError(f"{self._where}: tensor {name!r} does not belong to any of the "
                                 f"{c.n_layer} blocks that '{c.arch}.block_count' declares")
        for name, shape in expected.items():
            t = self.tensor(name)  # raises for missing or unsupported-type tensors
            if t.shape != shape:
                raise ModelError(f"{self._where}: tensor {name!r} has shape {t.shape}, expected {shape}")
            if t.quant.n_bytes(math.prod(shape)) != t.n_bytes or t.cols % t.quant.block_elems:
                raise ModelError(f"{self._where}: tensor {name!r} has an inconsistent size for type {t.ggml_type}")

    def __repr__(self) -> str:
        c = self.config
        return f"LlamaModelFile({self._where!r}, {c.n_layer} layers, n_embd {c.n_embd}, vocab {c.n_vocab})"


def load_gguf(path: str | os.PathLike[str]) -> LlamaModelFile:
    """Open a llama GGUF file (memory-mapped) and validate its metadata and tensors."""
    path = Path(path)
    return LlamaModelFile(path, open_gguf(path))
