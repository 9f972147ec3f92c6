"""Weights to the device layout the dequant helpers read (host side, numpy).

Nothing is decoded or rounded: the device holds exactly the file's bits, moved around
(:func:`unpack` gives the GGUF bytes back). Which fields go where is the type's
descriptor in :mod:`.qtypes`. Two layouts:

**Row-major** (every type without ``tiled``): the block fields named in the
descriptor's ``qw``, ``sc`` and ``aux`` are gathered into three arrays, block by block,
rows one after the other (Q6_K's 210-byte blocks, say, are not word aligned, hence the
split). For the float types a block is one value and ``qw`` holds the values.

**Row-tiled** (Q4_0, Q4_1, Q8_0, Q5_0, Q5_1: 32-weight blocks), made for the matrix-vector kernel,
which keeps x in registers and gives each lane of a program its own rows, 4 consecutive
rows per vec4 load. Rows go in tiles of ``TILE_ROWS`` = 64 (the last tile padded with
zero rows); within a tile, block by block and word by word, the 64 rows' copies of
that word lie side by side, so one load of a [64] tile is one word of 64 rows (256
consecutive bytes) and a tile is one sequential stream:

  qw  [tile][block][word (Q4: 4, Q8_0: 8, Q5: 4 + the qh word)][64 rows], uint32
  sc  [tile][block][64 rows]: the ``sc`` fields of the block, float16 d (Q4_0, Q8_0,
      Q5_0) or uint32 d | m << 16 (Q4_1, Q5_1: the file's 4 bytes)

Word w of a Q4 block holds weights 8w .. 8w + 7 of the block (nibble p, bits 4p..4p+3,
is weight 8w + p; the file has weights j and j + 16 in byte j). Q8_0 words keep the
file's byte order (byte i of word w is weight 4w + i).

Matrices stacked into one (Wq, Wk, Wv) are stacked as file bytes before packing: rows
of one type and width are just consecutive blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..quants import quant_type
from .qtypes import DeviceQuant, device_quant

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
    def desc(self) -> DeviceQuant:
        return device_quant(self.qtype)

    @property
    def nbytes(self) -> int:
        """Bytes of the matrix in the file (the tiled layouts add padding rows)."""
        return self.desc.format.n_bytes(self.rows * self.cols)

    @property
    def tiled(self) -> bool:
        return self.desc.tiled is not None


def _fields(blocks: np.ndarray, d: DeviceQuant, names: tuple[str, ...]) -> np.ndarray:
    """The named fields of every block, concatenated: (n_blocks, bytes) uint8."""
    qt = d.format
    parts = [blocks[:, f.offset:f.offset + f.n_bytes] for f in map(qt.field, names)]
    return np.ascontiguousarray(parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1))


def _put_fields(out: np.ndarray, d: DeviceQuant, names: tuple[str, ...], part: np.ndarray) -> None:
    """Inverse of _fields: write (n_blocks, bytes) back into the blocks ``out``."""
    qt = d.format
    b = np.ascontiguousarray(part).view(np.uint8).reshape(out.shape[0], -1)
    at = 0
    for f in map(qt.field, names):
        out[:, f.offset:f.offset + f.n_bytes] = b[:, at:at + f.n_bytes]
        at += f.n_bytes


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


def _sc_dtype(d: DeviceQuant) -> type:
    """Tiled scales: one fp16, or two packed in a uint32 word."""
    return np.uint32 if len(d.sc) == 2 else np.float16


def _pack_tiled(blocks: np.ndarray, d: DeviceQuant, rows: int, cols: int) -> PackedWeight:
    nb = cols // d.format.block_elems
    qs = _fields(blocks, d, d.qw[:1])                      # (rows * nb, 16 or 32) bytes
    if d.tiled.nibbles:
        # weight e of a block is nibble e // 16 (0: low) of byte e % 16; word w gets 8w..8w+7
        nib = np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.uint32).reshape(-1, 4, 8)
        words = np.zeros(nib.shape[:2], np.uint32)
        for p in range(8):
            words |= nib[:, :, p] << np.uint32(4 * p)
    else:
        words = qs.view(np.uint32)                         # file order
    if len(d.qw) > 1:   # further fields (Q5's qh) follow as whole words, as the file has them
        words = np.concatenate([words, _fields(blocks, d, d.qw[1:]).view(np.uint32)], axis=1)
    sc = _fields(blocks, d, d.sc).view(_sc_dtype(d))
    qw = _tile(words.reshape(rows, nb, -1), rows)          # [tile, nb, word, 64]
    return PackedWeight(d.name, rows, cols, qw, _tile(sc.reshape(rows, nb), rows))


def _unpack_tiled(p: PackedWeight) -> np.ndarray:
    d = p.desc
    rows, nb = p.rows, p.cols // d.format.block_elems
    out = np.zeros((rows * nb, d.format.block_bytes), np.uint8)
    words = _untile(p.qw, rows).reshape(rows * nb, -1)
    _put_fields(out, d, d.sc, _untile(p.sc, rows).reshape(-1, 1))
    if len(d.qw) > 1:
        _put_fields(out, d, d.qw[1:], words[:, 4:])
        words = words[:, :4]
    if d.tiled.nibbles:
        nib = np.stack([(words >> np.uint32(4 * k)) & 15 for k in range(8)], axis=2).reshape(-1, 32)
        words = (nib[:, :16] | (nib[:, 16:] << 4)).astype(np.uint8)
    _put_fields(out, d, d.qw[:1], words)
    return out.reshape(-1)


def pack_weight(raw: np.ndarray, qtype: str, shape: tuple[int, int]) -> PackedWeight:
    """Lay out ``raw`` (the tensor's GGUF bytes) as its descriptor says (module doc)."""
    qt = quant_type(qtype)     # ModelError for unknown types
    d = device_quant(qtype)    # ModelError for types without device kernels
    rows, cols = (int(s) for s in shape)
    raw = np.asarray(raw, dtype=np.uint8).reshape(-1)
    if raw.size != qt.n_bytes(rows * cols):
        raise ValueError(f"{qtype} matrix {rows}x{cols} needs {qt.n_bytes(rows * cols)} bytes, got {raw.size}")
    blocks = raw.reshape(rows * cols // qt.block_elems, qt.block_bytes)
    if d.tiled:
        return _pack_tiled(blocks, d, rows, cols)
    qw = _fields(blocks, d, d.qw).view(d.qw_dtype).reshape(rows, -1)
    sc = _fields(blocks, d, d.sc).view(np.float16).reshape(rows, -1) if d.sc else None
    aux = _fields(blocks, d, d.aux).view(np.uint32).reshape(rows, -1) if d.aux else None
    return PackedWeight(qtype, rows, cols, qw, sc, aux)


def unpack(p: PackedWeight) -> np.ndarray:
    """The GGUF bytes of a packed matrix (pack_weight's inverse)."""
    d = p.desc
    if d.tiled:
        return _unpack_tiled(p)
    qt = d.format
    n = p.rows * p.cols // qt.block_elems
    out = np.zeros((n, qt.block_bytes), np.uint8)
    for names, part in ((d.qw, p.qw), (d.sc, p.sc), (d.aux, p.aux)):
        if names:
            _put_fields(out, d, names, part)
    return out.reshape(-1)
