"""Recorded launch graphs: record once, replay with values read from a host-updated tensor."""
import numpy as np
import pytest

import spvjit
import spvjit.language as sl


@spvjit.kernel
def add_step(x_ptr, step_ptr, n, BLOCK: sl.constexpr):
    offs = sl.program_id(0) * BLOCK + sl.arange(0, BLOCK)
    mask = offs < n
    step = sl.load(step_ptr)                  # changes between replays: read, not pushed
    sl.store(x_ptr + offs, sl.load(x_ptr + offs, mask=mask) * 2.0 + step, mask=mask)


def test_record_then_replay_sees_new_step_values():
    n = 1000
    x = spvjit.tensor(np.zeros(n, np.float32))
    step = spvjit.tensor(np.zeros(1, np.float32))
    grid = (spvjit.cdiv(n, 256),)
    with spvjit.record() as graph:
        for _ in range(3):                    # three dependent dispatches per replay
            add_step[grid](x, step, n, BLOCK=256)
    assert graph.dispatches == 3
    np.testing.assert_array_equal(x.numpy(), 0)   # recording runs nothing
    want = np.zeros(n, np.float32)
    for s in (1.0, 0.5, -2.0):
        step.view_host()[0] = s
        graph.replay()
        for _ in range(3):
            want = want * 2 + s
        np.testing.assert_array_equal(x.numpy(), want)   # exact: small binary fractions
    graph.close()
    with pytest.raises(spvjit.DeviceError, match="replay"):
        graph.replay()


def test_replay_with_timestamps_reports_each_dispatch():
    n = 4096
    x = spvjit.tensor(np.ones(n, np.float32))
    step = spvjit.tensor(np.zeros(1, np.float32))
    with spvjit.record(timestamps=True) as graph:
        add_step[(4,)](x, step, n, BLOCK=1024)
        add_step[(4,)](x, step, n, BLOCK=1024)
    graph.replay()
    assert len(graph.elapsed_ns) == 2 and all(t > 0 for t in graph.elapsed_ns)
    np.testing.assert_array_equal(x.numpy(), 4)


def test_record_does_not_nest():
    with spvjit.batch():
        with pytest.raises(RuntimeError, match="nested"):
            with spvjit.record():
                pass
