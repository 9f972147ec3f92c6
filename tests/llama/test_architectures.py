"""Llama-family variants read from GGUF metadata, each with a tiny random model written
here, on the device against the numpy reference at every position.

* llama 3.1/3.2: rope frequency factors (``rope_freqs.weight``) divide the frequencies;
* qwen2: biases on the Q, K and V projections, and NEOX rope (pairs (i, i + d/2): qwen2
  GGUFs keep HF's row order, llama.cpp runs them with LLAMA_ROPE_TYPE_NEOX).

Tolerance: as in test_device_model's tiny-model tests (2e-4 on logits of a few units:
both sides decode the same weights; they differ by fp32 rounding only).
"""

from __future__ import annotations

import numpy as np
import pytest

from spvjit.models.llama import ModelError, ReferenceModel, load_gguf
from spvjit.models.llama.device_model import DeviceLlama
from spvjit.models.llama.reference import apply_rope

from .test_reference import neox_rope

PROMPT = [1, 270, 260, 271, 5, 279, 266, 40, 7, 275, 261]


def check_against_reference(mf):
    ref = ReferenceModel(mf, max_ctx=32)
    dev = DeviceLlama(mf, max_ctx=32, max_batch=8)
    try:
        want = ref.forward(PROMPT, 0)
        np.testing.assert_allclose(dev.forward(PROMPT, 0, all_logits=True), want, atol=2e-4)
        for pos, tok in enumerate([277, 3], start=len(PROMPT)):
            np.testing.assert_allclose(dev.forward([tok], pos), ref.forward([tok], pos)[0], atol=2e-4)
    finally:
        dev.close()
    return want


def test_llama3_rope_frequency_factors(make_tiny_gguf):
    head_half = 8   # TINY: head_dim 16
    factors = np.geomspace(1.0, 8.0, head_half).astype(np.float32)
    mf = load_gguf(make_tiny_gguf("llama3.gguf", rope_freqs=factors, seed=5))
    plain = load_gguf(make_tiny_gguf("plain.gguf", seed=5))
    want = check_against_reference(mf)
    # the factors change the model (the same weights without them give other logits)
    assert np.abs(want - ReferenceModel(plain, max_ctx=32).forward(PROMPT, 0)).max() > 1e-3


def test_neox_rope_is_rotate_half():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 2, 16)).astype(np.float32)
    inv = rng.random(8)
    np.testing.assert_allclose(apply_rope(x, [0, 5, 9], inv, neox=True), neox_rope(x, [0, 5, 9], inv), atol=1e-6)


def test_qwen2_biases_and_neox_rope(make_tiny_gguf):
    mf = load_gguf(make_tiny_gguf("qwen2.gguf", arch="qwen2", qkv_bias=True, seed=6))
    assert mf.config.arch == "qwen2" and mf.config.rope_neox
    assert mf.qkv_bias(1).shape == (mf.config.q_dim + 2 * mf.config.kv_dim,)
    check_against_reference(mf)


def test_qwen2_without_biases_is_one_line_error(make_tiny_gguf):
    with pytest.raises(ModelError) as e:
        load_gguf(make_tiny_gguf("nobias.gguf", arch="qwen2", seed=6))
    assert str(e.value) == "nobias.gguf: tensor 'blk.0.attn_q.bias' is missing"
