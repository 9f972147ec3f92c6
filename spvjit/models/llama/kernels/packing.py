"""Weights to the device layout the dequant helpers read (host side, numpy).

The repack only splits each block into its parts; no value is decoded or rounded,
so the device holds exactly the file's bits (Q6_K's and Q8_0's odd-sized blocks are
why a split is needed at all: their 210- and 34-byte blocks are not word aligned):

  type   qw (uint32 words per row)           sc (float16 per block)   aux (uint32 per block)
  F32    the float32 values                  -                        -
  F16    the float16 values                  -                        -
  Q8_0   K/4: the int8 quants                d                        -
  Q4_0   K/8: the nibbles                    d                        -
  Q4_1   K/8: the nibbles                    d, m                     -
  Q4_K   K/8: the nibbles                    d, dmin                  3: the 12 scale bytes
  Q6_K   K/256*48: ql (32 words), qh (16)    d                        4: the 16 int8 scales
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..quants import QUANT_TYPES, quant_type

SUPPORTED = ("F32", "F16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K")


@dataclass
class PackedWeight:
    """A ``rows x cols`` weight matrix in device layout (numpy arrays, host side)."""

    qtype: str
    rows: int
    cols: int
    qw: np.ndarray
    sc: np.ndarray | None = None
    aux: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.qw, self.sc, self.aux) if a is not None)


def _field(blocks: np.ndarray, qtype: str, *names: str) -> np.ndarray:
    """Bytes of the named (adjacent) fields of every block, as (n_blocks, n_bytes)."""
    qt = QUANT_TYPES[qtype]
    fields = [qt.field(n) for n in names]
    start, end = fields[0].offset, fields[-1].offset + fields[-1].n_bytes
    return np.ascontiguousarray(blocks[:, start:end])


def pack_weight(raw: np.ndarray, qtype: str, shape: tuple[int, int]) -> PackedWeight:
    """Split ``raw`` (the tensor's GGUF bytes) into the arrays listed in the module doc."""
    qt = quant_type(qtype)  # ModelError for unknown types
    if qtype not in SUPPORTED:
        raise ValueError(f"no device layout for {qtype}")
    rows, cols = (int(s) for s in shape)
    raw = np.asarray(raw, dtype=np.uint8).reshape(-1)
    if raw.size != qt.n_bytes(rows * cols):
        raise ValueError(f"{qtype} matrix {rows}x{cols} needs {qt.n_bytes(rows * cols)} bytes, got {raw.size}")
    if qtype == "F32":
        return PackedWeight(qtype, rows, cols, raw.view(np.float32).reshape(rows, cols))
    if qtype == "F16":
        return PackedWeight(qtype, rows, cols, raw.view(np.float16).reshape(rows, cols))
    blocks = raw.reshape(rows * cols // qt.block_elems, qt.block_bytes)

    def words(*names):
        return _field(blocks, qtype, *names).view(np.uint32).reshape(rows, -1)

    def halves(*names):
        return _field(blocks, qtype, *names).view(np.float16).reshape(rows, -1)

    if qtype == "Q8_0":
        return PackedWeight(qtype, rows, cols, words("qs"), halves("d"))
    if qtype == "Q4_0":
        return PackedWeight(qtype, rows, cols, words("qs"), halves("d"))
    if qtype == "Q4_1":
        return PackedWeight(qtype, rows, cols, words("qs"), halves("d", "m"))
    if qtype == "Q4_K":
        return PackedWeight(qtype, rows, cols, words("qs"), halves("d", "dmin"), words("scales"))
    # Q6_K: ql and qh are adjacent, so one slice keeps each block's 48 words together
    return PackedWeight(qtype, rows, cols, words("ql", "qh"), halves("d"), words("scales"))


def concat_rows(parts: list[PackedWeight]) -> PackedWeight:
    """Stack matrices of one type and width (e.g. Wq, Wk, Wv) into one taller matrix."""
    first = parts[0]
    if any(p.qtype != first.qtype or p.cols != first.cols for p in parts):
        raise ValueError("concat_rows needs matrices of one type and width")

    def cat(name):
        arrays = [getattr(p, name) for p in parts]
        return None if arrays[0] is None else np.concatenate(arrays, axis=0)

    return PackedWeight(first.qtype, sum(p.rows for p in parts), first.cols, cat("qw"), cat("sc"), cat("aux"))
