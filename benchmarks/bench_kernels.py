"""Benchmark kernels written the way users write them (imported by benchmarks/kernels.py)."""
import spvjit
import spvjit.language as sl


@spvjit.kernel
def add(x_ptr, y_ptr, out_ptr, n, BLOCK: sl.constexpr):
    offs = sl.program_id(0) * BLOCK + sl.arange(0, BLOCK)
    mask = offs < n
    sl.store(out_ptr + offs, sl.load(x_ptr + offs, mask=mask) + sl.load(y_ptr + offs, mask=mask), mask=mask)


@spvjit.kernel
def softmax_rows(out_ptr, in_ptr, n_cols, BLOCK: sl.constexpr, ROWS: sl.constexpr):
    # ROWS rows per program, one after another (ROWS divides the row count): spvjit.layouts
    for r in sl.static_range(ROWS):
        row = sl.program_id(0) * ROWS + r
        cols = sl.arange(0, BLOCK)
        mask = cols < n_cols
        x = sl.load(in_ptr + row * n_cols + cols, mask=mask, other=-float("inf"))
        e = sl.exp(x - sl.max(x, axis=0))
        sl.store(out_ptr + row * n_cols + cols, e / sl.sum(e, axis=0), mask=mask)


@spvjit.kernel
def layer_norm(x_ptr, y_ptr, w_ptr, b_ptr, n_cols, eps, BLOCK: sl.constexpr, ROWS: sl.constexpr):
    for r in sl.static_range(ROWS):
        row = sl.program_id(0) * ROWS + r
        cols = sl.arange(0, BLOCK)
        mask = cols < n_cols
        x = sl.load(x_ptr + row * n_cols + cols, mask=mask, other=0.0)
        mean = sl.sum(x, axis=0) / n_cols
        d = sl.where(mask, x - mean, 0.0)
        rstd = sl.rsqrt(sl.sum(d * d, axis=0) / n_cols + eps)
        w = sl.load(w_ptr + cols, mask=mask)
        b = sl.load(b_ptr + cols, mask=mask)
        sl.store(y_ptr + row * n_cols + cols, d * rstd * w + b, mask=mask)


@spvjit.kernel
def matvec(w_ptr, x_ptr, y_ptr, N, K, BN: sl.constexpr, BK: sl.constexpr):
    """y = W @ x; each lane accumulates partial products, one reduction at the end."""
    rows = sl.program_id(0) * BN + sl.arange(0, BN)
    acc = sl.zeros((BN, BK), dtype=sl.float32)
    for k in range(0, K, BK):
        cols = k + sl.arange(0, BK)
        w = sl.load(w_ptr + rows[:, None] * K + cols[None, :]).to(sl.float32)
        x = sl.load(x_ptr + cols).to(sl.float32)
        acc += w * x[None, :]
    sl.store(y_ptr + rows, sl.sum(acc, axis=1))


@spvjit.kernel
def matmul(a_ptr, b_ptr, c_ptr, M, N, K, BM: sl.constexpr, BN: sl.constexpr, BK: sl.constexpr):
    rm = sl.program_id(0) * BM + sl.arange(0, BM)
    rn = sl.program_id(1) * BN + sl.arange(0, BN)
    rk = sl.arange(0, BK)
    acc = sl.zeros((BM, BN), dtype=sl.float32)
    for k in range(0, K, BK):
        a = sl.load(a_ptr + rm[:, None] * K + (k + rk)[None, :])
        b = sl.load(b_ptr + (k + rk)[:, None] * N + rn[None, :])
        acc = sl.dot(a, b, acc)
    sl.store(c_ptr + rm[:, None] * N + rn[None, :], acc)


def _fits(configs, named):
    # the kernel has no masks: keep the blocks that tile the problem exactly
    return [c for c in configs if named["M"] % c.kwargs["BM"] == 0 and named["N"] % c.kwargs["BN"] == 0
            and named["K"] % c.kwargs["BK"] == 0]


# Wide, short blocks suit CPU drivers (lavapipe): each broadcast A element feeds
# BN / subgroup-size FMAs per lane.  64x64x32 suits cooperative matrices on GPUs.
MATMUL_CONFIGS = [spvjit.Config({"BM": bm, "BN": bn, "BK": bk}, num_warps=4)
                  for bm, bn, bk in [(32, 32, 32), (64, 64, 32), (32, 128, 16), (32, 256, 8), (16, 512, 8)]]
matmul_tuned = spvjit.autotune(configs=MATMUL_CONFIGS, key=["M", "N", "K"],
                               prune_configs_by={"early_config_prune": _fits})(matmul)
