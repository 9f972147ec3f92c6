"""GGUF tensor encodings: block layouts (for the GPU kernels) and numpy dequantization.

Every GGML type stores a tensor row as a sequence of fixed-size *blocks*; a block holds
``block_elems`` consecutive values of the row in ``block_bytes`` bytes. Rows are always a
whole number of blocks, so row ``r`` starts at byte ``r * cols // block_elems * block_bytes``.
All multi-byte fields are little-endian. ``QUANT_TYPES[name].fields`` lists each block's
fields with their byte offsets, which is what a kernel needs to address them.

The dequantizers below are written from the format definitions (ggml's ``block_q4_0`` and
friends) and are vectorized over blocks; tests compare them with ``gguf.quants``.

Formulas, per block (``q`` = stored integer, ``d``/``m`` = fp16 scale/offset):
  BF16  the top 16 bits of a float32
  Q8_0  x = d * q                 q int8, 32 per block
  Q4_0  x = d * (q - 8)           q 4-bit; byte j holds elements j (low nibble) and j+16 (high)
  Q4_1  x = d * q + m             same nibble order as Q4_0
  Q5_0  x = d * (q - 16)          Q4_0's nibbles, plus bit e of the 32-bit qh as bit 4 of q_e
  Q5_1  x = d * q + m             the same 5-bit q
  IQ4_NL x = d * T[q]             Q4_0's nibbles, mapped through the 16-entry table T
  Q2_K  256 values in 16 groups of 16: x = (d * (s & 15)) * q - dmin * (s >> 4), s the
        group's scale byte; 2-bit q: element 128h + 32k + l is bits 2k..2k+1 of qs[32h + l]
  Q3_K  256 values: 2-bit low part as in Q2_K, bit 4h+k of hmask[l] as a third bit;
        x = (d * (sc[e // 16] - 32)) * (q - 4) with 6-bit scales (see q3_k_scales)
  Q4_K  256 values in 8 sub-blocks of 32, each with a 6-bit scale s and min n:
        x = d * s * q - dmin * n  bytes 32g..32g+31 of qs hold sub-block 2g (low nibbles)
                                  and 2g+1 (high nibbles)
  Q5_K  Q4_K plus a fifth bit: bit j of qh[l] for element l of sub-block j
  Q6_K  256 values; 6-bit q = 4 low bits (ql) + 2 high bits (qh), x = d * sc[e // 16] * (q - 32)
  IQ4_XS 256 values in 8 sub-blocks of 32 with 6-bit scales s: x = (d * (s - 32)) * T[q],
        the 16 bytes of sub-block j hold its elements l (low nibble) and l + 16 (high)
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
        _layout("BF16", 30, 1, ("value", "<u2", 1)),
        _layout("Q4_0", 2, 32, ("d", "<f2", 1), ("qs", "u1", 16)),
        _layout("Q4_1", 3, 32, ("d", "<f2", 1), ("m", "<f2", 1), ("qs", "u1", 16)),
        _layout("Q5_0", 6, 32, ("d", "<f2", 1), ("qh", "u1", 4), ("qs", "u1", 16)),
        _layout("Q5_1", 7, 32, ("d", "<f2", 1), ("m", "<f2", 1), ("qh", "u1", 4), ("qs", "u1", 16)),
        _layout("Q8_0", 8, 32, ("d", "<f2", 1), ("qs", "i1", 32)),
        _layout("IQ4_NL", 20, 32, ("d", "<f2", 1), ("qs", "u1", 16)),
        _layout("Q2_K", 10, 256, ("scales", "u1", 16), ("qs", "u1", 64), ("d", "<f2", 1), ("dmin", "<f2", 1)),
        _layout("Q3_K", 11, 256, ("hmask", "u1", 32), ("qs", "u1", 64), ("scales", "u1", 12), ("d", "<f2", 1)),
        _layout("Q4_K", 12, 256, ("d", "<f2", 1), ("dmin", "<f2", 1), ("scales", "u1", 12), ("qs", "u1", 128)),
        _layout("Q5_K", 13, 256, ("d", "<f2", 1), ("dmin", "<f2", 1), ("scales", "u1", 12), ("qh", "u1", 32),
                ("qs", "u1", 128)),
        _layout("Q6_K", 14, 256, ("ql", "u1", 128), ("qh", "u1", 64), ("scales", "i1", 16), ("d", "<f2", 1)),
        _layout("IQ4_XS", 23, 256, ("d", "<f2", 1), ("scales_h", "<u2", 1), ("scales_l", "u1", 4),
                ("qs", "u1", 128)),
    )
}
# The sizes are part of the file format; a wrong field list would silently misread weights.
assert {n: q.block_bytes for n, q in QUANT_TYPES.items() if q.block_elems > 1} == {
    "Q4_0": 18, "Q4_1": 20, "Q5_0": 22, "Q5_1": 24, "Q8_0": 34, "IQ4_NL": 18, "Q2_K": 84, "Q3_K": 110,
    "Q4_K": 144, "Q5_K": 176, "Q6_K": 210, "IQ4_XS": 136}

# IQ4_NL and IQ4_XS map each 4-bit code through this table (ggml's kvalues_iq4nl).
IQ4_VALUES = (-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113)


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


def _q5(b: np.ndarray, qt: QuantType) -> np.ndarray:
    """The 5-bit quants of Q5_0 / Q5_1 blocks: nibbles as in Q4_0, bit e of qh on top."""
    high = np.unpackbits(_get(b, qt, "qh"), axis=1, bitorder="little")   # (n, 32): bit e
    return (_nibbles(_get(b, qt, "qs")) | (high << 4)).astype(np.float32)


def _dq_q5_0(b: np.ndarray, qt: QuantType) -> np.ndarray:
    return _scale(b, qt, "d") * (_q5(b, qt) - 16.0)


def _dq_q5_1(b: np.ndarray, qt: QuantType) -> np.ndarray:
    return _scale(b, qt, "d") * _q5(b, qt) + _scale(b, qt, "m")


def _dq_iq4_nl(b: np.ndarray, qt: QuantType) -> np.ndarray:
    table = np.array(IQ4_VALUES, np.float32)
    return _scale(b, qt, "d") * table[_nibbles(_get(b, qt, "qs"))]


def _crumbs(qs: np.ndarray) -> np.ndarray:
    """Q2_K / Q3_K low bits: (n, 64) bytes -> (n, 256), element 128h + 32k + l being bits
    2k..2k+1 of byte 32h + l."""
    n = qs.shape[0]
    shifts = np.array([0, 2, 4, 6], np.uint8)[None, None, :, None]
    return ((qs.reshape(n, 2, 1, 32) >> shifts) & 3).reshape(n, 256)


def _dq_q2_k(b: np.ndarray, qt: QuantType) -> np.ndarray:
    n = b.shape[0]
    s = _get(b, qt, "scales")                                    # (n, 16): group e // 16
    dl = (_scale(b, qt, "d") * (s & 15).astype(np.float32))[:, :, None]
    ml = (_scale(b, qt, "dmin") * (s >> 4).astype(np.float32))[:, :, None]
    q = _crumbs(_get(b, qt, "qs")).reshape(n, 16, 16).astype(np.float32)
    return (dl * q - ml).reshape(n, 256)


def q3_k_scales(scales: np.ndarray) -> np.ndarray:
    """Q3_K's 12 scale bytes -> 16 signed scales (6-bit, minus 32). Scale j keeps its low
    4 bits in byte j % 8 (low nibble for j < 8, high for j >= 8) and its top 2 bits in
    byte 8 + j % 4, bits 2 * (j // 4) .. + 1."""
    s = scales.astype(np.int32)
    j = np.arange(16)
    low = (s[:, j % 8] >> (4 * (j // 8))) & 15
    high = (s[:, 8 + j % 4] >> (2 * (j // 4))) & 3
    return (low | (high << 4)) - 32


def _dq_q3_k(b: np.ndarray, qt: QuantType) -> np.ndarray:
    n = b.shape[0]
    dl = (_scale(b, qt, "d") * q3_k_scales(_get(b, qt, "scales")).astype(np.float32))[:, :, None]
    low = _crumbs(_get(b, qt, "qs")).astype(np.int32)
    # element 128h + 32k + l: bit 4h + k of hmask[l]; a clear bit subtracts 4
    bits = np.arange(8, dtype=np.uint8)[None, :, None]
    high = ((_get(b, qt, "hmask")[:, None, :] >> bits) & 1).reshape(n, 256).astype(np.int32)
    q = (low + 4 * high - 4).reshape(n, 16, 16).astype(np.float32)
    return (dl * q).reshape(n, 256)


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


def _dq_q5_k(b: np.ndarray, qt: QuantType) -> np.ndarray:
    n = b.shape[0]
    sc, mn = q4_k_scales_mins(_get(b, qt, "scales"))
    qs = _get(b, qt, "qs").reshape(n, 4, 32)
    low = np.stack([qs & 0x0F, qs >> 4], axis=2).reshape(n, 8, 32)           # as in Q4_K
    high = (_get(b, qt, "qh")[:, None, :] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1
    q = (low | (high << 4)).astype(np.float32)
    d = _scale(b, qt, "d")[:, :, None] * sc[:, :, None].astype(np.float32)
    m = _scale(b, qt, "dmin")[:, :, None] * mn[:, :, None].astype(np.float32)
    return (d * q - m).reshape(n, 256)


def _dq_iq4_xs(b: np.ndarray, qt: QuantType) -> np.ndarray:
    n = b.shape[0]
    j = np.arange(8)
    low = (_get(b, qt, "scales_l")[:, j // 2] >> (4 * (j % 2))) & 15
    high = (_get(b, qt, "scales_h").astype(np.int32) >> (2 * j)) & 3          # (n, 8)
    dl = (_scale(b, qt, "d") * ((low | (high << 4)) - 32).astype(np.float32))[:, :, None]
    q = _nibbles(_get(b, qt, "qs").reshape(n * 8, 16)).reshape(n, 8, 32)    # per sub-block as Q4_0
    return (dl * np.array(IQ4_VALUES, np.float32)[q]).reshape(n, 256)


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


_DEQUANT = {"Q8_0": _dq_q8_0, "Q4_0": _dq_q4_0, "Q4_1": _dq_q4_1, "Q5_0": _dq_q5_0, "Q5_1": _dq_q5_1,
            "IQ4_NL": _dq_iq4_nl, "Q2_K": _dq_q2_k, "Q3_K": _dq_q3_k, "Q4_K": _dq_q4_k, "Q5_K": _dq_q5_k,
            "Q6_K": _dq_q6_k, "IQ4_XS": _dq_iq4_xs}


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
    if type_name == "BF16":
        return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)
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
