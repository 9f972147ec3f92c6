"""Dequantization against gguf.quants, and the block layouts kernels rely on."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from spvjit.models.llama import QUANT_TYPES, ModelError, dequantize
from spvjit.models.llama.quants import dequantize_rows, q4_k_scales_mins

Q = gguf.GGMLQuantizationType
BLOCKED = [name for name, qt in QUANT_TYPES.items() if qt.block_elems > 1]


def random_blocks(name: str, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """Random block bytes, with every fp16 field set to a finite value.

    Arbitrary bytes in an fp16 field can be NaN/inf, which would make equality checks
    meaningless; every other byte (quants, packed scales) is fully random.
    """
    qt = QUANT_TYPES[name]
    blocks = rng.integers(0, 256, (n_blocks, qt.block_bytes), dtype=np.uint8)
    for f in qt.fields:
        if f.dtype == "<f2":
            vals = (rng.standard_normal((n_blocks, f.count)) * 0.05).astype("<f2")
            blocks[:, f.offset : f.offset + f.n_bytes] = vals.view(np.uint8).reshape(n_blocks, -1)
    return blocks.reshape(-1)


@pytest.mark.parametrize("name", BLOCKED)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_blocks_match_gguf(name, seed):
    rng = np.random.default_rng(seed)
    qt = QUANT_TYPES[name]
    rows, blocks_per_row = 3, 5
    raw = random_blocks(name, rows * blocks_per_row, rng)
    mine = dequantize(raw, name, (rows, blocks_per_row * qt.block_elems))
    ref = gguf.quants.dequantize(raw.reshape(rows, -1), Q[name])
    assert mine.dtype == np.float32 and mine.shape == ref.shape
    np.testing.assert_array_equal(mine, ref)


@pytest.mark.parametrize("name", ["Q4_0", "Q4_1", "Q8_0"])
def test_quantized_real_data(name):
    # Realistic blocks from gguf's own quantizer: exact agreement with its dequantizer,
    # and the round trip error within what the format's step size allows.
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 256)).astype(np.float32)
    raw = gguf.quants.quantize(x, Q[name])
    mine = dequantize(raw.reshape(-1), name, x.shape)
    np.testing.assert_array_equal(mine, gguf.quants.dequantize(raw, Q[name]))
    # Worst-case error per block, from how each format picks its scale: Q8_0 rounds to
    # d = amax/127; Q4_1 to d = (max-min)/15; Q4_0 uses d = amax/8 and can clamp the far
    # end of the range by a whole step. Factors above 1/2 leave room for fp16 scales.
    blocks = x.reshape(-1, 32)
    amax = np.abs(blocks).max(1)
    unit, factor = {
        "Q8_0": (amax / 127, 0.6),
        "Q4_0": (amax / 8, 1.05),
        "Q4_1": ((blocks.max(1) - blocks.min(1)) / 15, 0.6),
    }[name]
    bound = np.repeat(unit * factor, 32).reshape(x.shape) + 2e-3
    assert np.all(np.abs(mine - x) <= bound)


@pytest.mark.parametrize("name", ["F32", "F16"])
def test_float_types(name):
    x = np.random.default_rng(3).standard_normal((5, 7)).astype(np.float32 if name == "F32" else np.float16)
    out = dequantize(x.view(np.uint8).reshape(-1), name, x.shape)
    np.testing.assert_array_equal(out, x.astype(np.float32))


def test_bf16_every_bit_pattern():
    # all 65536 patterns (NaNs and infinities included): the same float32 bits as gguf's
    raw = np.arange(1 << 16, dtype=np.uint16).view(np.uint8)
    mine = dequantize(raw, "BF16", (256, 256))
    ref = gguf.quants.dequantize(raw.reshape(256, -1), Q.BF16)
    np.testing.assert_array_equal(mine.view(np.uint32), ref.view(np.uint32))
    # and the top half of float32s (bf16 is their truncation here)
    x = np.random.default_rng(4).standard_normal(64).astype(np.float32)
    top = (x.view(np.uint32) >> 16).astype(np.uint16)
    np.testing.assert_array_equal(dequantize(top.view(np.uint8), "BF16", (64,)),
                                  (x.view(np.uint32) & 0xFFFF0000).view(np.float32))


@pytest.mark.parametrize("name", ["Q5_0", "Q5_1", "BF16"])
def test_quantized_real_data_new_types(name):
    # gguf's own quantizer for the types it implements: exact agreement with its dequantizer
    x = np.random.default_rng(8).standard_normal((4, 256)).astype(np.float32)
    raw = gguf.quants.quantize(x, Q[name])
    mine = dequantize(raw.reshape(-1), name, x.shape)
    np.testing.assert_array_equal(mine, gguf.quants.dequantize(raw, Q[name]))
    # Q5: 31 steps across the block's range, so within a step of x; bf16: 8 significant bits
    assert np.abs(mine - x).max() <= {"BF16": 2 ** -8 * np.abs(x).max(), "Q5_0": 0.3, "Q5_1": 0.2}[name]


def test_q3_k_scale_unpacking_by_hand():
    from spvjit.models.llama.quants import q3_k_scales

    s = np.zeros((1, 12), np.uint8)
    s[0, 1] = 0b0111_0101   # scale 1 low bits = 5, scale 9 low bits = 7
    s[0, 9] = 0b00_00_10_11  # scale 1 top bits (bits 0-1 of byte 9) = 3, scale 5 top bits = 2
    sc = q3_k_scales(s)[0]
    assert sc[1] == (3 << 4 | 5) - 32 and sc[9] == 7 - 32 and sc[5] == (2 << 4) - 32 and sc[0] == -32


def test_layouts():
    # Byte layouts of ggml's block structs, which GPU kernels index by offset.
    def offsets(name):
        return {f.name: (f.offset, f.n_bytes) for f in QUANT_TYPES[name].fields}

    assert offsets("Q8_0") == {"d": (0, 2), "qs": (2, 32)}
    assert offsets("Q4_0") == {"d": (0, 2), "qs": (2, 16)}
    assert offsets("Q4_1") == {"d": (0, 2), "m": (2, 2), "qs": (4, 16)}
    assert offsets("Q4_K") == {"d": (0, 2), "dmin": (2, 2), "scales": (4, 12), "qs": (16, 128)}
    assert offsets("Q6_K") == {"ql": (0, 128), "qh": (128, 64), "scales": (192, 16), "d": (208, 2)}
    for name, qt in QUANT_TYPES.items():
        block, size = gguf.GGML_QUANT_SIZES[Q[name]]
        assert (qt.block_elems, qt.block_bytes, qt.ggml_id) == (block, size, int(Q[name]))
        assert sum(f.n_bytes for f in qt.fields) == qt.block_bytes
    assert QUANT_TYPES["Q4_1"].bits_per_weight == 5.0
    assert QUANT_TYPES["Q4_1"].n_bytes(576) == 18 * 20


def test_q4_k_scale_unpacking_by_hand():
    # Sub-block 5 takes its low 4 bits from byte 9 and its top 2 bits from byte 1 (scale)
    # or byte 5 (min); sub-block 1 is just the low 6 bits of bytes 1 and 5.
    s = np.zeros((1, 12), np.uint8)
    s[0, 1] = 0b11_000101  # scale1 = 5, top bits of scale5 = 3
    s[0, 5] = 0b10_000111  # min1 = 7, top bits of min5 = 2
    s[0, 9] = 0b1001_0110  # scale5 low = 6, min5 low = 9
    sc, mn = q4_k_scales_mins(s)
    assert (sc[0, 1], mn[0, 1]) == (5, 7)
    assert (sc[0, 5], mn[0, 5]) == (3 << 4 | 6, 2 << 4 | 9)


def test_real_tensors_match_gguf(default_model):
    for name in ("blk.0.attn_q.weight", "blk.29.ffn_down.weight"):
        t = default_model.tensor(name)
        np.testing.assert_array_equal(t.dequantize(), gguf.quants.dequantize(t.data.reshape(t.rows, -1), Q[t.ggml_type]))
    embd = default_model.tensor("token_embd.weight")
    rows = [0, 1, 19556, 49151]
    ref = gguf.quants.dequantize(embd.data.reshape(embd.rows, -1)[rows], Q.Q8_0)
    np.testing.assert_array_equal(embd.dequantize_rows(rows), ref)


def test_dequantize_rows_matches_full():
    rng = np.random.default_rng(5)
    raw = random_blocks("Q6_K", 6 * 2, rng)
    full = dequantize(raw, "Q6_K", (6, 512))
    np.testing.assert_array_equal(dequantize_rows(raw, "Q6_K", (6, 512), [4, 0, 4]), full[[4, 0, 4]])
    with pytest.raises(IndexError):
        dequantize_rows(raw, "Q6_K", (6, 512), [6])


def test_bad_inputs():
    with pytest.raises(ModelError, match="tensor type IQ2_XS is not supported"):
        dequantize(np.zeros(74, np.uint8), "IQ2_XS", (256,))
    with pytest.raises(ValueError, match="needs 40 bytes, got 34"):
        dequantize(np.zeros(34, np.uint8), "Q4_1", (1, 64))
    with pytest.raises(ValueError, match="not a multiple of 32"):
        dequantize(np.zeros(20, np.uint8), "Q4_1", (2, 16))
