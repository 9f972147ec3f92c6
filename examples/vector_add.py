"""Vector add on the default Vulkan device, checked against numpy.

    .venv/bin/python examples/vector_add.py [N]
"""
import sys
import time

import numpy as np

import spvjit
import spvjit.language as sl


@spvjit.kernel
def add(x_ptr, y_ptr, out_ptr, n, BLOCK: sl.constexpr):
    pid = sl.program_id(0)
    offs = pid * BLOCK + sl.arange(0, BLOCK)
    mask = offs < n
    x = sl.load(x_ptr + offs, mask=mask, other=0.0)
    sl.store(out_ptr + offs, x + sl.load(y_ptr + offs, mask=mask), mask=mask)


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    x = spvjit.tensor(np.arange(n, dtype=np.float32))
    y = spvjit.tensor(np.ones(n, np.float32))
    out = spvjit.empty_like(x)
    grid = lambda meta: (spvjit.cdiv(n, meta["BLOCK"]),)
    t0 = time.perf_counter()
    add[grid](x, y, out, n, BLOCK=1024)
    t1 = time.perf_counter()
    add[grid](x, y, out, n, BLOCK=1024)
    t2 = time.perf_counter()
    np.testing.assert_allclose(out.numpy(), x.numpy() + 1)
    print(f"vector add of {n} floats: correct; first launch (compile + run) {1e3 * (t1 - t0):.1f} ms, "
          f"second {1e3 * (t2 - t1):.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
