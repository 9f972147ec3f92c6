"""The llama layers as spvjit kernels, with host-side launchers.

One file per kernel family: :mod:`.quant` (block decoding, helpers per GGUF type),
:mod:`.qtypes` (one descriptor per GGUF type: layout and helpers, which the launchers
below read), :mod:`.packing` (the device weight layout, host side), :mod:`.linear` (quantized
matrix-vector and matrix-matrix), :mod:`.norm`, :mod:`.rope`, :mod:`.attention`
(decode, prefill, softmax), :mod:`.activation` (SwiGLU, residual add), :mod:`.argmax`.

The launchers below pick grids and block sizes; all take device tensors (flat or not:
kernels index them as flat arrays) and record into the current ``spvjit.launch.batch()``
or ``spvjit.record()`` when there is one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

import spvjit

from .activation import add_kernel, swiglu_kernel
from .argmax import argmax_kernel
from .attention import attention_prefill_kernel, attention_rows_kernel, softmax_kernel
from .linear import matmul_kernel, matmul_tiled_kernel, matvec_kernel, matvec_tiled_kernel
from . import matmul_q8
from .matmul_coop import MIN_ROWS as MIN_ROWS_COOP, coopmat_f16_available, f16_copy, matmul_f16
from .norm import rms_norm_kernel
from . import layouts
from .packing import PackedWeight, pack_weight, unpack
from .qtypes import DEVICE_QUANTS, SUPPORTED, DeviceQuant, device_quant
from .quant import dequant_rows_kernel
from .rope import rope_kv_kernel

__all__ = [
    "DEVICE_QUANTS", "DeviceQuant", "DeviceWeight", "PackedWeight", "RowSplit", "SUPPORTED", "add", "argmax", "attention",
    "attention_decode", "attention_prefill", "attention_rows", "dequant_rows", "device_quant", "linear",
    "matmul", "matvec", "pack_weight", "rms_norm", "rope_kv", "softmax", "swiglu", "unit_elems", "unpack", "upload_weight",
]


def unit_elems(qtype: str) -> int:
    """Weights per call of the type's row-major helper (dequant_rows' unit)."""
    return device_quant(qtype).unit_elems


# Block sizes, measured on lavapipe (a program is one subgroup of 8 lanes there). matvec_kernel
# and matmul_kernel (the row-major types): BR rows x BU units, BM x BN x BU units; W in
# matmul is decoded as [BU, BN] tiles with BN a multiple of 32, which sl.dot's subgroup
# path needs; BU = 1 made matmul 128x3072x576 Q4_1 (when it went through matmul_kernel)
# 1.45x faster than BU = 2 and a 128-token prompt 1.13x faster. BT keys for attention.
MATVEC = dict(BR=16, BU=8)
# matvec of the row-tiled types (Q4_0, Q4_1, Q8_0; linear.matvec_tiled_kernel): f(x) for KB
# blocks (at most; a divisor of K/32) in registers at a time, P programs (0: one per CPU on
# CPU drivers, one per 64-row tile elsewhere). Each program loads f(x) first, so on lavapipe
# as few programs as there are threads win (576x576 Q4_1: 1.35x faster with 2 than with
# 16; 49152x576 no slower). KB = 18: 3072x576 1.13x faster than with 9; 576x1536 (16 then)
# 1.25x faster than with 48, which also takes 3x longer to compile.
MATVEC_TILED = dict(KB=18, P=0)
# Vectors per program of matvec_tiled_kernel when several sequences decode together (spvjit
# serve): the NV calls of the type's block helper on one tile-block load the same words and
# decode them alike, which the compiler shares (the batch size rounded up to a power of two,
# at most MATVEC_NV). Default model on lavapipe, median step times: 4 rows 100 ms against
# 114 with one vector per program, 8 rows 166 against 193 (one row: 35 ms). Sharing the
# decode by hand (one word, NV accumulators) measured 1.5x at 4 rows on a busier machine,
# but needs block helpers that take NV vectors; 8 per program compiled for 6 minutes and
# ran no faster (register spills).
MATVEC_NV = 4
MATMUL = dict(BM=8, BN=64, BU=1)
# matmul of the row-tiled types (linear.matmul_tiled_kernel): 64 rows of W (one tile) x BM
# rows of x per program. 128x3072x576 Q4_1: ~24 GFLOP/s, 1.37x matmul_kernel with BU = 1;
# BM = 16 and BM = 4 were slower (1.04x, 1.12x).
MATMUL_TILED = dict(BM=8)
ATTN_ROWS = dict(BT=8)
ATTN_BLOCKS = dict(BQ=8, BT=32)   # BT = 32: sl.dot's subgroup path (B rows span 32 lanes x 4)
ATTN_BLOCKS_MIN_ROWS = 128        # where attention_prefill overtakes attention_rows (lavapipe)


def _pow2(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


_dummies: dict = {}


def _dummy(dtype) -> "spvjit.Tensor":
    """A one-element stand-in for the arrays a weight type does not have."""
    key = np.dtype(dtype).str
    if key not in _dummies:
        _dummies[key] = spvjit.zeros((1,), dtype)
    return _dummies[key]


@dataclass
class DeviceWeight:
    """A packed weight matrix on the device (see :mod:`.packing`)."""

    qtype: str
    rows: int
    cols: int
    qw: object
    sc: object
    aux: object
    nbytes: int

    @property
    def desc(self) -> DeviceQuant:
        return device_quant(self.qtype)

    @classmethod
    def upload(cls, p: PackedWeight) -> "DeviceWeight":
        sc = spvjit.tensor(p.sc.reshape(-1)) if p.sc is not None else _dummy(np.float16)
        aux = spvjit.tensor(p.aux.reshape(-1)) if p.aux is not None else _dummy(np.uint32)
        return cls(p.qtype, p.rows, p.cols, spvjit.tensor(p.qw.reshape(-1)), sc, aux, p.nbytes)

    @property
    def arrays(self):
        return self.qw, self.sc, self.aux


@dataclass
class RowSplit:
    """A matrix too big for one device buffer, as consecutive row ranges ``(first row,
    DeviceWeight)``. The launchers take it wherever they take a DeviceWeight: matvec and
    matmul run each part into its rows of y, the embedding lookup runs each part on the
    ids that fall in its range."""

    qtype: str
    rows: int
    cols: int
    parts: list
    nbytes: int

    @property
    def desc(self) -> DeviceQuant:
        return device_quant(self.qtype)


def upload_weight(raw, qtype: str, shape: tuple[int, int], limit: int | None = None):
    """A DeviceWeight of the GGUF bytes ``raw`` (a ``rows x cols`` matrix), or a RowSplit
    when one of its device arrays would exceed ``limit`` bytes (default: the device's
    maxStorageBufferRange). Parts are whole 64-row tiles; each array of a part is at
    most its rows' share of the file bytes, so a part of ``limit`` file bytes fits."""
    rows, cols = (int(v) for v in shape)
    fmt = device_quant(qtype).format
    row_bytes = fmt.n_bytes(cols)
    limit = int(limit or spvjit.get_device().caps.max_storage_buffer_range)
    if spvjit.cdiv(rows, 64) * 64 * row_bytes <= limit:    # the tiled layouts pad to 64 rows
        return DeviceWeight.upload(pack_weight(raw, qtype, shape))
    per = limit // row_bytes // 64 * 64
    if per < 64:
        raise ValueError(f"64 rows of {cols} {qtype} weights ({64 * row_bytes} bytes) exceed the "
                         f"device's buffer limit of {limit} bytes")
    raw = np.asarray(raw).reshape(rows, row_bytes)
    parts = [(r0, DeviceWeight.upload(pack_weight(raw[r0:r0 + per].reshape(-1), qtype,
                                                  (min(per, rows - r0), cols))))
             for r0 in range(0, rows, per)]
    return RowSplit(qtype, rows, cols, parts, rows * row_bytes)


def _pre(norm, swiglu: bool):
    """PRE mode and the norm-weight tensor for the linear kernels."""
    if norm is not None and swiglu:
        raise ValueError("norm and swiglu cannot both apply to one input")
    if norm is not None:
        return "norm", norm
    return ("swiglu" if swiglu else "none"), _dummy(np.float32)


@lru_cache(maxsize=None)
def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _programs(tiles: int) -> int:
    """Programs for matvec_tiled_kernel: one per thread where a program is a CPU loop."""
    if getattr(_caps(), "device_type", "") == "cpu":
        return max(1, min(tiles, _cpus()))
    return tiles


def _largest_divisor(n: int, most: int) -> int:
    return max(d for d in range(1, min(n, most) + 1) if n % d == 0)


def _caps():
    return spvjit.get_device().caps


def matvec_layout(w) -> "layouts.KernelLayout":
    """The device's default blocks and num_warps for matvec of ``w`` (a DeviceWeight or
    RowSplit): MATVEC / MATVEC_TILED on CPU drivers, subgroup layouts on GPUs (layouts.py)."""
    d = w.desc
    if d.tiled:
        return layouts.matvec_tiled(_caps(), w.cols, d.unit_elems, MATVEC_TILED)
    return layouts.matvec_rowmajor(_caps(), w.cols, d.unit_elems, MATVEC)


def matvec(w: DeviceWeight, x, y, y_off: int = 0, acc: bool = False, *, x_off: int = 0,
           norm=None, eps: float = 1e-5, swiglu: bool = False, blocks: dict | None = None,
           n_vec: int = 1, ldx: int = 0, ldy: int = 0) -> None:
    """y[y_off : y_off + w.rows] (+)= W @ f(x[x_off:]), with f = rms_norm(.) * norm when a
    norm weight is given, silu(gate) * up with ``swiglu`` (x = [gate | up]), else identity.
    ``n_vec`` vectors at once (batched decoding): vector b at x_off + b * ldx, its result
    at y_off + b * ldy, each computed exactly as it would be alone.
    ``blocks`` overrides the device's layout (kernels/layouts.py): MATVEC (BR, BU) or, for
    the row-tiled types on CPU drivers, MATVEC_TILED (KB, P); KB or P run the tiled kernel."""
    if isinstance(w, RowSplit):
        for r0, part in w.parts:
            matvec(part, x, y, y_off + r0, acc, x_off=x_off, norm=norm, eps=eps, swiglu=swiglu, blocks=blocks,
                   n_vec=n_vec, ldx=ldx, ldy=ldy)
        return
    pre, w_norm = _pre(norm, swiglu)
    d = w.desc
    lay = matvec_layout(w)
    if d.tiled and lay.kernel != "tiled" and {"KB", "P"} & set(blocks or {}):
        lay = layouts.KernelLayout(dict(MATVEC_TILED), layouts.TILED_KERNEL_WARPS, "tiled")   # asked for
    if lay.kernel == "tiled":
        cfg = {**lay.blocks, **(blocks or {})}
        nb = w.cols // 32
        kb = _largest_divisor(nb, max(1, int(cfg["KB"])))
        tiles = spvjit.cdiv(w.rows, 64)
        programs = int(cfg["P"]) or _programs(tiles)
        nv = min(_pow2(n_vec), MATVEC_NV)
        matvec_tiled_kernel[(min(programs, tiles), spvjit.cdiv(n_vec, nv))](
            w.qw, w.sc, x, y, w_norm, w.rows, w.cols, x_off, y_off, ldx, ldy, n_vec, float(eps),
            MV=d.tiled.matvec_block, XS=d.tiled.x_scale, PRE=pre, KB=kb, ACC=acc, NV=nv,
            num_warps=lay.num_warps)
        return
    cfg = {**lay.blocks, **{k: v for k, v in (blocks or {}).items() if k in MATVEC}}
    matvec_kernel[(spvjit.cdiv(w.rows, cfg["BR"]), n_vec)](
        *w.arrays, x, y, w_norm, w.rows, w.cols, x_off, y_off, ldx, ldy, float(eps),
        DQ=d.dequant, UE=d.unit_elems, PRE=pre, ACC=acc, num_warps=lay.num_warps, **cfg)


def matmul(w: DeviceWeight, x, y, m: int, ldx: int | None = None, ldy: int | None = None,
           y_off: int = 0, acc: bool = False, *, norm=None, eps: float = 1e-5, swiglu: bool = False,
           blocks: dict | None = None) -> None:
    """y[i, y_off : y_off + w.rows] (+)= W @ f(x[i]) for the m rows of x (f as in matvec).
    ``blocks`` overrides MATMUL (BM, BN, BU) or, for the row-tiled types, MATMUL_TILED (BM)."""
    ldx = (2 * w.cols if swiglu else w.cols) if ldx is None else ldx
    ldy = w.rows if ldy is None else ldy
    if isinstance(w, RowSplit):
        for r0, part in w.parts:
            matmul(part, x, y, m, ldx, ldy, y_off + r0, acc, norm=norm, eps=eps, swiglu=swiglu, blocks=blocks)
        return
    pre, w_norm = _pre(norm, swiglu)
    if m >= MIN_ROWS_COOP and matmul_q8.usable(w, m):
        # i8 matrix cores: Q8_0 weights times Q8-quantized activations (matmul_q8.py)
        matmul_q8.matmul_q8(w, x, y, m, ldx, ldy, y_off, acc, pre, w_norm, eps)
        return
    if m >= MIN_ROWS_COOP and w.rows * w.cols * 2 <= spvjit.get_device().caps.max_storage_buffer_range \
            and coopmat_f16_available():
        # matrix cores: an f16 copy of W (decoded once) times f16 activations (matmul_coop.py)
        matmul_f16(f16_copy(w, dequant_rows), x, y, m, w.rows, w.cols, ldx, ldy, y_off, acc, pre, w_norm, eps)
        return
    d = w.desc
    if d.tiled:
        bm = int({**MATMUL_TILED, **{k: v for k, v in (blocks or {}).items() if k in MATMUL_TILED}}["BM"])
        matmul_tiled_kernel[(spvjit.cdiv(w.rows, 64), spvjit.cdiv(m, bm))](
            w.qw, w.sc, x, y, w_norm, m, w.rows, w.cols, ldx, ldy, y_off, float(eps),
            TU=d.tiled.unit, PRE=pre, BM=bm, ACC=acc)
        return
    cfg = {**MATMUL, **{k: v for k, v in (blocks or {}).items() if k in MATMUL}}
    grid = (spvjit.cdiv(w.rows, cfg["BN"]), spvjit.cdiv(m, cfg["BM"]))
    matmul_kernel[grid](*w.arrays, x, y, w_norm, m, w.rows, w.cols, ldx, ldy, y_off, float(eps),
                        DQ=d.dequant, UE=d.unit_elems, PRE=pre, ACC=acc, **cfg)


def linear(w: DeviceWeight, x, y, m: int, ldx: int | None = None, ldy: int | None = None,
           y_off: int = 0, acc: bool = False, **pre) -> None:
    """matvec for one row (its strides do not matter), matmul for more."""
    if m == 1:
        matvec(w, x, y, y_off, acc, **pre)
    else:
        matmul(w, x, y, m, ldx, ldy, y_off, acc, **pre)


def dequant_rows(w: DeviceWeight, rows, out, n: int, block: int = 64) -> None:
    """out[i] = row rows[i] of W, for n int32 row ids (the embedding lookup). Ids outside
    0..rows-1 leave their output row as it was."""
    parts = w.parts if isinstance(w, RowSplit) else [(0, w)]
    d = w.desc
    units = w.cols // d.unit_elems
    block = min(block, _pow2(units))
    for r0, part in parts:
        dequant_rows_kernel[(n, spvjit.cdiv(units, block))](*part.arrays, rows, out, w.cols, r0, part.rows,
                                                             DQ=d.dequant, UE=d.unit_elems, BU=block)


def rms_norm(x, weight, out, n_rows: int, n_cols: int, eps: float, row0: int = 0) -> None:
    """out[i] = rms_norm(x[row0 + i]) * weight for i < n_rows (layout: layouts.norm_rows)."""
    lay = layouts.norm_rows(_caps(), n_cols, n_rows)
    rms_norm_kernel[(lay.programs(n_rows),)](x, weight, out, n_cols, row0, float(eps), BLOCK=lay.block,
                                              ROWS=lay.rows_per_program, num_warps=lay.num_warps)


def rope_kv(qkv, k_cache, v_cache, inv_freq, n_tokens: int, pos, ld: int,
            n_head: int, n_kv: int, head_dim: int, *, bias=None, neox: bool = False,
            base=None, row_pos: bool = False) -> None:
    """Rotate q and k of n_tokens rows of qkv (row stride ld) at positions pos[0] + t;
    write k and v to the caches from cache row base[0] (default 0) on. ``pos``, ``base``:
    int32 device tensors. ``bias``: a [q | k | v] bias added first (qwen2); ``neox``:
    rotate pairs (i, i + d/2). ``row_pos``: every row is a sequence of its own, at
    position pos[t], its cache from row base[t] (batched decoding)."""
    if base is None:
        base = _zero_base(row_pos)
    rope_kv_kernel[(n_tokens, n_head + n_kv)](qkv, k_cache, v_cache, inv_freq, pos, base,
                                               _dummy(np.float32) if bias is None else bias, ld,
                                               N_HEAD=n_head, N_KV=n_kv, D=head_dim,
                                               HALF=_pow2(head_dim // 2), NEOX=bool(neox),
                                               BIAS=bias is not None, ROW_POS=row_pos)


def _zero_base(row_pos: bool):
    if row_pos:
        raise ValueError("row_pos needs a base tensor with one cache row per sequence")
    return _dummy(np.int32)   # one zero: the cache starts at row 0


def attention_decode(q, k_cache, v_cache, out, pos, n_head: int, n_kv: int, head_dim: int) -> None:
    """One query row (q: n_head * head_dim) at position pos[0]: attends to cache positions
    0..pos[0]. ``pos``: an int32 device tensor."""
    attention_rows(q, k_cache, v_cache, out, 1, pos, n_head * head_dim, n_head, n_kv, head_dim)


def attention_rows(q, k_cache, v_cache, out, n: int, pos, ldq: int,
                   n_head: int, n_kv: int, head_dim: int, blocks: dict | None = None,
                   base=None, row_pos: bool = False) -> None:
    """Causal attention, one query row per program; row i of q (stride ldq) is at position
    pos[0] + i, the cache from row base[0] (default 0) on. Used for decoding (n = 1) and
    prompts. ``row_pos``: each row a sequence of its own at position pos[i], its cache
    from row base[i] (batched decoding). ``blocks`` overrides ATTN_ROWS."""
    if base is None:
        base = _zero_base(row_pos)
    attention_rows_kernel[(n_head, n)](q, k_cache, v_cache, out, pos, base, ldq, float(head_dim) ** -0.5,
                                       N_HEAD=n_head, N_KV=n_kv, D=head_dim, BD=_pow2(head_dim),
                                       GQA=n_head // n_kv, ROW_POS=row_pos, **{**ATTN_ROWS, **(blocks or {})})


def attention_prefill(q, k_cache, v_cache, out, n: int, pos, ldq: int,
                      n_head: int, n_kv: int, head_dim: int, blocks: dict | None = None,
                      base=None) -> None:
    """Causal attention in blocks of BQ query rows (flash attention with sl.dot). Same
    arguments as attention_rows (``blocks`` overrides ATTN_BLOCKS). On lavapipe it wins
    from about 128 rows (512 rows of the default model: 34 ms against 70 per layer) but
    compiles in seconds, not 0.1 s."""
    if base is None:
        base = _zero_base(False)
    blocks = {**ATTN_BLOCKS, **(blocks or {})}
    grid = (n_head, spvjit.cdiv(n, blocks["BQ"]))
    attention_prefill_kernel[grid](q, k_cache, v_cache, out, n, pos, base, ldq, float(head_dim) ** -0.5,
                                   N_HEAD=n_head, N_KV=n_kv, D=head_dim, BD=_pow2(head_dim),
                                   GQA=n_head // n_kv, **blocks)


def attention(q, k_cache, v_cache, out, n: int, pos, ldq: int, n_head: int, n_kv: int, head_dim: int,
              base=None) -> None:
    """attention_prefill for long prompts, attention_rows otherwise."""
    launch = attention_prefill if n >= ATTN_BLOCKS_MIN_ROWS else attention_rows
    launch(q, k_cache, v_cache, out, n, pos, ldq, n_head, n_kv, head_dim, base=base)


def swiglu(gu, out, n_rows: int, n_ff: int, block: int = 512) -> None:
    block = min(block, _pow2(n_ff))
    swiglu_kernel[(n_rows, spvjit.cdiv(n_ff, block))](gu, out, n_ff, BLOCK=block)


def add(x, y, out, n: int, block: int = 1024) -> None:
    add_kernel[(spvjit.cdiv(n, block),)](x, y, out, n, BLOCK=block)


def softmax(x, out, n_rows: int, n_cols: int) -> None:
    lay = layouts.norm_rows(_caps(), n_cols, n_rows)
    softmax_kernel[(lay.programs(n_rows),)](x, out, n_cols, BLOCK=lay.block, ROWS=lay.rows_per_program,
                                            num_warps=lay.num_warps)


def argmax(x, out, n: int, block: int = 1024, n_rows: int = 1) -> None:
    """out[r] = argmax of row r of x (rows of n values), for n_rows rows."""
    argmax_kernel[(n_rows,)](x, out, n, BLOCK=min(block, _pow2(n)))
