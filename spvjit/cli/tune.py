"""`spvjit tune`: measure block sizes for every kernel a model's forward pass launches.

The sites (kernel + shape) come from tracing the model's own forward pass: one decoded
token at position --pos (matvec, attention_rows, argmax, ...) and one prompt of -p rows
(matmul, attention_prefill). Each site starts from the launcher's default config and
walks along each block size (x2, /2) while it wins (at most --max-configs configs, GPU
timestamps, configs that fail to compile skipped); a winner must then beat the default
again, timed in alternation with it. Results go to the device's tuning
table under SPVJIT_CACHE_DIR, which `spvjit run` and `spvjit bench` read; sites already
there (same device, same kernel sources) are not measured again unless --force.
"""

from __future__ import annotations

import json
import sys
import time

import spvjit
from spvjit.models.llama import ModelError, default_model_path, load_gguf
from spvjit.models.llama.device_model import DeviceLlama
from spvjit.models.llama.tuning import (
    KERNELS,
    TuningTable,
    config_str,
    planned_configs,
    tune_call,
)

from .run import Progress, UsageError, add_model_args, one_line_errors


def add_parser(subparsers):
    p = subparsers.add_parser(
        "tune", help="tune kernel block sizes for a model on this device",
        description="Benchmark candidate block sizes of every kernel the llama forward pass launches, "
                    "at this model's shapes, and keep the fastest for `spvjit run` and `spvjit bench`.")
    add_model_args(p)
    p.add_argument("-p", "--n-prompt", type=int, default=128, metavar="P",
                   help="prompt rows the matrix-matrix and prompt-attention kernels are timed at (default 128; 0 skips them)")
    p.add_argument("--pos", type=int, default=256, metavar="T",
                   help="cache position decode attention is timed at (default 256, at most --ctx - 1)")
    p.add_argument("--kernels", default=None, metavar="LIST",
                   help=f"comma-separated kernels to tune (default all: {','.join(KERNELS)})")
    p.add_argument("--max-configs", type=int, default=None, metavar="N",
                   help="configs tried per kernel shape (default: 1 + 2 per block size, 3 to 7)")
    p.add_argument("--budget", type=float, default=60.0, metavar="S",
                   help="seconds per kernel shape after which no new config is tried (default 60)")
    p.add_argument("-r", "--rounds", type=int, default=5, metavar="R", help="timed batches per config (default 5)")
    p.add_argument("--force", action="store_true", help="measure again sites already in the table")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    return one_line_errors(p)


def run(args) -> int:

    try:
        if args.n_prompt < 0 or args.pos < 0:
            raise UsageError(f"-p and --pos must be >= 0, got {args.n_prompt} and {args.pos}")
        if (args.max_configs is not None and args.max_configs < 1) or args.rounds < 1 or not args.budget > 0:
            raise UsageError(f"--max-configs and -r must be at least 1 and --budget positive, "
                             f"got {args.max_configs}, {args.rounds} and {args.budget}")
        if args.ctx < 1:
            raise UsageError(f"--ctx must be at least 1, got {args.ctx}")
        kernels = KERNELS
        if args.kernels is not None:
            kernels = tuple(k.strip() for k in args.kernels.split(",") if k.strip())
            bad = [k for k in kernels if k not in KERNELS]
            if bad or not kernels:
                raise UsageError(f"--kernels: unknown kernel {', '.join(bad) or '(none)'}; "
                                 f"choose from {', '.join(KERNELS)}")
        return _tune(args, kernels)
    except (ModelError, UsageError) as e:
        print(f"spvjit: error: {e}", file=sys.stderr)
        return 2


class Bar:
    """A progress bar on stderr (only on a terminal): configs measured / planned."""
    def __init__(self, total: int, stream=None):
        self.total, self.done = max(1, total), 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()

    def step(self, label: str, count: bool = True) -> None:
        self.done += count
        if not self.tty:
            return
        width = 30
        fill = width * min(self.done, self.total) // self.total
        self.stream.write(f"\r\x1b[Ktune [{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} {label}"[:160])
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _tune(args, kernels) -> int:


    path = args.model if args.model is not None else default_model_path()
    mf = load_gguf(path)
    need = max(args.n_prompt, args.pos + 1)
    ctx = min(max(args.ctx, need), mf.config.n_ctx_train)
    bar = Progress(f"uploading {mf.path.name}")
    try:
        model = DeviceLlama(mf, max_ctx=ctx, progress=bar, tuning=None)
    finally:
        bar.done()
    pos = min(args.pos, model.max_ctx - 1)
    rows = min(args.n_prompt, model.max_ctx)

    # the sites, in forward-pass order: decoding first, then the prompt's own
    sites: dict = {}
    contexts = [(1, pos, f"pos={pos}")] + ([(rows, 0, f"M={rows}")] if rows > 1 else [])
    for n, p, at in contexts:
        for call in model.trace_launches(n, p):
            if call.kernel in kernels and call.shape and call.key not in sites:
                sites[call.key] = (call, at)

    table = TuningTable.for_device()
    todo = [k for k in sites if args.force or table.valid(k) is None]
    progress = Bar(sum(planned_configs(sites[k][0], args.max_configs) for k in todo))

    def step(call, cfg, ms):
        progress.step(f"{call.key} [{config_str(cfg)}] {'failed' if ms is None else f'{ms:.3f} ms'}")

    results = []
    t0 = time.perf_counter()
    interrupted = False
    try:
        for key, (call, at) in sites.items():
            cached = key not in todo
            if not cached:
                progress.step(key, count=False)
                entry = tune_call(call, args.max_configs, args.rounds, step, budget_s=args.budget)
                entry["at"] = at
                if entry["config"] is not None:
                    table.put(key, entry)
                    try:
                        table.save()
                    except OSError as e:
                        raise UsageError(f"cannot write the tuning table {table.path}: {e.strerror or e}") from None
            else:
                entry = table.valid(key)
            results.append({"kernel": call.kernel, "shape": call.shape, "at": entry.get("at", at),
                            "config": entry["config"], "ms": entry["ms"], "default": entry.get("default"),
                            "default_ms": entry.get("default_ms"), "cached": cached,
                            "tried": len(entry.get("timings", {})), "errors": entry.get("errors", {}),
                            "seconds": 0.0 if cached else entry.get("seconds")})
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()
        model.close()
    elapsed = time.perf_counter() - t0
    benchmarked = sum(not r["cached"] for r in results)
    if args.json:
        print(json.dumps({"model": mf.config.name or mf.path.stem, "device": _device_name(),
                          "table": str(table.path), "benchmarked": benchmarked, "seconds": round(elapsed, 2),
                          "sites": results}, indent=2))
    else:
        _print_table(results)
        sys.stdout.flush()
        print(f"{benchmarked} of {len(results)} kernel shapes measured in {elapsed:.1f} s "
              f"({len(results) - benchmarked} from the table); table: {table.path}", file=sys.stderr)
    return 130 if interrupted else 0


def _device_name() -> str:
    return spvjit.get_device().caps.name


def _print_table(results) -> None:

    def ms(v):
        return "-" if v is None else f"{v:.3f}"

    head = ("kernel", "shape", "at", "config", "ms", "untuned config", "untuned ms", "speedup")
    rows = []
    for r in results:
        speed = (f"{r['default_ms'] / r['ms']:.2f}x" if r["ms"] and r["default_ms"] else "-")
        rows.append((r["kernel"], r["shape"], r["at"], config_str(r["config"]) + (" (cached)" if r["cached"] else ""),
                     ms(r["ms"]), config_str(r["default"]), ms(r["default_ms"]), speed))
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    print(line(head))
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for r in rows:
        print(line(r))
