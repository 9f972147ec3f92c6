"""Each llama kernel against numpy on random data.

Weights: every GGUF type, as random blocks (every bit pattern of the quants and packed
scales, finite fp16 fields) or gguf's own quantizer. The dequant helpers must reproduce
``quants.dequantize`` exactly (same fp32 operations on the same bits); a layer's output
then differs from the float64 product of the dequantized matrix only by fp32 rounding in
the products and sums, which for any summation order is at most about K * 2^-24 *
sum_k |w_k x_k| (the standard bound on recursive/pairwise summation); the tests use
twice that. Shapes are chosen to not be multiples of the kernels' blocks.
"""

from __future__ import annotations

import gguf
import numpy as np
import pytest

import spvjit
from spvjit.models.llama import QUANT_TYPES, dequantize
from spvjit.models.llama import kernels as K
from spvjit.models.llama.config import LlamaConfig
from spvjit.models.llama.reference import apply_rope, attention, rms_norm, rope_inv_freq, swiglu

from .test_quants import random_blocks

TYPES = list(K.SUPPORTED)    # every type with device kernels
FLOAT_TYPES = [t for t in TYPES if QUANT_TYPES[t].block_elems == 1]
TILED_TYPES = [t for t in TYPES if K.device_quant(t).tiled]
U = 2.0**-24


def random_weight(qtype: str, rows: int, cols: int, rng) -> np.ndarray:
    """GGUF bytes of a random rows x cols matrix of type qtype."""
    if qtype == "F32":
        return rng.standard_normal(rows * cols).astype(np.float32).view(np.uint8)
    if qtype == "F16":
        return rng.standard_normal(rows * cols).astype(np.float16).view(np.uint8)
    if qtype == "BF16":   # the top halves of float32s: finite values
        x = rng.standard_normal(rows * cols).astype(np.float32)
        return (x.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    return random_blocks(qtype, rows * cols // QUANT_TYPES[qtype].block_elems, rng)


def width(qtype: str, n_blocks: int) -> int:
    """Columns for n_blocks blocks; float types get a width no block size divides."""
    return n_blocks * QUANT_TYPES[qtype].block_elems if qtype not in FLOAT_TYPES else 32 * n_blocks + 5


def device_weight(qtype, rows, cols, rng):
    raw = random_weight(qtype, rows, cols, rng)
    return raw, K.DeviceWeight.upload(K.pack_weight(raw, qtype, (rows, cols)))


def assert_dot_close(got, w, x, ref=None):
    """got ~= x @ w.T (x: (m, K) or (K,)) within the fp32 summation bound."""
    w64, x64 = w.astype(np.float64), x.astype(np.float64)
    ref = x64 @ w64.T if ref is None else ref
    bound = 2 * (w.shape[1] + 2) * U * (np.abs(x64) @ np.abs(w64).T) + 1e-30
    err = np.abs(got - ref)
    assert np.all(err <= bound), f"max error {err.max():.3g}, worst ratio {np.max(err / bound):.3g}"


@pytest.mark.parametrize("qtype", TYPES)
def test_dequant_rows_exact(qtype):
    rng = np.random.default_rng(1)
    rows, cols = 7, width(qtype, 3)
    raw, w = device_weight(qtype, rows, cols, rng)
    ids = np.array([6, 0, 3, 3], np.int32)
    out = spvjit.empty((len(ids), cols))
    K.dequant_rows(w, spvjit.tensor(ids), out, len(ids))
    got = out.numpy()
    np.testing.assert_array_equal(got, dequantize(raw, qtype, (rows, cols))[ids])   # the numpy twin
    if qtype != "F32":   # and gguf's own dequantizer, bit for bit
        ref = gguf.quants.dequantize(raw.reshape(rows, -1), gguf.GGMLQuantizationType[qtype])
        np.testing.assert_array_equal(got.view(np.uint32), ref.reshape(rows, cols)[ids].view(np.uint32))


def test_packing_keeps_the_bytes():
    # The device layout is a split of each block, not a re-encoding: same number of bytes.
    rng = np.random.default_rng(2)
    for qtype in TYPES:
        rows, cols = 3, width(qtype, 2)
        raw = random_weight(qtype, rows, cols, rng)
        assert K.pack_weight(raw, qtype, (rows, cols)).nbytes == raw.size, qtype


@pytest.mark.parametrize("qtype", TYPES)
def test_unpack_gives_the_file_bytes_back(qtype):
    # pack_weight only moves bits around (row-tiled types: padded to whole 64-row tiles)
    rng = np.random.default_rng(16)
    for rows in (1, 37, 70):
        cols = width(qtype, 2)
        raw = random_weight(qtype, rows, cols, rng)
        p = K.pack_weight(raw, qtype, (rows, cols))
        np.testing.assert_array_equal(K.unpack(p), raw)



@pytest.mark.parametrize("qtype", TILED_TYPES)
def test_tiled_rows_across_tiles(qtype):
    # more rows than one 64-row tile: the embedding lookup, matvec and matmul
    rng = np.random.default_rng(17)
    rows, cols = 70, width(qtype, 2)
    raw, w = device_weight(qtype, rows, cols, rng)
    W = dequantize(raw, qtype, (rows, cols))
    ids = np.array([69, 0, 64, 63], np.int32)
    out = spvjit.empty((len(ids), cols))
    K.dequant_rows(w, spvjit.tensor(ids), out, len(ids))
    np.testing.assert_array_equal(out.numpy(), W[ids])
    x = rng.standard_normal((5, cols)).astype(np.float32)
    y = spvjit.empty((rows,))
    K.matvec(w, spvjit.tensor(x[0]), y)
    assert_dot_close(y.numpy(), W, x[0])
    for blocks in (None, {"BM": 2}):
        y = spvjit.empty((5, rows))
        K.matmul(w, spvjit.tensor(x), y, 5, blocks=blocks)
        assert_dot_close(y.numpy(), W, x)


@pytest.mark.parametrize("qtype", TILED_TYPES)
@pytest.mark.parametrize("blocks", [{"KB": 2, "P": 3}, {"KB": 1, "P": 1}], ids=["KB2-P3", "KB1-P1"])
def test_matvec_tiled_k_chunks(qtype, blocks):
    # K/32 = 5 blocks in chunks of KB (largest divisor <= KB: 1): partial sums go through y,
    # with and without accumulating into what y holds, at an offset, after the norm
    rng = np.random.default_rng(18)
    rows, cols = 130, width(qtype, 5)
    raw, w = device_weight(qtype, rows, cols, rng)
    W = dequantize(raw, qtype, (rows, cols))
    x = rng.standard_normal((2, cols)).astype(np.float32)
    nw = rng.standard_normal(cols).astype(np.float32)
    y0 = rng.standard_normal(rows + 3).astype(np.float32)
    fx = rms_norm(x[1], nw, 1e-5).astype(np.float64)
    for acc in (False, True):
        y = spvjit.tensor(y0)
        K.matvec(w, spvjit.tensor(x), y, y_off=3, acc=acc, x_off=cols, norm=spvjit.tensor(nw), blocks=blocks)
        ref = fx @ W.T.astype(np.float64) + (y0[3:] if acc else 0.0)
        got = y.numpy()
        np.testing.assert_array_equal(got[:3], y0[:3])
        assert np.all(np.abs(got[3:] - ref) <= 1e-5 * (np.abs(fx) @ np.abs(W.T)) + 1e-6 * np.abs(y0[3:]) * acc)


@pytest.mark.parametrize("qtype", TYPES)
def test_matvec(qtype):
    rng = np.random.default_rng(3)
    rows, cols = 37, width(qtype, 3)
    raw, w = device_weight(qtype, rows, cols, rng)
    W = dequantize(raw, qtype, (rows, cols))
    x = rng.standard_normal(cols).astype(np.float32)
    y = spvjit.empty((rows,))
    K.matvec(w, spvjit.tensor(x), y)
    assert_dot_close(y.numpy(), W, x)


@pytest.mark.parametrize("qtype", TYPES)
def test_matmul(qtype):
    rng = np.random.default_rng(4)
    rows, cols, m = 37, width(qtype, 3), 19
    raw, w = device_weight(qtype, rows, cols, rng)
    W = dequantize(raw, qtype, (rows, cols))
    x = rng.standard_normal((m, cols)).astype(np.float32)
    y = spvjit.empty((m, rows))
    K.matmul(w, spvjit.tensor(x), y, m)
    assert_dot_close(y.numpy(), W, x)


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"])
def test_matvec_gguf_quantizer(qtype):
    # Realistic blocks from gguf's quantizer (random blocks can have huge fp16 scales).
    import gguf

    rng = np.random.default_rng(5)
    dense = rng.standard_normal((45, 160)).astype(np.float32)
    raw = gguf.quants.quantize(dense, gguf.GGMLQuantizationType[qtype]).reshape(-1)
    w = K.DeviceWeight.upload(K.pack_weight(raw, qtype, dense.shape))
    W = dequantize(raw, qtype, dense.shape)
    x = rng.standard_normal(160).astype(np.float32)
    y = spvjit.empty((45,))
    K.matvec(w, spvjit.tensor(x), y)
    assert_dot_close(y.numpy(), W, x)


def test_linear_offset_and_accumulate():
    # Two matrices of different types writing column ranges of one output, adding to it.
    rng = np.random.default_rng(6)
    cols, m = 64, 3
    raw_a, wa = device_weight("Q8_0", 10, cols, rng)
    raw_b, wb = device_weight("F16", 6, cols, rng)
    Wa, Wb = dequantize(raw_a, "Q8_0", (10, cols)), dequantize(raw_b, "F16", (6, cols))
    x = rng.standard_normal((m, cols)).astype(np.float32)
    y0 = rng.standard_normal((m, 16)).astype(np.float32)
    for n in (1, m):  # matvec, matmul
        y = spvjit.tensor(y0[:n])
        K.linear(wa, spvjit.tensor(x[:n]), y, n, ldy=16 if n > 1 else None, acc=True)
        K.linear(wb, spvjit.tensor(x[:n]), y, n, ldy=16 if n > 1 else None, y_off=10, acc=True)
        W = np.concatenate([Wa, Wb])
        assert_dot_close(y.numpy(), W, x[:n], ref=y0[:n] + x[:n].astype(np.float64) @ W.T.astype(np.float64))


@pytest.mark.parametrize("m", [1, 6], ids=["matvec", "matmul"])
@pytest.mark.parametrize("pre", ["norm", "swiglu"])
def test_linear_fused_input(pre, m):
    # f(x) computed on the fly by the linear kernels: rms_norm(x) * w, or silu(gate) * up
    rng = np.random.default_rng(14)
    rows, cols = 21, 96
    raw, w = device_weight("Q4_1", rows, cols, rng)
    W = dequantize(raw, "Q4_1", (rows, cols))
    if pre == "norm":
        x = rng.standard_normal((m, cols)).astype(np.float32) * 3
        nw = rng.standard_normal(cols).astype(np.float32)
        fx = rms_norm(x, nw, 1e-5).astype(np.float64)
        kw = dict(norm=spvjit.tensor(nw), eps=1e-5)
    else:
        x = rng.standard_normal((m, 2 * cols)).astype(np.float32) * 2
        fx = swiglu(x[:, :cols], x[:, cols:]).astype(np.float64)
        kw = dict(swiglu=True)
    y = spvjit.empty((m, rows))
    K.linear(w, spvjit.tensor(x), y, m, **kw)
    # f(x) itself is rounded differently here and there (a few ulp): allow 1e-5 relative
    ref = fx @ W.T.astype(np.float64)
    bound = 1e-5 * (np.abs(fx) @ np.abs(W.T).astype(np.float64))
    assert np.all(np.abs(y.numpy() - ref) <= bound)


def test_matvec_reads_a_row_of_a_batch():
    # the logits of the last prompt token: matvec on row r of x (x_off), with the final norm
    rng = np.random.default_rng(15)
    raw, w = device_weight("Q8_0", 30, 64, rng)
    W = dequantize(raw, "Q8_0", (30, 64))
    x = rng.standard_normal((4, 64)).astype(np.float32)
    nw = rng.standard_normal(64).astype(np.float32)
    y = spvjit.empty((30,))
    K.matvec(w, spvjit.tensor(x), y, x_off=3 * 64, norm=spvjit.tensor(nw))
    fx = rms_norm(x[3], nw, 1e-5).astype(np.float64)
    assert np.all(np.abs(y.numpy() - fx @ W.T) <= 1e-5 * (np.abs(fx) @ np.abs(W.T)))


def test_rms_norm():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 1100)).astype(np.float32) * 3
    w = rng.standard_normal(1100).astype(np.float32)
    out = spvjit.empty((3, 1100))
    K.rms_norm(spvjit.tensor(x), spvjit.tensor(w), out, 3, 1100, 1e-5, row0=2)
    np.testing.assert_allclose(out.numpy(), rms_norm(x[2:], w, 1e-5), rtol=2e-5, atol=1e-6)


def _rope_config(head_dim, rope_dim, base):
    return LlamaConfig(arch="llama", n_vocab=1, n_ctx_train=64, n_embd=4 * head_dim, n_layer=1, n_head=4,
                       n_head_kv=2, head_dim=head_dim, n_ff=1, rope_freq_base=base, rope_dim=rope_dim,
                       rope_scaling_type="none", rope_scaling_factor=1.0, rms_eps=1e-5, bos_token_id=None,
                       eos_token_id=None, add_bos=False, add_eos=False, tied_embeddings=True)


@pytest.mark.parametrize("head_dim,rope_dim", [(64, 64), (24, 16)])
def test_rope_and_cache_write(head_dim, rope_dim):
    rng = np.random.default_rng(8)
    n_head, n_kv, n, start, ctx = 4, 2, 5, 3, 16
    cfg = _rope_config(head_dim, rope_dim, 100000.0)
    inv = rope_inv_freq(cfg)
    table = np.zeros(head_dim // 2, np.float32)
    table[: inv.size] = inv
    ld = (n_head + 2 * n_kv) * head_dim
    qkv = rng.standard_normal((n, ld)).astype(np.float32)
    kc, vc = spvjit.zeros((ctx, n_kv, head_dim)), spvjit.zeros((ctx, n_kv, head_dim))
    dq = spvjit.tensor(qkv)
    K.rope_kv(dq, kc, vc, spvjit.tensor(table), n, spvjit.tensor(np.array([start], np.int32)), ld,
              n_head, n_kv, head_dim)
    pos = np.arange(start, start + n)
    q = qkv[:, : n_head * head_dim].reshape(n, n_head, head_dim)
    k = qkv[:, n_head * head_dim : (n_head + n_kv) * head_dim].reshape(n, n_kv, head_dim)
    v = qkv[:, (n_head + n_kv) * head_dim :].reshape(n, n_kv, head_dim)
    got = dq.numpy()
    np.testing.assert_allclose(got[:, : n_head * head_dim].reshape(q.shape), apply_rope(q, pos, inv), atol=2e-5)
    np.testing.assert_array_equal(got[:, n_head * head_dim :], qkv[:, n_head * head_dim :])
    np.testing.assert_allclose(kc.numpy()[start : start + n], apply_rope(k, pos, inv), atol=2e-5)
    np.testing.assert_array_equal(vc.numpy()[start : start + n], v)
    assert not kc.numpy()[:start].any() and not kc.numpy()[start + n :].any()


def _kv(rng, t, n_kv, d):
    return (rng.standard_normal((t, n_kv, d)).astype(np.float32), rng.standard_normal((t, n_kv, d)).astype(np.float32))


@pytest.mark.parametrize("t", [1, 45])
def test_attention_decode(t):
    rng = np.random.default_rng(9)
    n_head, n_kv, d = 6, 2, 64
    k, v = _kv(rng, 64, n_kv, d)
    q = rng.standard_normal((1, n_head, d)).astype(np.float32) * 2
    out = spvjit.empty((n_head * d,))
    pos = spvjit.tensor(np.array([t - 1], np.int32))
    K.attention_decode(spvjit.tensor(q), spvjit.tensor(k), spvjit.tensor(v), out, pos, n_head, n_kv, d)
    np.testing.assert_allclose(out.numpy(), attention(q, k[:t], v[:t], t - 1)[0], rtol=1e-4, atol=1e-5)


# (attention_prefill with n = 1 is left out: lavapipe compiles a second variant of the
# shader, ~9 s, when a grid dimension is 1; the model only uses it from 128 rows)
@pytest.mark.parametrize("launch,n,start,d", [
    (K.attention_rows, 21, 0, 64), (K.attention_rows, 7, 12, 16), (K.attention_rows, 1, 4, 64),
    (K.attention_prefill, 21, 0, 64), (K.attention_prefill, 7, 12, 16),
], ids=["rows-21", "rows-7-d16", "rows-1", "blocks-21", "blocks-7-d16"])
def test_attention_prefill(launch, n, start, d):
    rng = np.random.default_rng(10)
    n_head, n_kv = 4, 2
    k, v = _kv(rng, 40, n_kv, d)
    ldq = (n_head + 2 * n_kv) * d  # queries read from a wider qkv row
    qkv = rng.standard_normal((n, ldq)).astype(np.float32)
    out = spvjit.empty((n, n_head * d))
    pos = spvjit.tensor(np.array([start], np.int32))
    launch(spvjit.tensor(qkv), spvjit.tensor(k), spvjit.tensor(v), out, n, pos, ldq, n_head, n_kv, d)
    q = qkv[:, : n_head * d].reshape(n, n_head, d)
    ref = attention(q, k[: start + n], v[: start + n], start)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-5)


def test_swiglu_and_add():
    rng = np.random.default_rng(11)
    n, f = 3, 700
    gu = rng.standard_normal((n, 2 * f)).astype(np.float32) * 4
    out = spvjit.empty((n, f))
    K.swiglu(spvjit.tensor(gu), out, n, f)
    np.testing.assert_allclose(out.numpy(), swiglu(gu[:, :f], gu[:, f:]), rtol=1e-5, atol=1e-6)
    a, b = rng.standard_normal(2500).astype(np.float32), rng.standard_normal(2500).astype(np.float32)
    da = spvjit.tensor(a)
    K.add(da, spvjit.tensor(b), da, 2500)  # in place
    np.testing.assert_array_equal(da.numpy(), a + b)


def test_softmax():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((3, 2100)).astype(np.float32) * 10
    out = spvjit.empty(x.shape)
    K.softmax(spvjit.tensor(x), out, 3, 2100)
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(out.numpy(), e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("n", [1, 1000, 49152])
def test_argmax(n):
    rng = np.random.default_rng(13)
    x = rng.standard_normal(n).astype(np.float32)
    x[n // 3] = x[n // 2] = x[-1] = 10.0  # ties: the first one wins, as in numpy
    out = spvjit.zeros((1,), np.int32)
    K.argmax(spvjit.tensor(x), out, n)
    assert int(out.numpy()[0]) == int(np.argmax(x))


@pytest.mark.parametrize("where", ["first", "middle", "all"])
def test_argmax_marks_a_row_with_nan(where):
    # NaN compares false with everything: without the check an all-NaN row picked token 0.
    x = np.random.default_rng(14).standard_normal((2, 3000)).astype(np.float32)
    x[1, {"first": [0], "middle": [1500], "all": slice(None)}[where]] = np.nan
    out = spvjit.zeros((2,), np.int32)
    K.argmax(spvjit.tensor(x), out, 3000, n_rows=2)
    assert out.numpy().tolist() == [int(np.argmax(x[0])), -1]


@pytest.mark.parametrize("qtype", ["Q4_1", "Q4_K", "F16"])
def test_row_split_weights_give_the_same_results(qtype):
    # A matrix over the buffer limit goes up in 64-row parts (kernels.RowSplit); every
    # launcher gives bit for bit what the unsplit matrix gives (each row is computed the
    # same way, only by another dispatch), and embedding ids in any part find their row.
    rng = np.random.default_rng(21)
    rows, cols = 200, width(qtype, 2) if qtype != "F16" else 64
    raw = random_weight(qtype, rows, cols, rng)
    whole = K.upload_weight(raw, qtype, (rows, cols))
    row_bytes = QUANT_TYPES[qtype].n_bytes(cols)
    split = K.upload_weight(raw, qtype, (rows, cols), limit=64 * row_bytes + 7)
    assert isinstance(whole, K.DeviceWeight) and isinstance(split, K.RowSplit)
    assert [r0 for r0, _ in split.parts] == [0, 64, 128, 192] and split.nbytes == raw.size
    ids = spvjit.tensor(np.array([199, 0, 64, 130, 63], np.int32))
    x = rng.standard_normal((3, cols)).astype(np.float32)
    nw = spvjit.tensor(rng.standard_normal(cols).astype(np.float32))
    results = []
    for w in (whole, split):
        emb = spvjit.empty((5, cols))
        K.dequant_rows(w, ids, emb, 5)
        y1 = spvjit.zeros((rows + 2,))
        K.matvec(w, spvjit.tensor(x[0]), y1, y_off=2, norm=nw)
        y3 = spvjit.empty((3, rows))
        K.matmul(w, spvjit.tensor(x), y3, 3)
        results.append((emb.numpy(), y1.numpy(), y3.numpy()))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(results[1][0], dequantize(raw, qtype, (rows, cols))[[199, 0, 64, 130, 63]])
    with pytest.raises(ValueError, match="exceed the device's buffer limit"):
        K.upload_weight(raw, qtype, (rows, cols), limit=32 * row_bytes)


@pytest.mark.coopmat
@pytest.mark.parametrize("qtype", ["Q4_1", "Q8_0", "Q5_0", "F16"])
@pytest.mark.parametrize("pre", ["none", "norm", "swiglu"])
def test_prompt_matmul_on_cooperative_matrices(qtype, pre):
    """m >= MIN_ROWS prompt rows on a coopmat device: the f16 copy of W times f16 activations
    (70 weight rows: ragged W tiles, clamped and masked)."""
    _prompt_matmul_on_cooperative_matrices(qtype, pre, rows=70)


@pytest.mark.coopmat
def test_prompt_matmul_whole_tiles_on_cooperative_matrices():
    """128 weight rows and K a multiple of BK: the EVEN kernel, whose W tiles the coopmat dot
    reads straight from the f16 copy (test_coopmat_operands.py checks its SPIR-V)."""
    _prompt_matmul_on_cooperative_matrices("Q4_1", "none", rows=128)


def _prompt_prologue(rng, m: int, cols: int, pre: str):
    """Random prompt rows for a matmul with prologue `pre` ("none", "norm": RMS norm with a
    weight, "swiglu": silu(gate) * up of rows twice as wide): (the input rows, the float64
    numpy reference of what the matmul multiplies, the matmul's keyword arguments)."""
    x_in = rng.standard_normal((m, 2 * cols if pre == "swiglu" else cols)).astype(np.float32)
    norm_w = rng.random(cols).astype(np.float32) + 0.5
    if pre == "norm":
        x = x_in / np.sqrt((x_in.astype(np.float64) ** 2).mean(1, keepdims=True) + 1e-5) * norm_w
        return x_in, x, dict(norm=spvjit.tensor(norm_w), eps=1e-5)
    if pre == "swiglu":
        g, u = x_in[:, :cols].astype(np.float64), x_in[:, cols:].astype(np.float64)
        return x_in, g / (1 + np.exp(-g)) * u, dict(swiglu=True)
    return x_in, x_in.astype(np.float64), {}


@pytest.mark.coopmat
@pytest.mark.parametrize("pre", ["none", "norm", "swiglu"])
def test_q8_0_prompt_matmul_on_i8_cooperative_matrices(pre):
    """Q8_0 weights x Q8-quantized prompt rows on i8 cooperative matrices (matmul_q8.py)."""
    from spvjit.models.llama.kernels import matmul_q8
    if not matmul_q8.i8_available():
        pytest.skip("no i8 cooperative matrices here (scripts/coopmat-env has them)")
    rng = np.random.default_rng(8)
    rows, cols, m = 128, width("Q8_0", 5), K.MIN_ROWS_COOP + 5
    raw, w = device_weight("Q8_0", rows, cols, rng)
    W = dequantize(raw, "Q8_0", (rows, cols)).astype(np.float64)
    x_in, x, kw = _prompt_prologue(rng, m, cols, pre)
    y = spvjit.tensor(np.full((m, rows), 3.0, np.float32))
    K.matmul(w, spvjit.tensor(x_in), y, m, acc=True, **kw)
    assert getattr(w, "_q8_copy", None) is not None and getattr(w, "_f16_copy", None) is None
    ref = 3.0 + x @ W.T
    # each x is quantized to its block's step d = max|x|/127 (error <= d/2, plus the f32
    # rounding of f(x) before it), W is exact; i32 block sums are exact and the f32 scaling
    # and sums add a few 2^-24 relative: |err| <= sum_k (d_k/2 + 2^-20 |x_k|) |W[n, k]| + slack
    d = np.abs(x.reshape(m, -1, 32)).max(axis=2) / 127.0
    step = np.repeat(d, 32, axis=1)
    bound = (step / 2 + 2.0 ** -20 * np.abs(x)) @ np.abs(W).T + 1e-5 * (np.abs(x) @ np.abs(W).T) + 1e-6
    err = np.abs(y.numpy() - ref)
    assert np.all(err <= bound), f"max error {err.max():.3g}, worst ratio {np.max(err / bound):.3g}"


def _prompt_matmul_on_cooperative_matrices(qtype, pre, rows):
    from spvjit.models.llama.kernels import matmul_coop
    if not matmul_coop.coopmat_f16_available():
        if spvjit.knobs.get("SPVJIT_REQUIRE_COOPMAT"):
            pytest.fail("SPVJIT_REQUIRE_COOPMAT is set but the device has no f16 cooperative matrices")
        pytest.skip("no f16 cooperative matrices here (scripts/coopmat-env has them)")
    rng = np.random.default_rng(7)
    cols, m = width(qtype, 5), matmul_coop.MIN_ROWS + 5
    raw, w = device_weight(qtype, rows, cols, rng)
    W = dequantize(raw, qtype, (rows, cols))
    x_in, x, kw = _prompt_prologue(rng, m, cols, pre)
    y = spvjit.empty((m, rows))
    K.matmul(w, spvjit.tensor(x_in), y, m, **kw)
    assert getattr(w, "_f16_copy", None) is not None          # it did go through the f16 copy
    x64, w64 = np.asarray(x, np.float64), W.astype(np.float64)
    ref = x64 @ w64.T
    # x and W are rounded to f16 (relative 2^-11 each), products are exact in f32 and summed
    # in f32 over K terms: |err| <= (2 * 2^-11 + 2 (K + 2) 2^-24) * (|x| @ |W|^T), plus the
    # prologue's own f32 rounding (a few ulps of each x)
    scale = np.abs(x64) @ np.abs(w64).T
    bound = (2 * 2.0 ** -11 + 2 * (cols + 2) * 2.0 ** -24 + 8 * 2.0 ** -24) * scale + 1e-30
    err = np.abs(y.numpy() - ref)
    assert np.all(err <= bound), f"max error {err.max():.3g}, worst ratio {np.max(err / bound):.3g}"


@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_1", "Q8_0", "F16"])
@pytest.mark.parametrize("n_vec", [2, 3, 6])
def test_matvec_batched_rows_equal_single(qtype, n_vec):
    # Batched decoding: n_vec vectors (row stride ldx) in one launch, results at stride ldy,
    # with the norm fused in and accumulating into y. Every row must be bit for bit what a
    # launch for that vector alone gives (the same kernel code per vector), and right (the
    # dot-product bound of assert_dot_close-style tests).
    rng = np.random.default_rng(40 + n_vec)
    rows, cols = 130, width(qtype, 5)
    raw, w = device_weight(qtype, rows, cols, rng)
    W = dequantize(raw, qtype, (rows, cols)).astype(np.float64)
    ldx, ldy = cols + 4, rows + 6
    x = rng.standard_normal((n_vec, ldx)).astype(np.float32)
    nw = rng.standard_normal(cols).astype(np.float32)
    y0 = rng.standard_normal((n_vec, ldy)).astype(np.float32)
    y = spvjit.tensor(y0.reshape(-1))
    blocks = {"KB": 2} if qtype != "F16" else None   # K/32 = 5 in chunks: partial sums through y
    K.matvec(w, spvjit.tensor(x.reshape(-1)), y, y_off=2, acc=True, norm=spvjit.tensor(nw), blocks=blocks,
             n_vec=n_vec, ldx=ldx, ldy=ldy)
    got = y.numpy().reshape(n_vec, ldy)
    for b in range(n_vec):
        alone = spvjit.tensor(y0[b])
        K.matvec(w, spvjit.tensor(x[b]), alone, y_off=2, acc=True, norm=spvjit.tensor(nw), blocks=blocks)
        np.testing.assert_array_equal(got[b], alone.numpy())
        fx = rms_norm(x[b, :cols], nw, 1e-5).astype(np.float64)
        ref = fx @ W.T + y0[b, 2 : 2 + rows]
        assert np.all(np.abs(got[b, 2 : 2 + rows] - ref) <= 1e-5 * (np.abs(fx) @ np.abs(W.T)) + 1e-6 * np.abs(ref))
        np.testing.assert_array_equal(got[b, :2], y0[b, :2])
        np.testing.assert_array_equal(got[b, 2 + rows :], y0[b, 2 + rows :])
