"""One descriptor per GGUF weight type: everything the device side needs to know about it.

A type's *format* (block size, bytes, fields and their offsets) and its numpy
dequantizer live in ``models/llama/quants.py``; this table adds, per type, how its
blocks sit on the device and which helper kernels (:mod:`.quant`) decode them. The
packer (:mod:`.packing`), the matvec / matmul / embedding launchers (``kernels``) and
the tuning sites (``tuning.py``) all read it, so supporting a new type means: its
format and numpy dequantizer in quants.py, its helper in quant.py, one line here.

Two device layouts (:mod:`.packing` has the details):

* **row-major**: each block split into three arrays, rows one after the other:
  ``qw`` (the fields named in ``qw``, as ``qw_dtype``: uint32 words, or the values of
  the float types), ``sc`` (the ``sc`` fields, float16), ``aux`` (the ``aux`` fields,
  uint32 words). ``dequant`` decodes ``unit_elems`` weights per call.
* **row-tiled** (``tiled`` set; the 32-weight types whose quants can be masked in place:
  Q4_0, Q4_1, Q8_0, Q5_0, Q5_1): 64 rows side by side, word by word, for the matrix-vector
  and matrix-matrix kernels that load one word of 64 rows at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ModelError
from ..quants import QUANT_TYPES, QuantType
from . import quant as Q
from . import quant_k as QK


@dataclass(frozen=True)
class Tiled:
    """Row-tiled layout of a 32-weight block type (Q4_0, Q4_1, Q8_0, Q5_0, Q5_1)."""

    words: int            # uint32 words of quants per block and row
    nibbles: bool         # 4-bit quants (qw's first field), reordered so word w holds
                          # weights 8w .. 8w + 7; qw's further fields follow as words
    unit: object          # tu_<type>(qw, sc, tb, r, u) -> 8 values (linear.matmul_tiled_kernel)
    matvec_block: object  # mv_<type>(qw, sc, ro, tb, xs, x0, sx) (linear.matvec_tiled_kernel)
    x_scale: object       # xs_<q4|q8>(e): the pre-scale of x for weight e of a block


@dataclass(frozen=True)
class DeviceQuant:
    name: str
    dequant: object                 # dq_<type>(qw, sc, aux, row, u, K) -> (values, cols)
    unit_elems: int                 # weights per dequant call
    qw: tuple[str, ...]             # block fields in qw, in this order
    sc: tuple[str, ...] = ()        # block fields in sc (fp16 each)
    aux: tuple[str, ...] = ()       # block fields in aux (uint32 words)
    qw_dtype: str = "<u4"
    tiled: Tiled | None = None

    @property
    def format(self) -> QuantType:
        return QUANT_TYPES[self.name]

    def __post_init__(self):
        # the packer views each group of fields as whole items of its array's dtype
        qt = QUANT_TYPES[self.name]
        size = lambda names: sum(qt.field(n).n_bytes for n in names)  # noqa: E731
        ok = size(self.qw) % np.dtype(self.qw_dtype).itemsize == 0 and size(self.sc) % 2 == 0
        ok = ok and size(self.aux) % 4 == 0 and size(self.qw + self.sc + self.aux) == qt.block_bytes
        if self.tiled is not None:
            ok = ok and qt.block_elems == 32 and size(self.sc) in (2, 4) and not self.aux
            ok = ok and self.tiled.words * 4 == size(self.qw)
        assert ok, f"{self.name}: the descriptor's fields do not fit its layout"


_Q4 = dict(words=4, nibbles=True, x_scale=Q.xs_q4)

DEVICE_QUANTS: dict[str, DeviceQuant] = {d.name: d for d in (
    DeviceQuant("F32", Q.dq_f32, 1, ("value",), qw_dtype="<f4"),
    DeviceQuant("F16", Q.dq_f16, 1, ("value",), qw_dtype="<f2"),
    DeviceQuant("BF16", Q.dq_bf16, 1, ("value",), qw_dtype="<u2"),
    DeviceQuant("Q8_0", Q.dq_q8_0, 8, ("qs",), ("d",),
                tiled=Tiled(words=8, nibbles=False, unit=Q.tu_q8_0, matvec_block=Q.mv_q8_0, x_scale=Q.xs_q8)),
    DeviceQuant("Q4_0", Q.dq_q4_0, 8, ("qs",), ("d",),
                tiled=Tiled(unit=Q.tu_q4_0, matvec_block=Q.mv_q4_0, **_Q4)),
    DeviceQuant("Q4_1", Q.dq_q4_1, 8, ("qs",), ("d", "m"),
                tiled=Tiled(unit=Q.tu_q4_1, matvec_block=Q.mv_q4_1, **_Q4)),
    DeviceQuant("Q5_0", Q.dq_q5_0, 8, ("qs", "qh"), ("d",),
                tiled=Tiled(words=5, nibbles=True, unit=Q.tu_q5_0, matvec_block=Q.mv_q5_0, x_scale=Q.xs_q4)),
    DeviceQuant("Q5_1", Q.dq_q5_1, 8, ("qs", "qh"), ("d", "m"),
                tiled=Tiled(words=5, nibbles=True, unit=Q.tu_q5_1, matvec_block=Q.mv_q5_1, x_scale=Q.xs_q4)),
    DeviceQuant("IQ4_NL", Q.dq_iq4_nl, 8, ("qs",), ("d",)),
    DeviceQuant("Q2_K", QK.dq_q2_k, 16, ("qs",), ("d", "dmin"), ("scales",)),
    DeviceQuant("Q3_K", QK.dq_q3_k, 16, ("hmask", "qs"), ("d",), ("scales",)),
    DeviceQuant("Q4_K", QK.dq_q4_k, 8, ("qs",), ("d", "dmin"), ("scales",)),
    DeviceQuant("Q5_K", QK.dq_q5_k, 8, ("qh", "qs"), ("d", "dmin"), ("scales",)),
    DeviceQuant("Q6_K", QK.dq_q6_k, 8, ("ql", "qh"), ("d",), ("scales",)),
    DeviceQuant("IQ4_XS", QK.dq_iq4_xs, 8, ("qs",), (), ("d", "scales_h", "scales_l")),
)}

SUPPORTED = tuple(DEVICE_QUANTS)


def device_quant(qtype: str) -> DeviceQuant:
    try:
        return DEVICE_QUANTS[qtype]
    except KeyError:
        raise ModelError(f"weight type {qtype} has no device kernels (supported: {', '.join(SUPPORTED)})") from None
