"""`spvjit bench`: prompt-processing and generation speed, like llama-bench.

pp<P>: one forward pass over P random tokens from an empty cache (timed to the logits
of the last one). tg<N>: N single-token steps from an empty cache, greedy on the device.
Each test runs once untimed (compiling kernels for its shapes), then ``-r`` times.

``--profile`` then runs each test once more and prints where the time goes per kernel:
for tg, per generated token (each step runs twice at its position: the decode graph
timed by the wall clock, then its copy with GPU timestamps on every dispatch), for pp
over the prompt (also once without timestamps, once with). Wall time against GPU time is
host overhead: Python, submit and wait, and the gaps between dispatches. Timestamps are
not used for wall times because on lavapipe they slow the command buffer down (the
dispatches themselves take as long as without).
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from .run import UsageError, add_model_args, load_model, one_line_errors


def add_parser(subparsers):
    p = subparsers.add_parser(
        "bench", help="measure prompt processing and generation tokens/s",
        description="Measure prompt processing (pp) and text generation (tg) speed of a llama "
                    "GGUF model on the device, as llama-bench does.")
    add_model_args(p)
    p.add_argument("-p", "--n-prompt", type=int, default=512, metavar="P", help="prompt tokens (default 512; 0 skips)")
    p.add_argument("-n", "--n-gen", type=int, default=128, metavar="N", help="generated tokens (default 128; 0 skips)")
    p.add_argument("-r", "--repetitions", type=int, default=2, metavar="R", help="timed runs per test (default 2)")
    p.add_argument("--profile", action="store_true",
                   help="per-kernel GPU time of the pp and tg tests, and wall vs GPU time per token")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    return one_line_errors(p)


def _params(mf) -> int:
    import numpy as np
    return sum(int(np.prod(mf.tensor(n).shape)) for n in mf.tensor_names)


def _weight_type(mf) -> str:
    """The most common type among the layer matrices (what a model is usually called by)."""
    from collections import Counter
    counts = Counter(mf.tensor(n).ggml_type for n in mf.tensor_names if n.startswith("blk.") and "norm" not in n)
    return counts.most_common(1)[0][0] if counts else "?"


def run(args) -> int:
    from spvjit.models.llama import ModelError

    try:
        if args.n_prompt < 0 or args.n_gen < 0:
            raise UsageError(f"-p and -n must be >= 0, got {args.n_prompt} and {args.n_gen}")
        if args.repetitions < 1:
            raise UsageError(f"-r must be at least 1, got {args.repetitions}")
        if args.ctx < 1:
            raise UsageError(f"--ctx must be at least 1, got {args.ctx}")
        return _bench(args)
    except (ModelError, UsageError) as e:
        print(f"spvjit: error: {e}", file=sys.stderr)
        return 2


def _bench(args) -> int:
    import numpy as np
    from spvjit.runtime import get_device

    need = max(args.n_prompt, args.n_gen, 1)
    args.ctx = max(args.ctx, need)
    mf, model, load_s = load_model(args, "uploading")
    if need > model.max_ctx:
        raise UsageError(f"the tests need {need} positions, the model's context is {model.max_ctx}")
    rng = np.random.default_rng(0)
    vocab = mf.config.n_vocab
    tests = []
    if args.n_prompt:
        prompt = [int(t) for t in rng.integers(0, vocab, args.n_prompt)]

        def pp(profile=None):
            model.reset()
            t0 = time.perf_counter()
            model.forward_argmax(prompt, 0)
            if profile is not None:
                wall, wait = time.perf_counter() - t0, model.wait_s
                profile.add(_timestamped(model, lambda: model.forward_argmax(prompt, 0)), wall, wait)
        tests.append((f"pp{args.n_prompt}", args.n_prompt, pp))
    if args.n_gen:
        def tg(profile=None):
            model.reset()
            tok = 1 % vocab
            for pos in range(args.n_gen):
                t0 = time.perf_counter()
                nxt = model.forward_argmax([tok], pos)
                if profile is not None:
                    wall, wait = time.perf_counter() - t0, model.wait_s
                    profile.add(_timestamped(model, lambda: model.forward_argmax([tok], pos)), wall, wait)
                tok = nxt
        tests.append((f"tg{args.n_gen}", args.n_gen, tg))
    caps = get_device().caps
    size = sum(mf.tensor(n).n_bytes for n in mf.tensor_names)
    info = {"model": mf.config.name or mf.path.stem, "type": _weight_type(mf), "size_bytes": size,
            "params": _params(mf), "backend": f"spvjit ({caps.name})", "load_s": round(load_s, 3)}
    tuning = model.tuning
    results = []
    for name, n_tokens, fn in tests:
        fn()  # compiles the kernels for these shapes
        rates = []
        for _ in range(args.repetitions):
            t0 = time.perf_counter()
            fn()
            rates.append(n_tokens / (time.perf_counter() - t0))
        results.append({**info, "test": name, "n_tokens": n_tokens, "repetitions": args.repetitions,
                        "avg_ts": statistics.fmean(rates),
                        "stddev_ts": statistics.stdev(rates) if len(rates) > 1 else 0.0,
                        "samples_ts": rates})
    if args.profile:
        for (name, n_tokens, fn), res in zip(tests, results):
            decode = name.startswith("tg")
            res["profile"] = _profile(model, fn, decode)
            # which shape each dispatch was: trace the same forward pass (launches nothing)
            dispatches = res["profile"].pop("dispatch_ns")
            one_batch = decode or n_tokens <= model.max_batch
            res["profile"]["shapes"] = _by_shape(model.trace_launches(1 if decode else n_tokens, 0), dispatches,
                                                 res["profile"]["passes"]) if one_batch else None
    tuned = sorted(tuning.used) if tuning is not None else []
    for res in results:
        res["tuned"] = tuned
    model.close()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"load time: {load_s:.2f} s", file=sys.stderr)
    if tuning is not None:
        print(f"tuned block sizes: {len(tuned)} kernel shapes from {tuning.path}"
              + ("" if tuned else " (run `spvjit tune` to measure them)"), file=sys.stderr)
    head = ("model", "size", "params", "backend", "test", "t/s")
    # The model's name comes from the file: escape control characters before they reach a terminal.
    from spvjit.models.llama.errors import printable
    rows = [(f"{printable(r['model'])} {r['type']}", f"{r['size_bytes'] / 2**20:.2f} MiB", f"{r['params'] / 1e6:.2f} M",
             r["backend"], r["test"], f"{r['avg_ts']:.2f} ± {r['stddev_ts']:.2f}") for r in results]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    print(line(head))
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for r in rows:
        print(line(r))
    for r in results:
        if "profile" in r:
            print()
            print("\n".join(_profile_lines(r["test"], r["profile"])))
    return 0


class _Profile:
    """Per-kernel GPU time accumulated over forward passes (``DeviceLlama.profile``)."""

    def __init__(self):
        self.calls: dict[str, int] = {}
        self.ns: dict[str, float] = {}
        self.labels: list[str] = []           # the dispatches of a pass
        self.dispatch_ns: list[float] = []    # their GPU time summed over the passes
        self.wall_s = self.wait_s = 0.0
        self.passes = 0

    def add(self, dispatches, wall_s: float, wait_s: float) -> None:
        labels = [label for label, _ in dispatches]
        if not self.passes:
            self.labels, self.dispatch_ns = labels, [0.0] * len(labels)
        elif labels != self.labels:
            self.labels = None                  # passes differ: no per-dispatch sums
        if self.labels is not None:
            self.dispatch_ns = [a + ns for a, (_, ns) in zip(self.dispatch_ns, dispatches)]
        for label, ns in dispatches:
            self.calls[label] = self.calls.get(label, 0) + 1
            self.ns[label] = self.ns.get(label, 0.0) + ns
        self.wall_s += wall_s
        self.wait_s += wait_s
        self.passes += 1


def _timestamped(model, step) -> list:
    """Run ``step`` again with GPU timestamps: [(kernel, ns)] of its dispatches."""
    model.timestamps = True
    try:
        step()
    finally:
        model.timestamps = False
    return model.profile


def _profile(model, fn, per_token: bool) -> dict:
    """Run ``fn`` once more, profiling each pass; figures per pass: per token for tg, per
    prompt for pp. (Recording the timestamped decode graph at the first step does not
    count: only the plain step's wall time is measured.)"""
    prof = _Profile()
    fn(prof)
    n = max(prof.passes, 1)
    gpu_ns = sum(prof.ns.values())
    kernels = [{"kernel": k, "calls": prof.calls[k] / n, "ms": prof.ns[k] / n / 1e6,
                "share": prof.ns[k] / gpu_ns if gpu_ns else 0.0}
               for k in sorted(prof.ns, key=prof.ns.get, reverse=True)]
    wall_ms, wait_ms, gpu_ms = prof.wall_s / n * 1e3, prof.wait_s / n * 1e3, gpu_ns / n / 1e6
    return {"per": "token" if per_token else "prompt", "passes": prof.passes, "kernels": kernels,
            "dispatches": sum(prof.calls.values()) / n, "gpu_ms": gpu_ms, "wall_ms": wall_ms,
            "wait_ms": wait_ms, "python_ms": wall_ms - wait_ms,
            "dispatch_ns": list(zip(prof.labels, prof.dispatch_ns)) if prof.labels is not None else None,
            "overhead_ms": wall_ms - gpu_ms, "overhead_share": (wall_ms - gpu_ms) / wall_ms if wall_ms else 0.0}


def _by_shape(calls, dispatches, passes: int) -> list[dict] | None:
    """GPU time per kernel and shape (tuning site), when the traced calls line up with the
    profiled dispatches one to one."""
    from spvjit.models.llama.tuning import dispatch_sites
    if not dispatches:
        return None
    keys = dispatch_sites(calls, [label for label, _ in dispatches])
    if keys is None:
        return None
    ns: dict[str, float] = {}
    count: dict[str, int] = {}
    for key, (_, t) in zip(keys, dispatches):
        ns[key] = ns.get(key, 0.0) + t
        count[key] = count.get(key, 0) + 1
    total = sum(ns.values()) or 1.0
    n = max(passes, 1)
    return [{"site": k, "calls": count[k], "ms": ns[k] / n / 1e6, "share": ns[k] / total}
            for k in sorted(ns, key=ns.get, reverse=True)]


def _table(head, rows) -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                            for i, (c, w) in enumerate(zip(cells, widths))) + " |"
    return [line(head), "| " + " | ".join("-" * w for w in widths) + " |"] + [line(r) for r in rows]


def _profile_lines(test: str, p: dict) -> list[str]:
    per = p["per"]
    if per == "token":
        title = f"{test}: GPU time per generated token (mean of {p['passes']} tokens)"
    else:
        title = f"{test}: GPU time of the prompt"
    rows = [(k["kernel"], f"{k['calls']:g}", f"{k['ms']:.3f}", f"{100 * k['share']:.1f}%") for k in p["kernels"]]
    rows.append(("total", f"{p['dispatches']:g}", f"{p['gpu_ms']:.3f}", "100.0%"))
    out = [title] + _table(("kernel", "calls", "total ms", "share"), rows)
    out.append(f"wall {p['wall_ms']:.3f} ms/{per}, GPU {p['gpu_ms']:.3f} ms/{per}: host overhead (wall - GPU) "
               f"{p['overhead_ms']:.3f} ms/{per} = {100 * p['overhead_share']:.1f}% of wall"
               + (" (target <= 10%)" if per == "token" else ""))
    out.append(f"  of the wall time: {p['python_ms']:.3f} ms/{per} in Python (recording, inputs, results), "
               f"{p['wait_ms']:.3f} ms/{per} submitted to the device until done")
    if p.get("shapes"):
        out.append(f"{test}: by kernel and shape")
        out += _table(("kernel and shape", "calls", "total ms", "share"),
                      [(s["site"], str(s["calls"]), f"{s['ms']:.3f}", f"{100 * s['share']:.1f}%") for s in p["shapes"]])
    return out
