"""Benchmarks of the quantized linear kernels against numpy (used by benchmarks/kernels.py).

Figures are GB/s of *packed* weight bytes (what the kernel has to read). The numpy
reference is the dequantized float32 matrix-vector product ``W @ x``, timed with wall
clock and reported as the same packed byte count over its time, so the ratio compares
the two ways of getting y.

    .venv/bin/python -m spvjit.models.llama.kernels.bench [--rep N]
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import numpy as np

import spvjit
from spvjit.testing import do_bench, do_bench_wall

from ..quants import QUANT_TYPES, dequantize
from . import DeviceWeight, device_quant, matvec, matvec_layout, pack_weight


def _random_quant(qtype: str, n: int, k: int, rng) -> np.ndarray:
    """GGUF bytes of an n x k matrix of realistic blocks (small scales, every quant value)."""
    qt = QUANT_TYPES[qtype]
    if qt.block_elems == 1:   # float types: normal values (random bits could be NaN)
        x = rng.standard_normal(n * k).astype(np.float32)
        if qtype == "BF16":
            return (x.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
        return x.astype(qt.fields[0].dtype).view(np.uint8)
    nb = n * k // qt.block_elems
    raw = rng.integers(0, 256, (nb, qt.block_bytes), dtype=np.uint8)
    for name in ("d", "m", "dmin"):
        try:
            f = qt.field(name)
        except KeyError:
            continue
        vals = (rng.standard_normal(nb) * (0.01 if name == "d" else 0.1)).astype(np.float16)
        raw[:, f.offset:f.offset + 2] = vals.view(np.uint8).reshape(nb, 2)
    return raw.reshape(-1)


def matvec_case(qtype: str, n: int, k: int, rep: int = 20, check: bool = True):
    """("GB/s", spvjit, numpy) for y = W @ x with W an n x k ``qtype`` matrix."""
    rng = np.random.default_rng(0)
    raw = _random_quant(qtype, n, k, rng)
    w = DeviceWeight.upload(pack_weight(raw, qtype, (n, k)))
    x = rng.standard_normal(k).astype(np.float32)
    tx, ty = spvjit.tensor(x), spvjit.empty((n,))
    ms = do_bench(lambda: matvec(w, tx, ty), rep=rep)
    W = dequantize(raw, qtype, (n, k))
    if check:
        ref = W.astype(np.float64) @ x.astype(np.float64)
        bound = 1e-5 * (np.abs(W).astype(np.float64) @ np.abs(x)) + 1e-6
        err = np.abs(ty.numpy() - ref)
        assert np.all(err <= bound), f"{qtype} {n}x{k}: max error {err.max():.3g}"
    ref_ms = do_bench_wall(lambda: W @ x, rep=rep)
    nbytes = raw.size
    return "GB/s", nbytes / ms / 1e6, nbytes / ref_ms / 1e6


def q4_1_matvec_case(n: int, k: int):
    """("GB/s", spvjit_GBps, numpy_GBps, layout) for the Q4_1 matrix-vector product (n x k)."""
    lay = matvec_layout(SimpleNamespace(desc=device_quant("Q4_1"), cols=k))
    blocks = ", ".join(f"{key} {val}" for key, val in lay.blocks.items())
    return (*matvec_case("Q4_1", n, k), f"{blocks}, num_warps {lay.num_warps}")


def main(argv=None) -> int:

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rep", type=int, default=20)
    ap.add_argument("--types", default="Q4_1,Q8_0,Q4_0")
    args = ap.parse_args(argv)
    for qtype in args.types.split(","):
        for n, k in ((49152, 576), (3072, 576), (1536, 576), (576, 1536)):
            unit, ours, ref = matvec_case(qtype, n, k, rep=args.rep)
            print(f"{qtype:<5} {n:>6}x{k:<5} spvjit {ours:6.2f} {unit}  numpy {ref:6.2f} {unit}  "
                  f"ratio {ours / ref:5.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
