"""The numpy reference model: known output of the default model, and a naive re-derivation
of the forward pass on the tiny random model."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from spvjit.models.llama import ReferenceModel, Tokenizer
from spvjit.models.llama import reference as reference_module

PROMPT = "Once upon a time, there was"
KNOWN = " a small town nestled in the heart of a bustling city"  # from DESIGN.md


@pytest.fixture(scope="module")
def default_ref(default_model):
    return ReferenceModel(default_model, max_ctx=256)


def test_default_model_greedy_continuation(default_ref, default_tokenizer):
    ids = default_tokenizer.encode(PROMPT)  # add_bos_token is false for SmolLM2
    assert ids[0] != default_tokenizer.bos_id
    out = default_ref.generate_greedy(ids, 12)
    assert default_tokenizer.decode(out).startswith(KNOWN)


def neox_rope(x, positions, inv_freq, neox=False):
    """HF's rotate-half rope (pairs i, i + d/2): the layout GGUF files are *not* stored for."""
    half = inv_freq.size
    ang = np.asarray(positions, np.float64)[:, None, None] * inv_freq[None, None, :]
    a, b = x[..., :half], x[..., half : 2 * half]
    out = x.astype(np.float32, copy=True)
    out[..., :half] = a * np.cos(ang) - b * np.sin(ang)
    out[..., half : 2 * half] = a * np.sin(ang) + b * np.cos(ang)
    return out


def continuation_logprob(ref: ReferenceModel, prompt: list[int], cont: list[int]) -> float:
    ref.reset()
    logits = ref.forward(prompt + cont, 0)[len(prompt) - 1 : -1].astype(np.float64)
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    return float(logp[np.arange(len(cont)), cont].mean())


def test_rope_layout_is_adjacent_pairs(default_ref, default_tokenizer, monkeypatch):
    # llama.cpp's converter un-permutes HF's q/k rows, so GGUF llama wants rope on pairs
    # (2i, 2i+1). The known continuation should be far likelier with that layout than
    # with HF's rotate-half layout.
    prompt, cont = default_tokenizer.encode(PROMPT), default_tokenizer.encode(KNOWN)
    adjacent = continuation_logprob(default_ref, prompt, cont)
    monkeypatch.setattr(reference_module, "apply_rope", neox_rope)
    halves = continuation_logprob(default_ref, prompt, cont)
    assert adjacent > -1.0  # under 1 nat per token: the model "knows" this text
    assert adjacent > halves + 0.5  # per token; e^(0.5 * 11) ~ 250x likelier overall


def test_kv_cache_matches_full_forward(default_ref, default_tokenizer):
    ids = default_tokenizer.encode("The quick brown fox jumps")
    default_ref.reset()
    full = default_ref.forward(ids, 0)
    default_ref.reset()
    step = np.concatenate([default_ref.forward(ids[:2], 0)] + [default_ref.forward([t], i) for i, t in enumerate(ids[2:], 2)])
    np.testing.assert_allclose(step, full, rtol=1e-4, atol=1e-3)
    # Rewinding: re-running the last token from its position gives the same logits.
    np.testing.assert_allclose(default_ref.forward(ids[-1:], len(ids) - 1)[0], full[-1], rtol=1e-4, atol=1e-3)


def test_forward_argument_checks(tiny_model):
    ref = ReferenceModel(tiny_model, max_ctx=8)
    with pytest.raises(ValueError, match="start_pos"):
        ref.forward([5], 1)  # nothing cached yet
    with pytest.raises(ValueError, match="context overflow"):
        ref.forward([5] * 9, 0)
    with pytest.raises(ValueError, match="token id"):
        ref.forward([tiny_model.config.n_vocab], 0)


# -- a naive forward pass, written differently, on the tiny model --------------------------


def naive_forward(model_file, tokens: list[int]) -> np.ndarray:
    """Token-by-token, head-by-head llama with rope as complex rotation, in float64.

    Weights are dequantized with gguf's own code, so nothing here is shared with
    spvjit.models.llama.reference or .quants.
    """
    c = model_file.config

    def w(name):
        t = next(t for t in model_file.reader.tensors if t.name == name)
        data = np.asarray(t.data)
        if t.tensor_type not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            data = gguf.quants.dequantize(data, t.tensor_type)
        return data.astype(np.float64)

    def rms(x, g):
        return x / np.sqrt((x**2).mean() + c.rms_eps) * g

    def rotate(vec, pos):  # vec: one head; pairs (2i, 2i+1) as complex numbers
        z = vec[0::2] + 1j * vec[1::2]
        i = np.arange(len(z))
        z = z * np.exp(1j * pos * c.rope_freq_base ** (-2 * i / c.head_dim))
        out = np.empty_like(vec)
        out[0::2], out[1::2] = z.real, z.imag
        return out

    emb = w("token_embd.weight")
    out_w = emb if c.tied_embeddings else w("output.weight")
    keys = [[] for _ in range(c.n_layer)]
    vals = [[] for _ in range(c.n_layer)]
    logits = []
    for pos, tok in enumerate(tokens):
        x = emb[tok].copy()
        for layer in range(c.n_layer):
            p = f"blk.{layer}."
            h = rms(x, w(p + "attn_norm.weight"))
            q = (w(p + "attn_q.weight") @ h).reshape(c.n_head, c.head_dim)
            k = (w(p + "attn_k.weight") @ h).reshape(c.n_head_kv, c.head_dim)
            v = (w(p + "attn_v.weight") @ h).reshape(c.n_head_kv, c.head_dim)
            keys[layer].append(np.stack([rotate(k[j], pos) for j in range(c.n_head_kv)]))
            vals[layer].append(v)
            heads = []
            for hd in range(c.n_head):
                kv = hd * c.n_head_kv // c.n_head  # consecutive query heads share a kv head
                qh = rotate(q[hd], pos)
                scores = np.array([qh @ keys[layer][t][kv] for t in range(pos + 1)]) / np.sqrt(c.head_dim)
                weights = np.exp(scores - scores.max())
                weights /= weights.sum()
                heads.append(sum(weights[t] * vals[layer][t][kv] for t in range(pos + 1)))
            x = x + w(p + "attn_output.weight") @ np.concatenate(heads)
            h = rms(x, w(p + "ffn_norm.weight"))
            g = w(p + "ffn_gate.weight") @ h
            x = x + w(p + "ffn_down.weight") @ (g / (1 + np.exp(-g)) * (w(p + "ffn_up.weight") @ h))
        logits.append(out_w @ rms(x, w("output_norm.weight")))
    return np.array(logits)


@pytest.mark.parametrize("tied", [False, True])
def test_tiny_model_matches_naive(make_tiny_gguf, tied):
    from spvjit.models.llama import load_gguf

    model = load_gguf(make_tiny_gguf(tied=tied))
    tokens = Tokenizer.from_gguf(model).encode("hello world, hello!")
    ref = ReferenceModel(model)
    got = ref.forward(tokens[:3], 0)
    got = np.concatenate([got, ref.forward(tokens[3:], 3)])
    want = naive_forward(model, tokens)
    assert got.shape == (len(tokens), model.config.n_vocab)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_rope_properties(tiny_model):
    inv = reference_module.rope_inv_freq(tiny_model.config)
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((2, 1, 1, 16)).astype(np.float32)
    np.testing.assert_array_equal(reference_module.apply_rope(q, [0], inv), q)
    # Scores depend only on the distance between positions.
    def score(m, n):
        return float((reference_module.apply_rope(q, [m], inv) * reference_module.apply_rope(k, [n], inv)).sum())
    assert score(7, 3) == pytest.approx(score(104, 100), rel=1e-4)
    assert score(7, 3) != pytest.approx(score(7, 4), rel=1e-4)
