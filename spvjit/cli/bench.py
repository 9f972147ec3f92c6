"""`spvjit bench`: prompt-processing and generation speed, like llama-bench.

pp<P>: one forward pass over P random tokens from an empty cache (timed to the logits
of the last one). tg<N>: N single-token steps from an empty cache, greedy on the device.
Each test runs once untimed (compiling kernels for its shapes), then ``-r`` times.
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

        def pp():
            model.reset()
            model.forward_argmax(prompt, 0)
        tests.append((f"pp{args.n_prompt}", args.n_prompt, pp))
    if args.n_gen:
        def tg():
            model.reset()
            tok = 1 % vocab
            for pos in range(args.n_gen):
                tok = model.forward_argmax([tok], pos)
        tests.append((f"tg{args.n_gen}", args.n_gen, tg))
    caps = get_device().caps
    size = sum(mf.tensor(n).n_bytes for n in mf.tensor_names)
    info = {"model": mf.config.name or mf.path.stem, "type": _weight_type(mf), "size_bytes": size,
            "params": _params(mf), "backend": f"spvjit ({caps.name})", "load_s": round(load_s, 3)}
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
    model.close()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"load time: {load_s:.2f} s", file=sys.stderr)
    head = ("model", "size", "params", "backend", "test", "t/s")
    rows = [(f"{r['model']} {r['type']}", f"{r['size_bytes'] / 2**20:.2f} MiB", f"{r['params'] / 1e6:.2f} M",
             r["backend"], r["test"], f"{r['avg_ts']:.2f} ± {r['stddev_ts']:.2f}") for r in results]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    print(line(head))
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for r in rows:
        print(line(r))
    return 0
