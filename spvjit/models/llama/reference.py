"""A plain numpy llama forward pass: the ground truth the GPU kernels are tested against.

Everything is float32 (weights are dequantized once and kept), written for clarity, not
speed. The building blocks (rms_norm, rope, attention, swiglu) are module functions so
kernel tests can compare single ops against them.

Per block, for hidden state x (n_tokens, n_embd):
    h   = x + Wo @ attention(rope(Wq @ rms(x)), rope(Wk @ rms(x)), Wv @ rms(x))
    out = h + Wdown @ (silu(Wgate @ rms(h)) * (Wup @ rms(h)))
then logits = Wout @ rms(out) with Wout = token_embd when the file has no output.weight.
"""

from __future__ import annotations

import numpy as np

from .config import LlamaConfig
from .gguf_model import LlamaModelFile


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """x / sqrt(mean(x^2) + eps) * weight, over the last axis."""
    x = x.astype(np.float32, copy=False)
    inv = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + np.float32(eps))
    return (x * inv * weight).astype(np.float32, copy=False)


def rope_inv_freq(config: LlamaConfig, freq_factors: np.ndarray | None = None) -> np.ndarray:
    """Angle per position for each rotated pair i: base^(-2i/rope_dim) (/ factor_i)."""
    i = np.arange(config.rope_dim // 2, dtype=np.float64)
    inv = config.rope_freq_base ** (-2.0 * i / config.rope_dim)
    if freq_factors is not None:  # llama-3.1 style per-frequency scaling (rope_freqs.weight)
        inv = inv / freq_factors.astype(np.float64)
    if config.rope_scaling_type == "linear":
        inv = inv / config.rope_scaling_factor  # same as dividing positions by the factor
    elif config.rope_scaling_type not in ("none",):
        raise NotImplementedError(f"rope scaling {config.rope_scaling_type!r} is not implemented in the reference")
    return inv


def apply_rope(x: np.ndarray, positions: np.ndarray, inv_freq: np.ndarray, neox: bool = False) -> np.ndarray:
    """Rotate adjacent pairs (2i, 2i+1) of each head by positions * inv_freq[i].

    x: (n_tokens, n_heads, head_dim); only the first 2*len(inv_freq) dims rotate. This
    is the layout GGUF llama files expect (see gguf_model's note on the q/k permutation).
    ``neox``: the pairs are (i, i + n_rot/2) instead, for files that keep HF's order (qwen2).
    """
    n_rot = 2 * inv_freq.size
    angles = np.asarray(positions, np.float64)[:, None] * inv_freq[None, :]  # (n, n_rot/2)
    cos = np.cos(angles).astype(np.float32)[:, None, :]
    sin = np.sin(angles).astype(np.float32)[:, None, :]
    out = x.astype(np.float32, copy=True)
    first = slice(0, n_rot // 2) if neox else slice(0, n_rot, 2)
    second = slice(n_rot // 2, n_rot) if neox else slice(1, n_rot, 2)
    x0, x1 = x[..., first], x[..., second]
    out[..., first] = x0 * cos - x1 * sin
    out[..., second] = x0 * sin + x1 * cos
    return out


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, start_pos: int) -> np.ndarray:
    """Causal grouped-query attention.

    q: (n, n_head, d) for positions start_pos..start_pos+n-1; k, v: (T, n_head_kv, d) for
    positions 0..T-1 (T = start_pos + n). Query head h reads key/value head h // (n_head /
    n_head_kv). Returns (n, n_head * d).
    """
    n, n_head, d = q.shape
    t, n_kv, _ = k.shape
    group = n_head // n_kv
    qg = q.reshape(n, n_kv, group, d).transpose(1, 2, 0, 3)  # (kv, group, n, d)
    kt = k.transpose(1, 2, 0)[:, None]  # (kv, 1, d, T)
    scores = (qg @ kt) * np.float32(1.0 / np.sqrt(d))  # (kv, group, n, T)
    q_pos = start_pos + np.arange(n)[:, None]
    scores = np.where(np.arange(t)[None, :] <= q_pos, scores, -np.inf)
    scores = scores - scores.max(axis=-1, keepdims=True)
    p = np.exp(scores)
    p /= p.sum(axis=-1, keepdims=True)
    out = p @ v.transpose(1, 0, 2)[:, None]  # (kv, group, n, d)
    return out.transpose(2, 0, 1, 3).reshape(n, n_head * d).astype(np.float32, copy=False)


def swiglu(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """silu(gate) * up, silu(g) = g * sigmoid(g)."""
    return (gate / (1.0 + np.exp(-gate)) * up).astype(np.float32, copy=False)


class ReferenceModel:
    """Numpy llama with a KV cache of ``max_ctx`` positions.

    ``forward(tokens, start_pos)`` places ``tokens`` at positions start_pos.. and returns
    their logits; the cache keeps positions < start_pos from earlier calls, so decoding one
    token at a time and rewinding (a smaller start_pos) both work.
    """

    _LAYER_WEIGHTS = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")

    def __init__(self, model_file: LlamaModelFile, max_ctx: int | None = None):
        self.file = model_file
        self.config = c = model_file.config
        self.max_ctx = min(c.n_ctx_train, max_ctx or 4096)
        freq_factors = model_file.tensor("rope_freqs.weight").dequantize() if model_file.has_tensor("rope_freqs.weight") else None
        self.inv_freq = rope_inv_freq(c, freq_factors)
        self._layers: list[dict[str, np.ndarray] | None] = [None] * c.n_layer
        self._output: np.ndarray | None = None
        self._embd = model_file.tensor("token_embd.weight")
        self._output_norm = model_file.tensor("output_norm.weight").dequantize()
        self.k_cache = np.zeros((c.n_layer, self.max_ctx, c.n_head_kv, c.head_dim), np.float32)
        self.v_cache = np.zeros_like(self.k_cache)
        self.n_cached = 0  # positions 0..n_cached-1 of the cache hold valid keys/values

    def layer(self, i: int) -> dict[str, np.ndarray]:
        """Dequantized weights of block i (computed on first use, then kept)."""
        if self._layers[i] is None:
            self._layers[i] = {k: self.file.layer_tensor(i, k).dequantize() for k in self._LAYER_WEIGHTS}
            self._layers[i]["qkv_bias"] = self.file.qkv_bias(i)
        return self._layers[i]

    def output_weight(self) -> np.ndarray:
        if self._output is None:
            self._output = self.file.output_tensor().dequantize()
        return self._output

    def reset(self) -> None:
        self.n_cached = 0

    def embed(self, tokens) -> np.ndarray:
        return self._embd.dequantize_rows(tokens)

    def forward(self, tokens: list[int], start_pos: int) -> np.ndarray:
        """Logits (len(tokens), n_vocab) for tokens at positions start_pos, start_pos+1, ..."""
        c = self.config
        tokens = [int(t) for t in tokens]
        n = len(tokens)
        if n == 0:
            raise ValueError("forward needs at least one token")
        if not 0 <= start_pos <= self.n_cached:
            raise ValueError(f"start_pos {start_pos} is outside the cached range 0..{self.n_cached}")
        if start_pos + n > self.max_ctx:
            raise ValueError(f"context overflow: {start_pos + n} positions > max_ctx {self.max_ctx}")
        if min(tokens) < 0 or max(tokens) >= c.n_vocab:
            raise ValueError(f"token id out of range 0..{c.n_vocab - 1}")
        end = start_pos + n
        positions = np.arange(start_pos, end)
        x = self.embed(tokens)
        for i in range(c.n_layer):
            w = self.layer(i)
            h = rms_norm(x, w["attn_norm"], c.rms_eps)
            qkv = np.concatenate([h @ w["attn_q"].T, h @ w["attn_k"].T, h @ w["attn_v"].T], axis=1)
            if w["qkv_bias"] is not None:
                qkv = qkv + w["qkv_bias"]
            q, k, v = np.split(qkv, [c.q_dim, c.q_dim + c.kv_dim], axis=1)
            q = q.reshape(n, c.n_head, c.head_dim)
            k = k.reshape(n, c.n_head_kv, c.head_dim)
            v = v.reshape(n, c.n_head_kv, c.head_dim)
            self.k_cache[i, start_pos:end] = apply_rope(k, positions, self.inv_freq, c.rope_neox)
            self.v_cache[i, start_pos:end] = v
            att = attention(apply_rope(q, positions, self.inv_freq, c.rope_neox), self.k_cache[i, :end],
                            self.v_cache[i, :end], start_pos)
            x = x + att @ w["attn_output"].T
            h = rms_norm(x, w["ffn_norm"], c.rms_eps)
            x = x + swiglu(h @ w["ffn_gate"].T, h @ w["ffn_up"].T) @ w["ffn_down"].T
        self.n_cached = end
        return rms_norm(x, self._output_norm, c.rms_eps) @ self.output_weight().T

    def generate_greedy(self, prompt_ids: list[int], n: int, *, stop_at_eos: bool = False) -> list[int]:
        """The ``n`` tokens greedy decoding picks after the prompt (fewer if it hits EOS and
        ``stop_at_eos``). Starts from an empty cache."""
        self.reset()
        logits = self.forward(list(prompt_ids), 0)[-1]
        out: list[int] = []
        pos = len(prompt_ids)
        while len(out) < n:
            tok = int(np.argmax(logits))
            out.append(tok)
            if stop_at_eos and tok == self.config.eos_token_id:
                break
            if len(out) < n:
                logits = self.forward([tok], pos)[0]
                pos += 1
        return out
