"""Benchmark helpers in Triton's shape: `do_bench` and `perf_report`.

`do_bench(fn)` runs a zero-argument callable that launches kernels, records
each repetition into one command batch with GPU timestamps, and returns the
median GPU time in milliseconds (the sum of the dispatches' times), so
Python and submit overhead do not pollute kernel figures.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

from .launch import batch
from .runtime import get_device


def do_bench(fn, warmup: int = 3, rep: int = 10, quantiles=None, return_mode: str = "median",
             min_warmup_s: float | None = None):
    """`warmup` untimed runs, and more until `min_warmup_s` has passed (default: 0.5 s on
    GPUs, 0.05 s on CPU drivers): an idle GPU runs at a fraction of its clock for a while
    (an H200 idled at 345 MHz and timed a 4096^3 matmul 4x slower until warm); then `rep`
    timed runs."""
    if min_warmup_s is None:
        min_warmup_s = 0.05 if get_device().caps.device_type == "cpu" else 0.5
    start, done = time.perf_counter(), 0
    while done < warmup or (time.perf_counter() - start < min_warmup_s and done < 1000):
        with batch():
            fn()
        done += 1
    times = []
    for _ in range(rep):
        with batch(timestamps=True) as b:
            fn()
        times.append(sum(b.elapsed_ns) / 1e6)
    if quantiles is not None:
        s = sorted(times)
        return [s[min(len(s) - 1, int(q * len(s)))] for q in quantiles]
    return {"median": statistics.median, "mean": statistics.fmean, "min": min, "max": max}[return_mode](times)


def do_bench_wall(fn, warmup: int = 2, rep: int = 10) -> float:
    """Median wall-clock milliseconds of `fn()` (for CPU references such as numpy)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rep):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


@dataclass
class Benchmark:
    """What to measure and how to draw it (Triton's `triton.testing.Benchmark`)."""
    x_names: list[str]
    x_vals: list
    line_arg: str
    line_vals: list
    line_names: list[str]
    plot_name: str
    args: dict = field(default_factory=dict)
    ylabel: str = ""
    xlabel: str = ""
    styles: list | None = None
    x_log: bool = False
    y_log: bool = False


class _Mark:
    def __init__(self, fn, benchmarks):
        self.fn = fn
        self.benchmarks = benchmarks

    def run(self, show_plots: bool = False, print_data: bool = True, save_path: str | None = None):
        results = []
        for bench in self.benchmarks:
            rows = []
            for x in bench.x_vals:
                xs = x if isinstance(x, (list, tuple)) else [x] * len(bench.x_names)
                kwargs = dict(zip(bench.x_names, xs), **bench.args)
                row = [xs[0]]
                for lv in bench.line_vals:
                    y = self.fn(**kwargs, **{bench.line_arg: lv})
                    row.append(y[0] if isinstance(y, tuple) else y)
                rows.append(row)
            results.append((bench, rows))
            if print_data:
                head = [bench.x_names[0]] + list(bench.line_names)
                print(bench.plot_name)
                print("  ".join(f"{h:>14}" for h in head))
                for row in rows:
                    print("  ".join(f"{v:>14.4g}" if isinstance(v, float) else f"{v!s:>14}" for v in row))
            if save_path or show_plots:
                _plot(bench, rows, save_path)
        return results


def _plot(bench: Benchmark, rows, save_path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("plotting needs matplotlib: .venv/bin/pip install 'spvjit[plot]'") from None
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [r[0] for r in rows]
    for i, name in enumerate(bench.line_names):
        ax.plot(xs, [r[i + 1] for r in rows], marker="o", label=name)
    if all(isinstance(x, int) for x in xs):
        ax.set_xticks(xs)
    ax.set_xlabel(bench.xlabel or bench.x_names[0])
    ax.set_ylabel(bench.ylabel)
    ax.set_title(bench.plot_name)
    if bench.x_log:
        ax.set_xscale("log")
    if bench.y_log:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = save_path if str(save_path).endswith(".png") else f"{save_path}/{bench.plot_name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)


def perf_report(benchmarks):
    """Decorator: `@perf_report(Benchmark(...))` then `fn.run(print_data=True, save_path=...)`."""
    if isinstance(benchmarks, Benchmark):
        benchmarks = [benchmarks]
    return lambda fn: _Mark(fn, benchmarks)
