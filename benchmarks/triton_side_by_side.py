"""The same Triton tutorial kernel sources compiled two ways, side by side in one process:
by spvjit for Vulkan and by Triton for CUDA, plus torch.matmul in f16 as the vendor library.

The kernels are tests/tutorial_kernels.py, loaded twice: as it is (spvjit), and with its two
import lines pointed at triton (the kernel bodies are byte for byte the same).  Each figure
is a median of its own framework's do_bench; ratios compare figures of this one run.

    python benchmarks/triton_side_by_side.py [--quick] [--json FILE]

Needs a CUDA GPU with torch and triton installed, and a Vulkan driver for the same GPU;
without torch/triton or CUDA it says so in one line and exits 0 (nothing to compare).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests" / "tutorial_kernels.py"
SPVJIT_IMPORTS = "import spvjit as triton\nimport spvjit.language as tl\n"
TRITON_IMPORTS = "import triton\nimport triton.language as tl\n"


def load_kernels(backend: str):
    text = SOURCE.read_text()
    if backend == "triton":
        if SPVJIT_IMPORTS not in text:
            raise SystemExit(f"{SOURCE} no longer starts with the spvjit imports this script swaps")
        text = text.replace(SPVJIT_IMPORTS, TRITON_IMPORTS)
    folder = Path(tempfile.mkdtemp(prefix=f"tutorial-{backend}-"))
    path = folder / f"tutorial_kernels_{backend}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def next_pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


class Side:
    """How one framework allocates, launches and times (torch+triton or spvjit)."""

    def __init__(self, name, kernels, tensor, empty, bench, to_numpy):
        self.name, self.k = name, kernels
        self.tensor, self.empty, self.bench, self.to_numpy = tensor, empty, bench, to_numpy


def spvjit_side():
    import spvjit
    import spvjit.testing
    return Side("spvjit-vulkan", load_kernels("spvjit"),
                spvjit.tensor, lambda shape, dt: spvjit.empty(shape, dt[1]),
                lambda fn: spvjit.testing.do_bench(fn, warmup=5, rep=30),
                lambda t: t.numpy())


def make_sides():
    import torch
    import triton
    tri = Side("triton-cuda", load_kernels("triton"),
               lambda a: torch.from_numpy(a).cuda(), lambda shape, dt: torch.empty(shape, dtype=dt[0], device="cuda"),
               lambda fn: triton.testing.do_bench(fn, warmup=100, rep=300, return_mode="median"),
               lambda t: t.cpu().numpy())
    return tri, spvjit_side()


def case_vector_add(side, n):
    rng = np.random.default_rng(0)
    x, y = (rng.standard_normal(n).astype(np.float32) for _ in range(2))
    X, Y = side.tensor(x), side.tensor(y)
    out = side.empty((n,), _F32)
    grid = (-(-n // 1024),)
    run = lambda: side.k.add_kernel[grid](X, Y, out, n, BLOCK_SIZE=1024)   # noqa: E731
    run()
    err = float(np.abs(side.to_numpy(out) - (x + y)).max())
    ms = side.bench(run)
    return {"ms": ms, "GB/s": 3 * 4 * n / ms / 1e6, "max_err": err}


def case_softmax(side, rows, cols):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    X = side.tensor(x)
    out = side.empty((rows, cols), _F32)
    block = next_pow2(cols)
    warps = 8 if block >= 2048 else 4
    run = lambda: side.k.softmax_kernel[(rows,)](out, X, cols, cols, rows, cols, BLOCK_SIZE=block,  # noqa: E731
                                                 num_stages=1, num_warps=warps)
    run()
    e = np.exp(x - x.max(axis=1, keepdims=True))
    err = float(np.abs(side.to_numpy(out) - e / e.sum(axis=1, keepdims=True)).max())
    ms = side.bench(run)
    return {"ms": ms, "GB/s": 2 * 4 * rows * cols / ms / 1e6, "max_err": err}


def case_layer_norm(side, rows, cols):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    w = rng.standard_normal(cols).astype(np.float32)
    b = rng.standard_normal(cols).astype(np.float32)
    X, W, B = side.tensor(x), side.tensor(w), side.tensor(b)
    y = side.empty((rows, cols), _F32)
    mean, rstd = side.empty((rows,), _F32), side.empty((rows,), _F32)
    block = min(65536 // 4, next_pow2(cols))
    warps = min(max(block // 256, 1), 8)
    run = lambda: side.k._layer_norm_fwd_fused[(rows,)](X, y, W, B, mean, rstd, cols, cols, 1e-5,  # noqa: E731
                                                        BLOCK_SIZE=block, num_warps=warps)
    run()
    mu = x.mean(axis=1, keepdims=True)
    ref = (x - mu) / np.sqrt(x.var(axis=1, keepdims=True) + 1e-5) * w + b
    err = float(np.abs(side.to_numpy(y) - ref).max())
    ms = side.bench(run)
    return {"ms": ms, "GB/s": 2 * 4 * rows * cols / ms / 1e6, "max_err": err}


MATMUL_CONFIGS = {   # (BM, BN, BK, GROUP, warps): the tutorial's kind of blocks, for each side
    "triton-cuda": [(128, 256, 64, 8, 8), (128, 128, 64, 8, 4), (128, 128, 32, 8, 4), (64, 64, 32, 8, 4)],
    "spvjit-vulkan": [(64, 64, 32, 8, 4), (64, 64, 32, 8, 2), (32, 64, 32, 8, 4), (64, 32, 32, 8, 4)],
}


def case_matmul(side, n, configs=None):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((n, n)).astype(np.float16)
    b = rng.standard_normal((n, n)).astype(np.float16)
    A, B = side.tensor(a), side.tensor(b)
    c = side.empty((n, n), _F16)
    best = None
    ref = (a[:64].astype(np.float32) @ b.astype(np.float32))
    for bm, bn, bk, group, warps in configs or MATMUL_CONFIGS[side.name]:
        grid = (-(-n // bm) * -(-n // bn),)

        def run():
            side.k.matmul_kernel[grid](A, B, c, n, n, n, n, 1, n, 1, n, 1, BLOCK_SIZE_M=bm, BLOCK_SIZE_N=bn,
                                       BLOCK_SIZE_K=bk, GROUP_SIZE_M=group, ACTIVATION="", num_warps=warps)
        try:
            run()
        except Exception as e:      # a config this side cannot compile (shared memory, registers)
            print(f"  {side.name} matmul {bm}x{bn}x{bk} w{warps}: skipped ({str(e).splitlines()[0][:100]})")
            continue
        err = float(np.abs(side.to_numpy(c)[:64].astype(np.float32) - ref).max() / np.abs(ref).max())
        ms = side.bench(run)
        res = {"ms": ms, "TFLOP/s": 2 * n ** 3 / ms / 1e9, "rel_err": err, "blocks": f"{bm}x{bn}x{bk} w{warps}"}
        print(f"  {side.name} matmul {res['blocks']}: {res['TFLOP/s']:.1f} TFLOP/s (rel err {err:.1e})")
        if best is None or ms < best["ms"]:
            best = res
    return best


def torch_matmul(n):
    import torch
    import triton
    a = torch.randn((n, n), device="cuda", dtype=torch.float16)
    b = torch.randn((n, n), device="cuda", dtype=torch.float16)
    ms = triton.testing.do_bench(lambda: torch.matmul(a, b), warmup=100, rep=300, return_mode="median")
    return {"ms": ms, "TFLOP/s": 2 * n ** 3 / ms / 1e9}


_F32 = (None, np.float32)
_F16 = (None, np.float16)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--spvjit-only", action="store_true",
                    help="only the spvjit side, on any Vulkan device (checks the glue without CUDA)")
    args = ap.parse_args(argv)
    if args.spvjit_only:
        side = spvjit_side()
        for name, res in (("vector add", case_vector_add(side, 1 << 16)), ("softmax", case_softmax(side, 64, 256)),
                          ("layer norm", case_layer_norm(side, 64, 256)), # CPU drivers unroll big tiles slowly (issue 12): small blocks for this check
                          ("matmul f16", case_matmul(side, 64, [(16, 16, 16, 2, 1)]))):
            print(f"{name}: {res}")
        return 0
    try:
        import torch
        import triton  # noqa: F401
    except ImportError as e:
        print(f"side by side: skipped, {e.name} is not installed (needs torch and triton for CUDA)")
        return 0
    if not torch.cuda.is_available():
        print("side by side: skipped, no CUDA device")
        return 0
    global _F32, _F16
    _F32, _F16 = (torch.float32, np.float32), (torch.float16, np.float16)
    import spvjit
    dev = spvjit.runtime.get_device()
    print(f"CUDA: {torch.cuda.get_device_name()}, triton {triton.__version__}, torch {torch.__version__}")
    print(f"Vulkan: {dev.caps.name}, coopmat configs: {len(dev.caps.cooperative_matrix)}")
    sizes = ({"add": 1 << 20, "rows": 1024, "cols": 1024, "mm": 512} if args.quick else
             {"add": 1 << 26, "rows": 32768, "cols": 1024, "mm": 4096})
    tri, spv = make_sides()
    cases = [("vector add", "GB/s", lambda s: case_vector_add(s, sizes["add"]), f"{sizes['add']}"),
             ("softmax", "GB/s", lambda s: case_softmax(s, sizes["rows"], sizes["cols"]),
              f"{sizes['rows']}x{sizes['cols']}"),
             ("layer norm", "GB/s", lambda s: case_layer_norm(s, sizes["rows"], sizes["cols"]),
              f"{sizes['rows']}x{sizes['cols']}"),
             ("matmul f16", "TFLOP/s", lambda s: case_matmul(s, sizes["mm"]), f"{sizes['mm']}^3")]
    results = []
    for name, unit, fn, size in cases:
        row = {"kernel": name, "size": size, "unit": unit}
        for side in (tri, spv):
            try:
                row[side.name] = fn(side)
            except Exception as e:
                row[side.name] = {"error": str(e).splitlines()[0][:200]}
        if name == "matmul f16":
            row["torch"] = torch_matmul(sizes["mm"])
        results.append(row)
        a, b = row["spvjit-vulkan"].get(unit) if row["spvjit-vulkan"] else None, \
            row["triton-cuda"].get(unit) if row["triton-cuda"] else None
        ratio = f"{a / b:.0%} of triton" if a and b else "-"
        torch_txt = f", torch {row['torch'][unit]:.1f}" if "torch" in row else ""
        print(f"{name:11s} {size:>12s}: spvjit {a if a else row['spvjit-vulkan']} {unit}, "
              f"triton {b if b else row['triton-cuda']} {unit} ({ratio}){torch_txt}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
