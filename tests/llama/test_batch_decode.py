"""Batched decoding (DeviceLlama.decode_batch): several sequences, each in its own KV
cache slot at its own position, through one recorded step.

The batched kernels run, per row, the same code as for one vector (the row only moves
the base addresses), so a sequence must get bit for bit the logits it gets alone:
these tests compare with exact equality, not a tolerance. The reference model checks
that those logits are right at all (float32 rounding only: the bound of
test_device_model.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from spvjit.models.llama import ReferenceModel, load_gguf
from spvjit.models.llama.device_model import DeviceLlama

PROMPTS = [[1, 5, 9, 20, 3], [1, 7], [1, 260, 261, 262, 263, 264, 265, 266, 267], [1, 100, 42]]


@pytest.fixture(scope="module")
def tiny_batch(tmp_path_factory):
    from .conftest import write_tiny_gguf

    path = write_tiny_gguf(tmp_path_factory.mktemp("batch") / "tiny.gguf", seed=5)
    mf = load_gguf(path)
    model = DeviceLlama(mf, max_ctx=64, slots=4, tuning=None)
    yield mf, model
    model.close()


def _alone(model: DeviceLlama, prompt: list[int], steps: int, slot: int) -> tuple[list[int], list[np.ndarray]]:
    """Greedy tokens and per-step logits of one sequence decoded as a batch of one."""
    model.reset(slot)
    best, logits = model.forward_both(prompt, 0, slot=slot)
    toks, rows = [best], [logits]
    for i in range(steps):
        b, lg = model.decode_batch([toks[-1]], [len(prompt) + i], [slot], logits=True)
        toks.append(int(b[0]))
        rows.append(lg[0])
    return toks, rows


def test_batch_rows_equal_alone_and_reference(tiny_batch):
    mf, model = tiny_batch
    steps = 6
    alone = [_alone(model, p, steps, slot=0) for p in PROMPTS]
    # all four together, in slots given out of order, joining at different steps
    slots = [2, 0, 3, 1]
    model.reset()
    cur, got_toks, got_rows = {}, {}, {}
    for k, (p, s) in enumerate(zip(PROMPTS, slots)):
        best, lg = model.forward_both(p, 0, slot=s)
        cur[k], got_toks[k], got_rows[k] = best, [best], [lg]
    pos = {k: len(p) for k, p in enumerate(PROMPTS)}
    for step in range(steps):
        active = [k for k in range(len(PROMPTS)) if step >= k - 1 or len(got_toks[k]) > steps]
        active = [k for k in active if len(got_toks[k]) <= steps]
        best, lg = model.decode_batch([cur[k] for k in active], [pos[k] for k in active],
                                      [slots[k] for k in active], logits=True)
        for r, k in enumerate(active):
            cur[k] = int(best[r])
            pos[k] += 1
            got_toks[k].append(cur[k])
            got_rows[k].append(lg[r])
    for k in range(len(PROMPTS)):   # the late joiners catch up alone
        while len(got_toks[k]) <= steps:
            b, lg = model.decode_batch([cur[k]], [pos[k]], [slots[k]], logits=True)
            cur[k] = int(b[0])
            pos[k] += 1
            got_toks[k].append(cur[k])
            got_rows[k].append(lg[0])
    ref = ReferenceModel(mf, max_ctx=64)
    for k, p in enumerate(PROMPTS):
        assert got_toks[k] == alone[k][0], f"sequence {k}"
        for a, b in zip(got_rows[k], alone[k][1]):
            np.testing.assert_array_equal(a, b)
        want = ref.forward(p + got_toks[k][:-1], 0)[len(p) - 1:]
        assert np.abs(np.stack(got_rows[k]) - want).max() < 2e-3
        assert [int(t) for t in want.argmax(1)] == got_toks[k]


def test_batch_of_one_is_the_single_sequence_path(tiny_batch):
    """A model with one slot (what `spvjit run` builds) decodes the same tokens."""
    mf, model = tiny_batch
    single = DeviceLlama(mf, max_ctx=64, tuning=None)
    try:
        for p in PROMPTS[:2]:
            assert single.generate_greedy(p, 8) == _alone(model, p, 7, slot=3)[0]
    finally:
        single.close()


def test_decode_batch_rejects_bad_rows(tiny_batch):
    _, model = tiny_batch
    model.reset()
    model.forward([1, 2], 0, slot=1)
    with pytest.raises(ValueError, match="two rows in one slot"):
        model.decode_batch([3, 4], [2, 2], [1, 1])
    with pytest.raises(ValueError, match="outside the cached range"):
        model.decode_batch([3], [5], [1])
    with pytest.raises(ValueError, match="slot 4"):
        model.forward([1], 0, slot=4)
