"""Loading llama GGUF files: metadata, config and memory-mapped tensors.

Shape convention. GGUF lists dimensions fastest-varying first (``ne[0]`` is contiguous);
this module exposes shapes in numpy order, i.e. reversed. A weight matrix therefore has
shape ``(rows, cols) = (output features, input features)`` and a layer computes
``y = W @ x``; each row is ``cols // block_elems`` consecutive blocks of its GGML type.
One-dimensional tensors (norm weights) have shape ``(n,)``.

Tensor bytes are never copied: ``QuantTensor.data`` is a uint8 view of the file's mmap
(``gguf.GGUFReader`` maps the file read-only).

Rope layout. llama.cpp's HF converter permutes the rows of ``attn_q``/``attn_k`` back
to Meta's original order, so the rope that matches these files rotates *adjacent* pairs
``(2i, 2i+1)`` of each head (ggml's "normal" rope), not HF's split halves ``(i, i+d/2)``.
The reference model applies it that way; its test checks a known continuation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import QKV_BIAS_ARCHITECTURES, LlamaConfig
from .errors import ModelError
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

    def __init__(self, path: Path, reader: Any):
        self.path = path
        self.reader = reader
        self._where = path.name
        self._values: dict[str, Any] = {}
        self._tensors = {t.name: t for t in reader.tensors}
        self._check_sizes()
        tokens = reader.fields.get("tokenizer.ggml.tokens")
        self.config = LlamaConfig.from_metadata(
            self._get_or_none,
            self._where,
            n_vocab_hint=len(tokens.data) if tokens is not None else None,
            tied_embeddings="output.weight" not in self._tensors,
            tokenizer_model=self._get_or_none("tokenizer.ggml.model"),
        )
        self._check_tensors()

    # -- metadata ---------------------------------------------------------------------

    def metadata(self, key: str, default: Any = _MISSING) -> Any:
        """A metadata value as a Python object (str, int, float, bool or list).

        Without ``default``, a missing key raises ModelError naming it.
        """
        if key not in self._values:
            field = self.reader.fields.get(key)
            if field is None:
                if default is _MISSING:
                    raise ModelError(f"{self._where}: metadata key {key!r} is missing")
                return default
            try:
                self._values[key] = field.contents()
            except Exception as e:  # a corrupt string or array inside the field
                raise ModelError(f"{self._where}: metadata key {key!r} is unreadable ({type(e).__name__}: {e})") from e
        return self._values[key]

    def _get_or_none(self, key: str) -> Any:
        return self.metadata(key, None)

    def has_metadata(self, key: str) -> bool:
        return key in self.reader.fields

    def metadata_keys(self) -> list[str]:
        return [k for k in self.reader.fields if not k.startswith("GGUF.")]

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
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        data = np.asarray(t.data).view(np.uint8).reshape(-1)  # a view: no copy of the mmap
        return QuantTensor(name, type_name, shape, data, int(t.n_bytes))

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

    def _check_sizes(self) -> None:
        """A truncated file maps fine; catch it here, before a kernel reads past the end."""
        size = self.path.stat().st_size
        for t in self._tensors.values():
            end = int(t.data_offset) + int(t.n_bytes)
            if end > size:
                raise ModelError(
                    f"{self._where}: file is truncated: tensor {t.name!r} ends at byte {end}, file has {size}"
                )

    def _check_tensors(self) -> None:
        c = self.config
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
        for name, shape in expected.items():
            t = self.tensor(name)  # raises for missing or unsupported-type tensors
            if t.shape != shape:
                raise ModelError(f"{self._where}: tensor {name!r} has shape {t.shape}, expected {shape}")
            if t.quant.n_bytes(int(np.prod(shape))) != t.n_bytes or t.cols % t.quant.block_elems:
                raise ModelError(f"{self._where}: tensor {name!r} has an inconsistent size for type {t.ggml_type}")

    def __repr__(self) -> str:
        c = self.config
        return f"LlamaModelFile({self._where!r}, {c.n_layer} layers, n_embd {c.n_embd}, vocab {c.n_vocab})"


class _Truncated(Exception):
    def __init__(self, needed: int, size: int):
        super().__init__(f"file is truncated: needs {needed} bytes, has {size}")


def _checked_reader_class():
    """GGUFReader that reports reads past the end of the file as truncation.

    Plain GGUFReader slices its mmap without bounds checks, so a cut file surfaces as
    whichever numpy reshape or index fails first. Every read goes through ``_get``, so
    checking there turns all of those into one clear message.
    """
    from gguf import GGUFReader  # imported lazily: keeps importing spvjit.models cheap

    class CheckedReader(GGUFReader):
        def _get(self, offset, dtype, count=1, *args, **kwargs):
            end = int(offset) + np.dtype(dtype).itemsize * int(count)
            if end > self.data.size:
                raise _Truncated(end, int(self.data.size))
            return super()._get(offset, dtype, count, *args, **kwargs)

    return CheckedReader


def load_gguf(path: str | os.PathLike[str]) -> LlamaModelFile:
    """Open a llama GGUF file (memory-mapped) and validate its metadata and tensors."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise ModelError(f"{path.name}: not a GGUF file (starts with {magic!r}, expected b'GGUF')")
    try:
        reader = _checked_reader_class()(path, "r")
    except _Truncated as e:
        raise ModelError(f"{path.name}: {e}") from None
    except Exception as e:
        # Other damage shows up as whatever parsing trips over first (ValueError for an
        # unknown type id, UnicodeDecodeError for a broken name, KeyError for duplicates...).
        msg = str(e).splitlines()[0] if str(e) else ""
        raise ModelError(f"{path.name}: not a readable GGUF file ({type(e).__name__}: {msg})") from e
    if reader.byte_order != "I":
        # Tensor bytes are handed out raw, and the dequantizers and kernels read them as
        # little-endian; a byte-swapped file would decode to garbage.
        raise ModelError(f"{path.name}: byte-swapped (big-endian) GGUF files are not supported")
    return LlamaModelFile(path, reader)
