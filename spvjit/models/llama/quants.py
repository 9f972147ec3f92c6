"""GGUF tensor encodings: block layouts (for the GPU kernels) and numpy dequantization.

Every GGML type stores a tensor row as a sequence of fixed-size *blocks*; a block holds
``block_elems`` consecutive values of the row in ``block_bytes`` bytes. Rows are always a
whole number of blocks, so row ``r`` starts at byte ``r * cols // block_elems * block_bytes``.
All multi-byte fields are little-endian. ``QUANT_TYPES[name].fields`` lists each block's
fields with their byte offsets, which is what a kernel needs to address them.

The dequantizers below are written from the format definitions (ggml's ``block_q4_0`` and
friends) and are vectorized over blocks; tests compare them with ``gguf.quants``.

Formulas, per block (``q`` = stored integer, ``d``/``m`` = fp16 scale/offset):
  Q8_0  x = d * q                 q int8, 32 per block
  Q4_0  x = d * (q - 8)           q 4-bit; byte j holds elements j (low nibble) and j+16 (high)
  Q4_1  x = d * q + m             same nibble order as Q4_0
  Q4_K  256 values in 8 sub-blocks of 32, each with a 6-bit scale s and min n:
        x = d * s * q - dmin * n  bytes 32g..32g+31 of qs hold sub-block 2g (low nibbles)
                                  and 2g+1 (high nibbles)
  Q6_K  256 values; 6-bit q = 4 low bits (ql) + 2 high bits (qh), x = d * sc[e // 16] * (q - 32)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ModelError


@dataclass(frozen=True)
class BlockField:
    """One field of a block: ``count`` items of ``dtype`` starting at byte ``offset``."""

    name: str
    offset: int
    dtype: str  # numpy dtype string, little-endian: "<f4", "<f2", "i1", "u1"
    count: int

    @property
    def n_bytes(self) -> int:
        return np.dtype(self.dtype).itemsize * self.count


@dataclass(frozen=True)
class QuantType:
    """Layout of one GGML tensor type."""

    name: str
    ggml_id: int  # the GGMLQuantizationType number stored in GGUF tensor infos
    block_elems: int
    block_bytes: int
    fields: tuple[BlockField, ...]

    def field(self, name: str) -> BlockField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} blocks have no field {name!r}")

    def n_bytes(self, n_elems: int) -> int:
        """Bytes taken by ``n_elems`` values (a multiple of ``block_elems``)."""
        if n_elems % self.block_elems:
            raise ValueError(f"{self.name}: {n_elems} elements is not a multiple of the block size {self.block_elems}")
        return n_elems // self.block_elems * self.block_bytes

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.block_bytes / self.block_elems


def _layout(name: str, ggml_id: int, block_elems: int, *fields: tuple[str, str, int]) -> QuantType:
    """Build a QuantType from fields listed in storage order (offsets are computed)."""
    out, offset = [], 0
    for fname, dtype, count in fields:
        f = BlockField(fname, offset, dtype, count)
        out.append(f)
        offset += f.n_bytes
    return QuantType(name, ggml_id, block_elems, offset, tuple(out))


QUANT_TYPES: dict[str, QuantType] = {
    q.name: q
    for q in (
        _layout("F32", 0, 1, ("value", "<f4", 1)),
        _layout("F16", 1, 1, ("value", "<f2", 1)),
        _layout("Q4_0", 2, 32, ("d", "<f2", 1), ("qs", "u1", 16)),
        _layout("Q4_1", 3, 32, ("d", "<f2", 1), ("m", "<f2", 1), ("qs", "u1", 16)),
        _layout("Q8_0", 8, 32, ("d", "<f2", 1), ("qs", "i1", 32)),
        _layout("Q4_K", 12, 256, ("d", "<f2", 1), ("dmin", "<f2", 1), ("scales", "u1", 12), ("qs", "u1", 128)),
        _layout("Q6_K", 14, 256, ("ql", "u1", 128), ("qh", "u1", 64), ("scales", "i1", 16), ("d", "<f2", 1)),
    )
}
# The sizes are part of the file format; a wrong field list would silently misread weights.
assert [QUANT_TYPES[n].block_bytes for n in ("Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q6_K")] == [18, 20, 34, 144, 210]


def _get(blocks: np.ndarray, qt: QuantType, name: str) -> np.ndarray:
    """Field ``name`` of every block as an (n_blocks, count) array of its own dtype."""
    f = qt.field(name)
    raw = np.ascontiguousarray(blocks[:, f.offset : f.offset + f.n_bytes])
    return raw.view(f.dtype)


def _scale(blocks: np.ndarray, qt: QuantType, name: str) -> np.ndarray:
    """An fp16 per-block field as a float32 (n_blocks, 1) column, ready to broadcast."""
    return _get(blocks, qt, name).astype(np.float32)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """(n, k) bytes -> (n, 2k) values: all low nibbles first, then all high nibbles."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1)


def _dq_q8_0(b: np.ndarray, qt: QuantType) -> np.ndarray:
    return _scale(b, qt, "d") * _get(b, qt, "qs").astype(np.float32)


def _dq_q4_0(b: np.ndarray, qt: QuantType) -> np.ndarray:
    q = _nibbles(_get(b, qt, "qs")).astype(np.float32) - 8.0
    return _scale(b, qt, "d") * q


def _dq_q4_1(b: np.ndarray, qt: QuantType) -> np.ndarray:
    q = _nibbles(_get(b, qt, "qs")).astype(np.float32)
    return _scale(b, qt, "d") * q + _scale(b, qt, "m")


def q4_k_scales_mins(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unpack Q4_K's 12 scale bytes into 8 six-bit scales and 8 six-bit mins.

    Bytes 0-3: scale j (low 6 bits), bytes 4-7: min j (low 6 bits), for sub-blocks 0-3.
    Sub-blocks 4-7 keep their low 4 bits in bytes 8-11 (scale: low nibble, min: high
    nibble) and their top 2 bits in the spare top bits of bytes 0-3 (scales) / 4-7 (mins).
    """
    s = scales.astype(np.uint8)
    lo, mid, hi = s[:, 0:4], s[:, 4:8], s[:, 8:12]
    sc = np.concatenate([lo & 63, (hi & 0x0F) | ((lo >> 6) << 4)], axis=1)
    mn = np.concatenate([mid & 63, (hi >> 4) | ((mid >> 6) << 4)], axis=1)
    return sc, mn


def _dq_q4_k(b: np.ndarray, qt: QuantType) -> np.ndarray:
    n = b.shape[0]
    sc, mn = q4_k_scales_mins(_get(b, qt, "scales"))
    qs = _get(b, qt, "qs").reshape(n, 4, 32)
    # (n, 4 groups, 2 halves, 32): half 0 = low nibbles = sub-block 2g, half 1 = 2g+1.
    q = np.stack([qs & 0x0F, qs >> 4], axis=2).reshape(n, 8, 32).astype(np.float32)
    d = _scale(b, qt, "d")[:, :, None] * sc[:, :, None].astype(np.float32)
    m = _scale(b, qt, "dmin")[:, :, None] * mn[:, :, None].astype(np.float32)
    return (d * q - m).reshape(n, 256)


def _dq_q6_k(b: np.ndarray, qt: QuantType) -> np.ndarray:
    n = b.shape[0]
    # Two independent halves of 128 values; each uses 64 ql bytes and 32 qh bytes.
    ql = _get(b, qt, "ql").reshape(n, 2, 2, 32)  # [half, first/second 32 bytes, l]
    qh = _get(b, qt, "qh").reshape(n, 2, 1, 32)
    # Within a half, quarter k (32 values) takes ql bytes [0:32] for k=0,2 and [32:64] for
    # k=1,3, the low nibble for k<2 and the high nibble for k>=2, and qh bits 2k..2k+1.
    low = np.stack([ql[:, :, 0] & 0x0F, ql[:, :, 1] & 0x0F, ql[:, :, 0] >> 4, ql[:, :, 1] >> 4], axis=2)
    high = (qh >> np.array([0, 2, 4, 6], np.uint8)[None, None, :, None]) & 3
    q = (low | (high << 4)).reshape(n, 256).astype(np.float32) - 32.0
    scale = np.repeat(_get(b, qt, "scales").astype(np.float32), 16, axis=1)  # element e uses e // 16
    return _scale(b, qt, "d") * scale * q


_DEQUANT = {"Q8_0": _dq_q8_0, "Q4_0": _dq_q4_0, "Q4_1": _dq_q4_1, "Q4_K": _dq_q4_k, "Q6_K": _dq_q6_k}


def quant_type(type_name: str) -> QuantType:
    try:
        return QUANT_TYPES[type_name]
    except KeyError:
        raise ModelError(
            f"tensor type {type_name} is not supported (supported: {', '.join(QUANT_TYPES)})"
        ) from None


def dequantize(raw: np.ndarray, type_name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Decode ``raw`` (uint8 bytes of a tensor in GGML ``type_name``) into float32 of ``shape``.

    ``shape`` is in numpy order (last axis = the contiguous GGUF ``ne[0]`` axis), which must
    be a multiple of the block size, as GGML requires.
    """
    qt = quant_type(type_name)
    shape = tuple(int(s) for s in shape)
    n_elems = int(np.prod(shape, dtype=np.int64))
    if shape and shape[-1] % qt.block_elems:
        raise ValueError(f"{type_name}: last dimension {shape[-1]} is not a multiple of {qt.block_elems}")
    raw = np.asarray(raw).reshape(-1)
    if raw.dtype != np.uint8:
        raise TypeError(f"dequantize expects uint8 bytes, got {raw.dtype}")
    if raw.size != qt.n_bytes(n_elems):
        raise ValueError(f"{type_name} tensor of shape {shape} needs {qt.n_bytes(n_elems)} bytes, got {raw.size}")
    if type_name == "F32":
        return raw.view("<f4").astype(np.float32).reshape(shape)
    if type_name == "F16":
        return raw.view("<f2").astype(np.float32).reshape(shape)
    blocks = raw.reshape(-1, qt.block_bytes)
    return _DEQUANT[type_name](blocks, qt).astype(np.float32, copy=False).reshape(shape)


def dequantize_rows(raw: np.ndarray, type_name: str, shape: tuple[int, int], rows) -> np.ndarray:
    """Dequantize only the given rows of a 2-D tensor (an embedding lookup, say)."""
    qt = quant_type(type_name)
    n_rows, n_cols = (int(s) for s in shape)
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    if rows.size and (rows.min() < 0 or rows.max() >= n_rows):
        raise IndexError(f"row index out of range for {n_rows} rows")
    row_bytes = qt.n_bytes(n_cols)
    picked = np.asarray(raw).reshape(n_rows, row_bytes)[rows]
    return dequantize(picked.reshape(-1), type_name, (rows.size, n_cols))
