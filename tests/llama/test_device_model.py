"""DeviceLlama (every layer an spvjit kernel) against the numpy ReferenceModel.

Both compute in float32 from the same decoded weights, so they differ only by rounding
(summation order in matrix products, attention and norms; fp32 sin/cos in rope). Over
30 layers of the default model that grows to about 1e-4 on logits of size ~30; the
bound used, 2e-3, is 15x that and still far below the gaps that decide a greedy pick,
which the argmax checks cover exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from spvjit.models.llama import ModelError, ReferenceModel
from spvjit.models.llama.device_model import DeviceLlama

# Greedy continuation of "Once upon a time, there was" by the reference model:
# " a small town nestled in the heart of a bustling city. The town was known for ..."
EXPECTED_32 = [253, 1165, 3102, 32047, 281, 260, 1911, 282, 253, 14055, 2240, 30, 378, 3102, 436, 1343,
               327, 624, 8685, 6600, 284, 11908, 28, 351, 253, 16254, 11908, 24626, 3365, 3906, 4075, 617]


@pytest.fixture(scope="module")
def default_device(default_model):
    model = DeviceLlama(default_model, max_ctx=128)
    yield model
    model.close()


def test_default_model_logits_match_reference(default_model, default_device, default_tokenizer):
    ids = default_tokenizer.encode("The quick brown fox jumps over the lazy dog. It was")[:8]
    assert len(ids) == 8
    ref = ReferenceModel(default_model, max_ctx=16).forward(ids, 0)
    got = default_device.forward(ids, 0, all_logits=True)
    assert got.shape == ref.shape == (8, default_model.config.n_vocab)
    err = np.abs(got - ref).max()
    assert err < 2e-3, f"max abs logit error {err}"
    np.testing.assert_array_equal(got.argmax(1), ref.argmax(1))
    # the decode path (recorded graph, one token per step) gives the same logits
    default_device.reset()
    steps = np.stack([default_device.forward([t], i) for i, t in enumerate(ids)])
    assert np.abs(steps - ref).max() < 2e-3
    assert default_device.forward_argmax([ids[-1]], 7) == int(ref[-1].argmax())


def test_default_model_greedy_32_tokens(default_device, default_tokenizer):
    ids = default_tokenizer.encode("Once upon a time, there was")
    assert default_device.generate_greedy(ids, 32) == EXPECTED_32


@pytest.fixture(params=[False, True], ids=["untied", "tied"])
def tiny_pair(request, make_tiny_gguf):
    from spvjit.models.llama import load_gguf

    mf = load_gguf(make_tiny_gguf(f"tiny_{request.param}.gguf", tied=request.param, seed=3))
    return mf, ReferenceModel(mf, max_ctx=64)


def test_tiny_model_prefill_decode_and_rewind(tiny_pair):
    # F16 and Q8_0 matrices mixed inside one projection (q: Q8_0, k: F16, v: Q8_0), so the
    # stacked-projection path writes column ranges of one output with different types.
    mf, ref = tiny_pair
    dev = DeviceLlama(mf, max_ctx=64, max_batch=4)   # an 11-token prompt runs as 3 batches
    prompt = [1, 270, 260, 271, 5, 279, 266, 40, 7, 275, 261]
    np.testing.assert_allclose(dev.forward(prompt, 0, all_logits=True), ref.forward(prompt, 0), atol=2e-4)
    for pos, tok in enumerate([277, 3, 268], start=len(prompt)):
        np.testing.assert_allclose(dev.forward([tok], pos), ref.forward([tok], pos)[0], atol=2e-4)
    # rewind: overwrite positions 5.. with other tokens, keeping 0..4 from the cache
    np.testing.assert_allclose(dev.forward([9, 10, 11], 5), ref.forward([9, 10, 11], 5)[-1], atol=2e-4)
    assert dev.n_cached == ref.n_cached == 8
    assert dev.generate_greedy(prompt, 10) == ref.generate_greedy(prompt, 10)
    dev.close()


def test_nan_logits_are_an_error_not_a_token(tiny_model):
    # Greedy decoding over NaN logits used to return token 0 silently.
    dev = DeviceLlama(tiny_model, max_ctx=16)
    try:
        dev.output_norm.copy_from(np.full(dev.output_norm.shape, np.nan, np.float32))
        with pytest.raises(ModelError, match="logits contain NaN"):
            dev.forward_argmax([1, 2, 3], 0)
        with pytest.raises(ModelError, match="logits contain NaN"):
            dev.decode_batch([4], [3], [0])
    finally:
        dev.close()


def test_unfused_layers_agree(tiny_model):
    # fused=False runs rms_norm and swiglu as kernels of their own
    ref = ReferenceModel(tiny_model, max_ctx=32)
    dev = DeviceLlama(tiny_model, max_ctx=32, fused=False)
    prompt = [1, 270, 260, 271, 5]
    np.testing.assert_allclose(dev.forward(prompt, 0, all_logits=True), ref.forward(prompt, 0), atol=2e-4)
    np.testing.assert_allclose(dev.forward([7], 5), ref.forward([7], 5)[0], atol=2e-4)
    dev.close()


def test_tiny_model_long_prompt(tiny_model):
    # 128 tokens: attention in blocks of query rows (attention_prefill) instead of rows
    from spvjit.models.llama.kernels import ATTN_BLOCKS_MIN_ROWS

    n = tiny_model.config.n_ctx_train
    assert n >= ATTN_BLOCKS_MIN_ROWS
    prompt = [int(t) for t in np.random.default_rng(5).integers(3, tiny_model.config.n_vocab, n)]
    dev = DeviceLlama(tiny_model, max_ctx=n)
    ref = ReferenceModel(tiny_model, max_ctx=n)
    want = ref.forward(prompt, 0)
    atol = 2e-4
    from spvjit.models.llama.kernels import matmul_coop
    if n >= matmul_coop.MIN_ROWS and matmul_coop.coopmat_f16_available():
        # prompt matmuls on f16 cooperative matrices round each projection's input to f16
        # (relative 2^-11); a logit passes through about 8 such roundings (q/k/v, o, gate/up,
        # down per layer, the output), each bounded by 2^-11 of the logits' magnitude
        atol = 8 * 2.0 ** -11 * float(np.abs(want).max())
    from spvjit.models.llama.kernels import matmul_q8
    if n >= matmul_coop.MIN_ROWS and matmul_q8.i8_available():
        # Q8_0 projections on i8 matrices quantize their input to 8 bits per 32-value block
        # (each x within 1/254 of its block's largest |x|, as llama.cpp's Q8 activations): the
        # same 8 roundings, each bounded by 2^-8 of the logits' magnitude
        atol = 8 * 2.0 ** -8 * float(np.abs(want).max())
    np.testing.assert_allclose(dev.forward(prompt, 0, all_logits=True), want, atol=atol)


def test_forward_argument_checks(tiny_model):
    dev = DeviceLlama(tiny_model, max_ctx=8)
    with pytest.raises(ValueError, match="at least one token"):
        dev.forward([], 0)
    with pytest.raises(ValueError, match="cached range"):
        dev.forward([1], 1)
    with pytest.raises(ValueError, match="context overflow"):
        dev.forward([1] * 9, 0)
    with pytest.raises(ValueError, match="out of range"):
        dev.forward([10_000], 0)


def test_upload_progress_and_layout(tiny_model):
    seen = []
    dev = DeviceLlama(tiny_model, max_ctx=8, progress=lambda done, total: seen.append((done, total)))
    total = seen[-1][1]
    assert seen[0] == (0, total) and seen[-1] == (total, total)
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))
    c = tiny_model.config
    # tiny model: q/k/v (Q8_0, F16, Q8_0) and gate/up (Q8_0, F16) cannot be stacked
    assert [p.offset for p in dev.layers[0].qkv] == [0, c.q_dim, c.q_dim + c.kv_dim]
    assert [p.offset for p in dev.layers[0].gate_up] == [0, c.n_ff]


def test_same_type_projections_are_stacked(default_device, default_model):
    c = default_model.config
    layer = default_device.layers[0]
    assert len(layer.qkv) == 1 and layer.qkv[0].weight.rows == c.q_dim + 2 * c.kv_dim
    assert len(layer.gate_up) == 1 and layer.gate_up[0].weight.rows == 2 * c.n_ff
    assert layer.qkv[0].weight.qtype == "Q4_1" and default_device.token_embd.qtype == "Q8_0"


def test_matrices_over_the_buffer_limit_are_split(make_tiny_gguf):
    # A deliberately lowered buffer limit (8 KiB): token_embd (F16, 128 bytes a row) and
    # output (Q8_0) go up in 64-row parts; the logits are the unsplit model's, bit for bit.
    from spvjit.models.llama import load_gguf
    from spvjit.models.llama.kernels import RowSplit

    mf = load_gguf(make_tiny_gguf("split.gguf", seed=4))
    prompt = [1, 270, 260, 271, 5, 279, 266]
    whole = DeviceLlama(mf, max_ctx=16)
    split = DeviceLlama(mf, max_ctx=16, buffer_limit=8192)
    assert isinstance(split.token_embd, RowSplit) and len(split.token_embd.parts) == -(-mf.config.n_vocab // 64)
    assert isinstance(split.output, RowSplit) and not isinstance(whole.token_embd, RowSplit)
    np.testing.assert_array_equal(split.forward(prompt, 0, all_logits=True), whole.forward(prompt, 0, all_logits=True))
    np.testing.assert_array_equal(split.forward([7], len(prompt)), whole.forward([7], len(prompt)))
    whole.close()
    split.close()
    with pytest.raises(ModelError, match="64 rows take .* more than one buffer of this device can hold"):
        DeviceLlama(mf, max_ctx=16, buffer_limit=4096)


def test_memory_needs_counts_coopmat_weight_copies(tiny_model):
    from spvjit.models.llama import device_model
    from spvjit.models.llama.kernels import MIN_ROWS_COOP

    matrices = [tiny_model.tensor(n) for n in tiny_model.tensor_names if len(tiny_model.tensor(n).shape) == 2]
    params = sum(t.shape[0] * t.shape[1] for t in matrices)
    plain = device_model.memory_needs(tiny_model, max_ctx=64, max_batch=64, coopmat=set())
    f16 = device_model.memory_needs(tiny_model, max_ctx=64, max_batch=64, coopmat={"f16"})
    assert plain.coopmat_copies == 0 and f16.coopmat_copies == 2 * params      # the tiny matrices all fit a buffer
    assert f16.device == plain.device + 2 * params and "weight copies for coopmat prompts" in f16.describe()
    # Q8_0 matrices with whole 64-row tiles take an int8 copy and f32 block scales instead
    q8 = [t for t in matrices if t.ggml_type == "Q8_0" and t.shape[0] % 64 == 0 and t.shape[1] % 32 == 0]
    assert q8                                  # (the tiny model has such matrices)
    both = device_model.memory_needs(tiny_model, max_ctx=64, max_batch=64, coopmat={"f16", "i8"})
    saved = sum(2 * t.shape[0] * t.shape[1] - (t.shape[0] * t.shape[1] * 9 // 8) for t in q8)
    assert both.coopmat_copies == 2 * params - saved
    # prompts shorter than the coopmat threshold never make the copies
    short = device_model.memory_needs(tiny_model, max_ctx=64, max_batch=MIN_ROWS_COOP - 1, coopmat={"f16", "i8"})
    assert short.coopmat_copies == 0


def test_memory_needs_and_a_device_too_small(tiny_model, monkeypatch):
    from spvjit.models.llama import device_model

    c = tiny_model.config
    need = device_model.memory_needs(tiny_model, max_ctx=32, max_batch=8)
    assert need.weights == sum(tiny_model.tensor(n).n_bytes for n in tiny_model.tensor_names)
    assert need.kv_cache == 2 * c.n_layer * 32 * c.kv_dim * 4
    assert need.device == need.weights + need.kv_cache + need.activations and need.host > 0
    monkeypatch.setattr(device_model, "_device_memory", lambda: need.device - 1)
    with pytest.raises(ModelError) as e:
        DeviceLlama(tiny_model, max_ctx=32, max_batch=8)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"tiny.gguf needs {need.device / 2**20:.0f} MiB of device memory")
    assert f"the device has {(need.device - 1) / 2**20:.0f} MiB" in msg
