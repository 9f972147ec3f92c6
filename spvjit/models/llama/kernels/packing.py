"""Weights to the device layout the dequant helpers read (host side, numpy).

Nothing is decoded or rounded: the device holds exactly the file's bits, moved around
(:func:`unpack` gives the GGUF bytes back). Two layouts:

**Row-major** (F32, F16, Q4_K, Q6_K): each block split into its parts, rows one after
the other (Q6_K's 210-byte blocks are not word aligned, hence the split):

  type   qw (uint32 words per row)           sc (float16 per block)   aux (uint32 per block)
  F32    the float32 values                  -                        -
  F16    the float16 values                  -                        -
  Q4_K   K/8: the nibbles                    d, dmin                  3: the 12 scale bytes
  Q6_K   K/256*48: ql (32 words), qh (16)    d                        4: the 16 int8 scales

**Row-tiled** (Q4_0, Q4_1, Q8_0: 32-weight blocks), made for the matrix-vector kernel,
which keeps x in registers and gives each lane of a program its own rows, 4 consecutive
rows per vec4 load. Rows go in tiles of ``TILE_ROWS`` = 64 (the last tile padded with
zero rows); within a tile, block by block and word by word, the 64 rows' copies of
that word lie side by side, so one load of a [64] tile is one word of 64 rows (256
consecutive bytes) and a tile is one sequential stream:

  qw  [tile][block][word (Q4: 4, Q8_0: 8)][64 rows], uint32
  sc  [tile][block][64 rows]: float16 d (Q4_0, Q8_0); uint32 d | m << 16 (Q4_1, the
      file's 4 bytes)

Word w of a Q4 block holds weights 8w .. 8w + 7 of the block (nibble p, bits 4p..4p+3,
is weight 8w + p; the file has weights j and j + 16 in byte j). Q8_0 words keep the
file's byte order (byte i of word w is weight 4w + i).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..quants import QUANT_TYPES, quant_type

SUPPORTED = ("F32", "F16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K")
TILED = ("Q4_0", "Q4_1", "Q8_0")
TILE_ROWS = 64


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
        """Bytes of the matrix in the file (the tiled layouts add padding rows)."""
        return QUANT_TYPES[self.qtype].n_bytes(self.rows * self.cols)

    @property
    def tiled(self) -> bool:
        return self.qtype in TILED


def _field(blocks: np.ndarray, qtype: str, *names: str) -> np.ndarray:
    """Bytes of the named (adjacent) fields of every block, as (n_blocks, n_bytes)."""
    qt = QUANT_TYPES[qtype]
    fields = [qt.field(n) for n in names]
    start, end = fields[0].offset, fields[-1].offset + fields[-1].n_bytes
    return np.ascontiguousarray(blocks[:, start:end])


def _tile(a: np.ndarray, rows: int) -> np.ndarray:
    """(rows, NB, ...) -> (tiles, NB, ..., TILE_ROWS), zero rows added at the end."""
    pad = -rows % TILE_ROWS
    if pad:
        a = np.concatenate([a, np.zeros((pad,) + a.shape[1:], a.dtype)])
    t = a.reshape((-1, TILE_ROWS) + a.shape[1:])
    return np.ascontiguousarray(np.moveaxis(t, 1, -1))


def _untile(a: np.ndarray, rows: int) -> np.ndarray:
    """Inverse of _tile: (tiles, NB, ..., TILE_ROWS) -> (rows, NB, ...)."""
    t = np.moveaxis(a, -1, 1)
    return np.ascontiguousarray(t.reshape((-1,) + t.shape[2:])[:rows])


def _pack_tiled(blocks: np.ndarray, qtype: str, rows: int, cols: int) -> PackedWeight:
    nb = cols // 32
    qs = _field(blocks, qtype, "qs")                       # (rows * nb, 16 or 32) bytes
    if qtype == "Q8_0":
        words = qs.view(np.uint32)                         # [block, 8 words]: file order
        sc = _field(blocks, qtype, "d").view(np.float16)
    else:
        # weight e of a block is nibble e // 16 (0: low) of byte e % 16; word w gets 8w..8w+7
        nib = np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.uint32).reshape(-1, 4, 8)
        words = np.zeros(nib.shape[:2], np.uint32)
        for p in range(8):
            words |= nib[:, :, p] << np.uint32(4 * p)
        sc = _field(blocks, qtype, *(("d", "m") if qtype == "Q4_1" else ("d",)))
        sc = sc.view(np.uint32 if qtype == "Q4_1" else np.float16)
    qw = _tile(words.reshape(rows, nb, -1), rows)          # [tile, nb, word, 64]
    return PackedWeight(qtype, rows, cols, qw, _tile(sc.reshape(rows, nb), rows))


def _unpack_tiled(p: PackedWeight) -> np.ndarray:
    rows, nb = p.rows, p.cols // 32
    qt = QUANT_TYPES[p.qtype]
    out = np.zeros((rows * nb, qt.block_bytes), np.uint8)
    words = _untile(p.qw, rows).reshape(rows * nb, -1)
    head = 4 if p.qtype == "Q4_1" else 2
    out[:, :head] = _untile(p.sc, rows).reshape(-1, 1).view(np.uint8)
    if p.qtype == "Q8_0":
        out[:, head:] = words.view(np.uint8)
        return out.reshape(-1)
    nib = np.stack([(words >> np.uint32(4 * k)) & 15 for k in range(8)], axis=2).reshape(-1, 32)
    out[:, head:] = (nib[:, :16] | (nib[:, 16:] << 4)).astype(np.uint8)
    return out.reshape(-1)


def pack_weight(raw: np.ndarray, qtype: str, shape: tuple[int, int]) -> PackedWeight:
    """Lay out ``raw`` (the tensor's GGUF bytes) as listed in the module doc."""
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
    if qtype in TILED:
        return _pack_tiled(blocks, qtype, rows, cols)

    def words(*names):
        return _field(blocks, qtype, *names).view(np.uint32).reshape(rows, -1)

    def halves(*names):
        return _field(blocks, qtype, *names).view(np.float16).reshape(rows, -1)

    if qtype == "Q4_K":
        return PackedWeight(qtype, rows, cols, words("qs"), halves("d", "dmin"), words("scales"))
    # Q6_K: ql and qh are adjacent, so one slice keeps each block's 48 words together
    return PackedWeight(qtype, rows, cols, words("ql", "qh"), halves("d"), words("scales"))


def unpack(p: PackedWeight) -> np.ndarray:
    """The GGUF bytes of a packed matrix (pack_weight's inverse)."""
    if p.qtype in ("F32", "F16"):
        return np.ascontiguousarray(p.qw).reshape(-1).view(np.uint8).copy()
    if p.tiled:
        return _unpack_tiled(p)
    qt = QUANT_TYPES[p.qtype]
    n = p.rows * p.cols // qt.block_elems
    out = np.zeros((n, qt.block_bytes), np.uint8)
    # Q4_K's sc holds d and dmin, Q6_K's qw holds ql and qh: adjacent fields
    names = ("qs", "d", "scales") if p.qtype == "Q4_K" else ("ql", "d", "scales")
    parts = (p.qw.reshape(n, -1), p.sc.reshape(n, -1), p.aux.reshape(n, -1))
    for name, part in zip(names, parts):
        f = qt.field(name)
        b = np.ascontiguousarray(part).view(np.uint8).reshape(n, -1)
        out[:, f.offset:f.offset + b.shape[1]] = b
    return out.reshape(-1)


def concat_rows(parts: list[PackedWeight]) -> PackedWeight:
    """Stack matrices of one type and width (e.g. Wq, Wk, Wv) into one taller matrix."""
    first = parts[0]
    if any(p.qtype != first.qtype or p.cols != first.cols for p in parts):
        raise ValueError("concat_rows needs matrices of one type and width")
    if first.tiled:   # tiles of different matrices do not line up: repack the file's bytes
        raw = np.concatenate([unpack(p) for p in parts])
        return pack_weight(raw, first.qtype, (sum(p.rows for p in parts), first.cols))

    def cat(name):
        arrays = [getattr(p, name) for p in parts]
        return None if arrays[0] is None else np.concatenate(arrays, axis=0)

    return PackedWeight(first.qtype, sum(p.rows for p in parts), first.cols, cat("qw"), cat("sc"), cat("aux"))
