"""spvjit.testing: do_bench (GPU timestamps) and perf_report (table, optional plot)."""
import numpy as np

import spvjit
import spvjit.language as sl
from spvjit.testing import Benchmark, do_bench, perf_report


@spvjit.kernel
def fill(x_ptr, n, BLOCK: sl.constexpr):
    offs = sl.program_id(0) * BLOCK + sl.arange(0, BLOCK)
    sl.store(x_ptr + offs, sl.full((BLOCK,), 1.0, sl.float32), mask=offs < n)


def test_do_bench_times_gpu_work_and_scales_with_it():
    small, big = spvjit.empty(1 << 12), spvjit.empty(1 << 22)
    t_small = do_bench(lambda: fill[(4,)](small, 1 << 12, BLOCK=1024), rep=5)
    t_big = do_bench(lambda: fill[(4096,)](big, 1 << 22, BLOCK=1024), rep=5)
    assert 0 < t_small < t_big                 # 1000x the work takes longer on any device
    lo, hi = do_bench(lambda: fill[(4,)](small, 1 << 12, BLOCK=1024), quantiles=[0.2, 0.8], rep=5)
    assert 0 < lo <= hi
    assert np.all(big.numpy() == 1.0)


def test_perf_report_prints_a_table(capsys):
    bench = Benchmark(x_names=["n"], x_vals=[1024, 4096], line_arg="who", line_vals=["a", "b"],
                      line_names=["A", "B"], plot_name="demo")

    @perf_report(bench)
    def measure(n, who):
        return float(n if who == "a" else 2 * n)

    measure.run(print_data=True)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "demo" and out[1].split() == ["n", "A", "B"]
    assert out[3].split() == ["4096", "4096", "8192"]
