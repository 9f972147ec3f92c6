"""The llama forward pass on the device: every layer an spvjit kernel.

Weights are uploaded once, still quantized (see ``kernels/packing.py`` for the
layout); Wq/Wk/Wv and Wgate/Wup are stacked into one matrix each when they share a
type, so one launch computes all three projections. The KV cache lives on the device,
one ``[slots * max_ctx, n_head_kv, head_dim]`` float32 buffer per layer for keys and one
for values: ``slots`` sequences (``spvjit serve --parallel``), sequence s in rows
s * max_ctx ... (s + 1) * max_ctx - 1.

Per decoded token, replayed from a recorded command buffer (one submit; the token id
and position are read by the kernels from small device tensors):
    embedding row lookup (Q8_0 token_embd decoded in the kernel)
    per layer (6): qkv matvec with the attention rms_norm fused in, rope + KV-cache
        write, attention, Wo matvec + residual, gate/up matvec with the ffn rms_norm
        fused in, down matvec with swiglu fused into its input + residual
    logits matvec with the final rms_norm fused in (tied to token_embd), argmax
    -> 6 * n_layer + 3 dispatches (183 for SmolLM2-135M).
``decode_batch`` runs the same step for up to ``slots`` sequences at once, each with its
own position and cache slot: the same dispatches with one more grid axis (a matvec per
sequence row, attention and rope reading each row's position and cache base from
device tensors), recorded once per batch size. A row's arithmetic is the kernels' code
for one vector, whatever else shares the launch, so a sequence decoded in a batch gets
bit for bit the logits it gets alone; single-token decoding is the batch of one.
``fused=False`` runs rms_norm and swiglu as kernels of their own (9 * n_layer + 4).
A prompt goes through the same sequence with matrix-matrix kernels, up to
``max_batch`` tokens per ``spvjit.launch.batch()``.

Block sizes come from the device's tuning table (``spvjit tune``, see ``tuning.py``)
where it has the kernel and shape, else from the launchers' defaults. Profiling:
with ``timestamps = True`` every forward leaves ``(kernel name, GPU ns)`` per dispatch
in ``profile``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

import spvjit
from spvjit.launch import batch

from . import kernels as K
from .errors import ModelError
from .gguf_model import LlamaModelFile, QuantTensor, load_gguf
from .reference import rope_inv_freq
from .tuning import TunedKernels, TuningTable, model_table

ProgressFn = Callable[[int, int], None]  # (bytes uploaded so far, total bytes)


@dataclass
class MemoryNeeds:
    """What loading a model takes, in bytes: on the device (weights as the file stores
    them, their f16 or int8 copies for prompt matmuls on cooperative matrices, the KV cache,
    activations for a prompt batch) and on the host beyond the memory-mapped file (the
    largest matrix's packed copy while it uploads)."""

    weights: int
    kv_cache: int
    activations: int
    host: int
    coopmat_copies: int = 0

    @property
    def device(self) -> int:
        return self.weights + self.coopmat_copies + self.kv_cache + self.activations

    def describe(self) -> str:
        mib = 2 ** 20
        copies = (f", weight copies for coopmat prompts {self.coopmat_copies / mib:.0f}"
                  if self.coopmat_copies else "")
        return (f"{self.device / mib:.0f} MiB of device memory (weights {self.weights / mib:.0f}{copies}, KV cache "
                f"{self.kv_cache / mib:.0f}, activations {self.activations / mib:.0f}), "
                f"{self.host / mib:.0f} MiB of host memory besides the mapped file")


def _coopmat_copy_bytes(matrices, max_rows: int, coopmat) -> int:
    """Prompts of K.MIN_ROWS_COOP rows or more multiply by a copy of each matrix made for
    cooperative matrices, as kernels.matmul decides: Q8_0 matrices whose rows fill whole tiles
    get an int8 copy with f32 block scales (1.125 bytes per weight) where i8 matrices exist,
    others an f16 copy (2 bytes per weight) where f16 ones do and the copy fits one buffer.
    ``coopmat``: the kinds the device has ("f16", "i8"), or None to ask it."""
    if max_rows < K.MIN_ROWS_COOP:
        return 0
    if coopmat is None:
        coopmat = {kind for kind, ok in (("f16", K.coopmat_f16_available()), ("i8", K.matmul_q8.i8_available()))
                   if ok}
    limit = spvjit.get_device().caps.max_storage_buffer_range if coopmat else 0
    total = 0
    for t in matrices:
        rows, cols = t.shape
        if "i8" in coopmat and t.ggml_type == "Q8_0" and rows % 64 == 0 and cols % 32 == 0:
            total += rows * cols + rows * (cols // 32) * 4
        elif "f16" in coopmat and 2 * rows * cols <= limit:
            total += 2 * rows * cols
    return total


def memory_needs(model_file: LlamaModelFile, max_ctx: int, max_batch: int = 512, slots: int = 1,
                 coopmat=None) -> MemoryNeeds:
    """``coopmat``: the cooperative-matrix kinds prompt matmuls may use, a set of "f16" and
    "i8" (None: this device's)."""
    c = model_file.config
    matrices = [model_file.tensor(n) for n in model_file.tensor_names if len(model_file.tensor(n).shape) == 2]
    weights = sum(model_file.tensor(n).n_bytes for n in model_file.tensor_names)
    kv = 2 * c.n_layer * slots * max_ctx * c.kv_dim * 4
    rows = max(1, min(max_batch, max_ctx)) + slots        # a prompt batch and the decode step's rows
    per_row = 2 * c.n_embd + c.q_dim + 2 * c.kv_dim + c.q_dim + 3 * c.n_ff
    activations = rows * per_row * 4 + (1 + slots) * c.n_vocab * 4
    per_layer_stack = max((t.n_bytes for t in matrices), default=0) * 3   # q, k, v stacked: at most 3
    copies = _coopmat_copy_bytes(matrices, max(1, min(max_batch, max_ctx)), coopmat)
    return MemoryNeeds(weights, kv, activations, per_layer_stack, copies)


def _device_memory() -> int:
    """Bytes of the device's largest device-local memory heap (any heap if none is)."""
    heaps = spvjit.get_device().caps.memory_heaps
    local = [size for size, is_local in heaps if is_local]
    return max(local or [size for size, _ in heaps] or [0])


@dataclass
class _Part:
    """One stacked matrix of a projection and the output column it starts at."""

    weight: K.DeviceWeight
    offset: int


@dataclass
class _Layer:
    attn_norm: object
    qkv: list[_Part]
    wo: K.DeviceWeight
    ffn_norm: object
    gate_up: list[_Part]
    down: K.DeviceWeight
    qkv_bias: object = None     # [q | k | v] projection bias (qwen2), added by rope_kv


class _Workspace:
    """Activation buffers for up to ``rows`` tokens (kernels index them as flat arrays),
    logits for ``logit_rows``, and the step inputs: token ids, the first position and the
    sequence's first cache row (one of each per row with ``per_row``: batched decoding)."""

    def __init__(self, c, rows: int, logit_rows: int = 1, per_row: bool = False):
        self.rows = rows
        self.logit_rows = logit_rows
        self.per_row = per_row
        self.qkv_dim = c.q_dim + 2 * c.kv_dim
        self.tokens = spvjit.zeros((rows,), np.int32)
        self.pos = spvjit.zeros((rows if per_row else 1,), np.int32)
        self.base = spvjit.zeros((rows if per_row else 1,), np.int32)
        self.logits = spvjit.empty((logit_rows, c.n_vocab))
        self.x = spvjit.empty((rows, c.n_embd))
        self.h = spvjit.empty((rows, c.n_embd))
        self.qkv = spvjit.empty((rows, self.qkv_dim))
        self.att = spvjit.empty((rows, c.q_dim))
        self.gu = spvjit.empty((rows, 2 * c.n_ff))
        self.act = spvjit.empty((rows, c.n_ff))
        self.best = spvjit.zeros((logit_rows,), np.int32)


class DeviceLlama:
    """A llama GGUF on the device. ``forward(tokens, start_pos)`` works like
    :class:`ReferenceModel`'s: it places ``tokens`` at positions start_pos.. (keeping the
    cache below start_pos) and returns logits. ``tuning``: "auto" (the device's table
    from SPVJIT_CACHE_DIR, unless SPVJIT_DISABLE_TUNING=1), a TuningTable, or None (the
    launchers' default block sizes). ``buffer_limit``: the most bytes one device buffer
    may hold (default and upper bound: the device's maxStorageBufferRange); matrices
    larger than that are uploaded in row ranges (kernels.RowSplit). Tests lower it.
    ``slots``: sequences with a KV cache of their own (``forward(..., slot=s)``,
    ``decode_batch``)."""

    def __init__(self, model_file: LlamaModelFile | str | os.PathLike, max_ctx: int | None = None,
                 progress: ProgressFn | None = None, max_batch: int = 512, fused: bool = True,
                 tuning: TuningTable | str | None = "auto", buffer_limit: int | None = None,
                 slots: int = 1):
        self.file = model_file if isinstance(model_file, LlamaModelFile) else load_gguf(model_file)
        self.config = c = self.file.config
        self.max_ctx = min(c.n_ctx_train, max_ctx or 2048)
        self.max_batch = max(1, int(max_batch))
        self.slots = int(slots)
        if self.slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.fused = fused
        self._cached = [0] * self.slots         # positions held in the cache, per slot
        device_limit = spvjit.get_device().caps.max_storage_buffer_range
        self._buffer_limit = min(device_limit, int(buffer_limit)) if buffer_limit else device_limit
        self._check_types()
        self._check_cache()
        self.memory = memory_needs(self.file, self.max_ctx, self.max_batch, self.slots)
        have = _device_memory()
        if have and self.memory.device > have:
            raise ModelError(f"{self.file.path.name} needs {self.memory.describe()}; the device has "
                             f"{have / 2**20:.0f} MiB (a smaller --ctx shrinks the KV cache)")
        self._upload(progress)
        rows = self.slots * self.max_ctx
        self.k_cache = [spvjit.zeros((rows, c.n_head_kv, c.head_dim)) for _ in range(c.n_layer)]
        self.v_cache = [spvjit.zeros((rows, c.n_head_kv, c.head_dim)) for _ in range(c.n_layer)]
        self._ws: _Workspace | None = None      # prompts: grown as needed
        # decoding: fixed, the graphs refer to it; one row (and logits row) per slot
        self._decode_ws = _Workspace(c, self.slots, self.slots, per_row=True)
        self._graphs: dict[int, object] = {}    # the recorded decode step, per batch size
        self._graphs_ts: dict[int, object] = {}  # the same with timestamps (profiling)
        self.tuning = model_table() if tuning == "auto" else tuning
        self._kernels = TunedKernels(self.tuning) if self.tuning is not None and self.tuning.entries else K
        self.timestamps = False                 # profiling: fill self.profile at each forward
        self.profile: list[tuple[str, float]] = []   # (kernel, GPU ns) per dispatch of the last forward
        self.wait_s = 0.0                       # seconds the last forward waited for the device (submit to done)

    @property
    def n_cached(self) -> int:
        """Positions in slot 0's cache (the single-sequence API)."""
        return self._cached[0]

    @n_cached.setter
    def n_cached(self, n: int) -> None:
        self._cached[0] = n

    def _check_cache(self) -> None:
        c = self.config
        nbytes = self.slots * self.max_ctx * c.n_head_kv * c.head_dim * 4
        if nbytes > self._buffer_limit:
            raise ModelError(f"{self.file.path.name}: a KV cache of {self.slots} sequences x {self.max_ctx} "
                             f"positions takes {nbytes / 2**20:.0f} MiB per layer, more than one buffer of this "
                             f"device can hold ({self._buffer_limit / 2**20:.0f} MiB); use fewer sequences or "
                             f"a shorter context")

    # -- weights ---------------------------------------------------------------------

    def _matrices(self) -> list[QuantTensor]:
        f, c = self.file, self.config
        names = ["token_embd.weight"] + ([] if c.tied_embeddings else ["output.weight"])
        out = [f.tensor(n) for n in names]
        for i in range(c.n_layer):
            out += [f.layer_tensor(i, k) for k in ("attn_q", "attn_k", "attn_v", "attn_output",
                                                   "ffn_gate", "ffn_up", "ffn_down")]
        return out

    def _check_types(self) -> None:
        """Unsupported types, and rows too long for one device buffer, before uploading
        (larger matrices are split into row ranges)."""
        limit = self._buffer_limit
        for t in self._matrices():
            if t.ggml_type not in K.SUPPORTED:
                raise ModelError(f"{self.file.path.name}: tensor {t.name!r} has type {t.ggml_type}, "
                                 f"which the device kernels do not support ({', '.join(K.SUPPORTED)})")
            if 64 * t.quant.n_bytes(t.cols) > limit:
                raise ModelError(f"{self.file.path.name}: tensor {t.name!r}: 64 rows take "
                                 f"{64 * t.quant.n_bytes(t.cols) / 2**20:.1f} MiB, more than one buffer of "
                                 f"this device can hold ({limit / 2**20:.1f} MiB)")

    def _upload(self, progress: ProgressFn | None) -> None:
        f, c = self.file, self.config
        total = sum(t.n_bytes for t in self._matrices())
        total += (2 * c.n_layer + 1) * c.n_embd * 4
        done = 0

        def step(nbytes: int) -> None:
            nonlocal done
            done += nbytes
            if progress is not None:
                progress(done, total)

        def vector(name: str):
            v = spvjit.tensor(f.tensor(name).dequantize().astype(np.float32).reshape(-1))
            step(c.n_embd * 4)
            return v

        def matrix(*tensors: QuantTensor) -> list[_Part]:
            """Upload, stacking the matrices into one when their types agree. Stacking is
            decided first and done on the file's bytes (rows of one type and width are
            consecutive blocks), so each device matrix is packed once."""
            same_type = len({t.ggml_type for t in tensors}) == 1
            groups = [list(tensors)] if same_type else [[t] for t in tensors]
            parts, offset = [], 0
            for g in groups:
                raw = np.concatenate([t.data for t in g]) if len(g) > 1 else g[0].data
                rows = sum(t.rows for t in g)
                w = K.upload_weight(raw, g[0].ggml_type, (rows, g[0].cols), self._buffer_limit)
                parts.append(_Part(w, offset))
                offset += w.rows
            step(sum(t.n_bytes for t in tensors))
            return parts

        if progress is not None:
            progress(0, total)
        self.token_embd = matrix(f.tensor("token_embd.weight"))[0].weight
        self.output = self.token_embd if c.tied_embeddings else matrix(f.tensor("output.weight"))[0].weight
        self.output_norm = vector("output_norm.weight")
        self.layers: list[_Layer] = []
        for i in range(c.n_layer):
            t = lambda kind: f.layer_tensor(i, kind)  # noqa: E731
            self.layers.append(_Layer(
                attn_norm=vector(f"blk.{i}.attn_norm.weight"),
                qkv=matrix(t("attn_q"), t("attn_k"), t("attn_v")),
                wo=matrix(t("attn_output"))[0].weight,
                ffn_norm=vector(f"blk.{i}.ffn_norm.weight"),
                gate_up=matrix(t("ffn_gate"), t("ffn_up")),
                down=matrix(t("ffn_down"))[0].weight,
                qkv_bias=None if (b := f.qkv_bias(i)) is None else spvjit.tensor(b.astype(np.float32)),
            ))
        freq_factors = f.tensor("rope_freqs.weight").dequantize() if f.has_tensor("rope_freqs.weight") else None
        inv = np.zeros(c.head_dim // 2, np.float32)
        try:
            inv[: c.rope_dim // 2] = rope_inv_freq(c, freq_factors)
        except NotImplementedError as e:  # yarn / longrope scaling
            raise ModelError(f"{f.path.name}: {e}") from None
        self.inv_freq = spvjit.tensor(inv)
        self.weight_bytes = total

    # -- forward ---------------------------------------------------------------------

    def reset(self, slot: int | None = None) -> None:
        """Forget the cached positions of ``slot`` (default: every slot); the next forward
        there must start at 0."""
        for s in range(self.slots) if slot is None else (slot,):
            self._cached[s] = 0

    def warmup(self) -> None:
        """Compile every kernel decoding and prompts use (a one-token step, and prompts of
        2 and 16 tokens: integer arguments are specialized on divisibility by 16), then
        forget those positions."""
        n = min(16, self.max_ctx)
        self.forward([0], 0)
        if n >= 2:
            self.forward([0] * 2, 0)
            self.forward([0] * n, 0)
        self.reset()

    def close(self) -> None:
        """Release the recorded decode steps (their command buffers)."""
        for graphs in (self._graphs, self._graphs_ts):
            for g in graphs.values():
                g.close()
            graphs.clear()

    def _check(self, tokens: list[int], start_pos: int, slot: int = 0) -> None:
        c = self.config
        if not tokens:
            raise ValueError("forward needs at least one token")
        if not 0 <= slot < self.slots:
            raise ValueError(f"slot {slot} is outside 0..{self.slots - 1}")
        if not 0 <= start_pos <= self._cached[slot]:
            raise ValueError(f"start_pos {start_pos} is outside the cached range 0..{self._cached[slot]}")
        if start_pos + len(tokens) > self.max_ctx:
            raise ValueError(f"context overflow: {start_pos + len(tokens)} positions > max_ctx {self.max_ctx}")
        if min(tokens) < 0 or max(tokens) >= c.n_vocab:
            raise ValueError(f"token id out of range 0..{c.n_vocab - 1}")

    def forward(self, tokens, start_pos: int, all_logits: bool = False, slot: int = 0) -> np.ndarray:
        """Logits for ``tokens`` placed at positions start_pos, start_pos+1, ... of
        ``slot``'s sequence: shape (n_vocab,) for the last token, or (len(tokens), n_vocab)
        with ``all_logits``."""
        return self._forward(tokens, start_pos, "all" if all_logits else "last", slot)

    def forward_argmax(self, tokens, start_pos: int, slot: int = 0) -> int:
        """The greedy next token after ``tokens``: the argmax of the last logits, picked on
        the device (only one int comes back)."""
        return self._forward(tokens, start_pos, "argmax", slot)

    def forward_both(self, tokens, start_pos: int, slot: int = 0) -> tuple[int, np.ndarray]:
        """(argmax picked on the device, logits) of the last of ``tokens``."""
        best = self._forward(tokens, start_pos, "argmax", slot)
        ws = self._decode_ws if len(tokens) == 1 else self._ws
        return best, ws.logits.numpy().reshape(-1, self.config.n_vocab)[0].copy()

    def decode_batch(self, tokens, positions, slots, logits: bool = False):
        """One decode step for len(tokens) sequences at once: token tokens[r] at position
        positions[r] of slot slots[r] (distinct slots). Returns (argmax per row, logits
        [rows, n_vocab] or None); row r's numbers are those it would get alone."""
        n = len(tokens)
        if not 1 <= n <= self.slots or len(positions) != n or len(slots) != n:
            raise ValueError(f"decode_batch takes 1..{self.slots} rows of (token, position, slot)")
        if len(set(slots)) != n:
            raise ValueError("decode_batch: two rows in one slot")
        for t, p, s in zip(tokens, positions, slots):
            self._check([int(t)], int(p), int(s))
        self._decode_rows([int(t) for t in tokens], [int(p) for p in positions], [int(s) for s in slots])
        ws = self._decode_ws
        best = self._checked_best(ws.best.numpy()[:n].copy())
        return best, (ws.logits.numpy().reshape(-1, self.config.n_vocab)[:n].copy() if logits else None)

    def _forward(self, tokens, start_pos: int, out: str, slot: int = 0):
        tokens = [int(t) for t in tokens]
        self._check(tokens, start_pos, slot)
        if len(tokens) == 1 and out != "all":
            self._decode_rows(tokens, [start_pos], [slot])
            return self._result(self._decode_ws, out)
        results = []
        self.profile, self.wait_s = [], 0.0
        step = self.max_batch
        if out == "all":  # the logits of a batch must fit one buffer
            step = max(1, min(step, self._buffer_limit // (4 * self.config.n_vocab)))
        for i in range(0, len(tokens), step):
            chunk = tokens[i : i + step]
            last = i + len(chunk) == len(tokens)
            ws = self._prefill_workspace(len(chunk), len(chunk) if out == "all" else 1)
            self._set_step(ws, chunk, start_pos + i, slot * self.max_ctx)
            with batch(timestamps=self.timestamps) as b:
                logits = self._launch(ws, len(chunk), out if (last or out == "all") else None)
                t0 = time.perf_counter()
            self.wait_s += time.perf_counter() - t0   # the batch submits and waits at exit
            if self.timestamps:
                self.profile += zip(b.labels, b.elapsed_ns)
            self._cached[slot] = start_pos + i + len(chunk)
            if out == "all":
                results.append(logits.numpy()[: len(chunk)])
        if out == "all":
            return np.concatenate(results)
        return self._result(ws, out)

    def _decode_rows(self, tokens: list[int], positions: list[int], slots: list[int]) -> None:
        """One token per row through the recorded decode graph for len(tokens) rows
        (recorded at the first call with that many)."""
        ws = self._decode_ws
        n = len(tokens)
        self._set_rows(ws, tokens, positions, [s * self.max_ctx for s in slots])
        graphs = self._graphs_ts if self.timestamps else self._graphs
        graph = graphs.get(n)
        if graph is None:
            with spvjit.record(timestamps=self.timestamps) as graph:
                self._launch(ws, n, "argmax", batch=True)
            graphs[n] = graph
        t0 = time.perf_counter()
        graph.replay()
        self.wait_s = time.perf_counter() - t0
        if self.timestamps:
            self.profile = list(zip(graph.labels, graph.elapsed_ns))
        for p, s in zip(positions, slots):
            self._cached[s] = p + 1

    def _result(self, ws: _Workspace, out: str):
        if out == "argmax":
            return int(self._checked_best(ws.best.numpy()[:1])[0])
        return ws.logits.numpy()[0]

    def _checked_best(self, best: np.ndarray) -> np.ndarray:
        """The device argmax marks a row whose logits hold a NaN with -1 (kernels/argmax.py)."""
        if (best < 0).any():
            raise ModelError(f"{self.file.path.name}: the logits contain NaN: the model's weights or "
                             "activations are not finite")
        return best

    def _prefill_workspace(self, rows: int, logit_rows: int) -> _Workspace:
        ws = self._ws
        if ws is None or ws.rows < rows or ws.logit_rows < logit_rows:
            if ws is not None:
                rows, logit_rows = max(rows, ws.rows), max(logit_rows, ws.logit_rows)
            self._ws = ws = _Workspace(self.config, rows, logit_rows)
        return ws

    @staticmethod
    def _set_step(ws: _Workspace, tokens: list[int], start_pos: int, base: int = 0) -> None:
        """Token ids, the first position and the first cache row of the sequence, read by
        the kernels from device tensors."""
        DeviceLlama._write(ws.tokens, tokens, ws.rows)
        DeviceLlama._write(ws.pos, [start_pos], 1)
        DeviceLlama._write(ws.base, [base], 1)

    @staticmethod
    def _set_rows(ws: _Workspace, tokens: list[int], positions: list[int], bases: list[int]) -> None:
        """Per-row token ids, positions and first cache rows (batched decoding)."""
        for t, values in ((ws.tokens, tokens), (ws.pos, positions), (ws.base, bases)):
            DeviceLlama._write(t, values, ws.rows)

    @staticmethod
    def _write(t, values: list[int], size: int) -> None:
        ids = np.asarray(values, np.int32)
        if t.host_visible:
            t.view_host()[: ids.size] = ids
        else:
            padded = np.zeros(size, np.int32)
            padded[: ids.size] = ids
            t.copy_from(padded)

    def _launch(self, ws: _Workspace, n: int, out: str | None, batch: bool = False):
        """Every kernel of a forward pass over n tokens (recorded into the current batch or
        graph). ``out``: "all" (logits of every row), "last", "argmax" (last logits and
        their argmax) or None (only fill the cache). ``batch``: the n rows are n sequences
        of one token each (positions and cache bases per row in ws; out "argmax": logits
        and argmax of every row)."""
        K = self._kernels   # the launchers, with tuned block sizes
        c = self.config
        E, F = c.n_embd, c.n_ff
        ld = ws.qkv_dim
        K.dequant_rows(self.token_embd, ws.tokens, ws.x, n)
        if not self.fused:
            return self._launch_unfused(ws, n, out, batch)
        lin = self._linear_launcher(n, batch)
        eps = c.rms_eps
        for i, L in enumerate(self.layers):
            for p in L.qkv:   # rms_norm fused into the projection
                lin(p.weight, ws.x, ws.qkv, E, ld, p.offset, norm=L.attn_norm, eps=eps)
            self._attention(ws, i, n, batch)
            lin(L.wo, ws.att, ws.x, c.q_dim, E, acc=True)
            for p in L.gate_up:
                lin(p.weight, ws.x, ws.gu, E, 2 * F, p.offset, norm=L.ffn_norm, eps=eps)
            lin(L.down, ws.gu, ws.x, 2 * F, E, acc=True, swiglu=True)   # swiglu fused into its input
        if batch:
            lin(self.output, ws.x, ws.logits, E, c.n_vocab, norm=self.output_norm, eps=eps)
            K.argmax(ws.logits, ws.best, c.n_vocab, n_rows=n)
        elif out == "all":
            K.linear(self.output, ws.x, ws.logits, n, norm=self.output_norm, eps=eps)
        elif out in ("last", "argmax"):
            K.matvec(self.output, ws.x, ws.logits, x_off=(n - 1) * E, norm=self.output_norm, eps=eps)
            if out == "argmax":
                K.argmax(ws.logits, ws.best, c.n_vocab)
        return ws.logits

    def _linear_launcher(self, n: int, batch: bool):
        """lin(w, x, y, ldx, ldy, y_off=0, acc=False, **pre): a matvec per row when the rows
        are sequences of their own, else K.linear (matvec or matmul) over the n tokens."""
        K = self._kernels

        def lin(w, x, y, ldx, ldy, y_off=0, acc=False, **pre):
            if batch:
                K.matvec(w, x, y, y_off, acc, n_vec=n, ldx=ldx, ldy=ldy, **pre)
            else:
                K.linear(w, x, y, n, ldx, ldy, y_off, acc, **pre)
        return lin

    def _attention(self, ws: _Workspace, i: int, n: int, batch: bool) -> None:
        """rope + KV-cache write and attention of layer i."""
        K, c = self._kernels, self.config
        args = (ws.qkv, self.k_cache[i], self.v_cache[i])
        K.rope_kv(*args, self.inv_freq, n, ws.pos, ws.qkv_dim, c.n_head, c.n_head_kv, c.head_dim,
                  bias=self.layers[i].qkv_bias, neox=c.rope_neox, base=ws.base, row_pos=batch)
        if batch:
            K.attention_rows(*args, ws.att, n, ws.pos, ws.qkv_dim, c.n_head, c.n_head_kv, c.head_dim,
                             base=ws.base, row_pos=True)
        else:
            K.attention(*args, ws.att, n, ws.pos, ws.qkv_dim, c.n_head, c.n_head_kv, c.head_dim, base=ws.base)

    def _launch_unfused(self, ws: _Workspace, n: int, out: str | None, batch: bool = False):
        """The same forward pass with one kernel per layer op (rms_norm and swiglu on
        their own): a check on the fused kernels, and a way to time what fusion saves."""
        K = self._kernels
        c = self.config
        E, F = c.n_embd, c.n_ff
        ld = ws.qkv_dim
        lin = self._linear_launcher(n, batch)
        for i, L in enumerate(self.layers):
            K.rms_norm(ws.x, L.attn_norm, ws.h, n, E, c.rms_eps)
            for p in L.qkv:
                lin(p.weight, ws.h, ws.qkv, E, ld, p.offset)
            self._attention(ws, i, n, batch)
            lin(L.wo, ws.att, ws.x, c.q_dim, E, acc=True)
            K.rms_norm(ws.x, L.ffn_norm, ws.h, n, E, c.rms_eps)
            for p in L.gate_up:
                lin(p.weight, ws.h, ws.gu, E, 2 * F, p.offset)
            K.swiglu(ws.gu, ws.act, n, F)
            lin(L.down, ws.act, ws.x, F, E, acc=True)
        if batch:
            K.rms_norm(ws.x, self.output_norm, ws.h, n, E, c.rms_eps)
            lin(self.output, ws.h, ws.logits, E, c.n_vocab)
            K.argmax(ws.logits, ws.best, c.n_vocab, n_rows=n)
        elif out == "all":
            K.rms_norm(ws.x, self.output_norm, ws.h, n, E, c.rms_eps)
            K.linear(self.output, ws.h, ws.logits, n)
        elif out in ("last", "argmax"):
            K.rms_norm(ws.x, self.output_norm, ws.h, 1, E, c.rms_eps, row0=n - 1)
            K.matvec(self.output, ws.h, ws.logits)
            if out == "argmax":
                K.argmax(ws.logits, ws.best, c.n_vocab)
        return ws.logits

    def trace_launches(self, n: int, pos: int = 0, out: str = "argmax") -> list:
        """The launcher calls (tuning.Call) of a forward pass over n tokens from
        position pos, with this model's tensors, without running anything: what
        ``spvjit tune`` times. The step inputs (token ids, position) are set as such a
        pass would set them; one token is the decode step (a batch of one row)."""
        decode = n == 1 and out != "all"
        ws = self._decode_ws if decode else self._prefill_workspace(n, 1)
        if decode:
            self._set_rows(ws, [0], [pos], [0])
        else:
            self._set_step(ws, [0] * n, pos)
        trace: list = []
        saved, self._kernels = self._kernels, TunedKernels(None, trace, run=False)
        try:
            self._launch(ws, n, out, batch=decode)
        finally:
            self._kernels = saved
        return trace

    def generate_greedy(self, prompt_ids: list[int], n: int, *, stop_at_eos: bool = False) -> list[int]:
        """Like ReferenceModel.generate_greedy, with the argmax on the device."""
        self.reset()
        out: list[int] = []
        tok = self.forward_argmax(list(prompt_ids), 0)
        pos = len(prompt_ids)
        while True:
            out.append(tok)
            if len(out) >= n or (stop_at_eos and tok == self.config.eos_token_id):
                return out
            tok = self.forward_argmax([tok], pos)
            pos += 1
