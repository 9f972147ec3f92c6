"""The benchmark scripts keep working: each kernel case runs at a tiny size (the cases check
their own results against numpy) and the command line writes JSON."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def kernels():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_kernels_cli", BENCH / "kernels.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize("case,args", [("case_add", (4096,)), ("case_softmax", (8, 256)),
                                       ("case_layer_norm", (8, 256)), ("case_matvec", (64, 256, np.float32)),
                                       ("case_matvec", (64, 256, np.float16)),
                                       ("case_matmul", (32, 32, 32, np.float32))])
def test_cases_run_and_report(kernels, case, args):
    unit, ours, ref = getattr(kernels, case)(*args)[:3]
    assert unit in ("GB/s", "GFLOP/s") and ours > 0 and ref > 0


def test_matmul_blocks_flag_and_json(kernels, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(kernels, "SIZES", {**kernels.SIZES, "matmul": [(32, 32, 32), (32, 32, 32)]})
    out = tmp_path / "k.json"
    assert kernels.main(["--quick", "--only", "matmul", "--matmul-blocks", "16x32x16", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert [r["size"] for r in rows] == ["32^3 f32", "32^3 f16"]
    assert all(r["config"] == "BM: 16, BN: 32, BK: 16" and r["spvjit"] > 0 for r in rows)
    with pytest.raises(SystemExit):
        kernels.main(["--matmul-blocks", "3x4"])
    assert "expected three powers of two" in capsys.readouterr().err


def test_attention_compile_script(needs_device):
    """benchmarks/attention_compile.py runs (its own process: it turns Mesa's shader cache off)
    and checks the forward against numpy; bad flags are one usage line and exit code 2."""
    import subprocess
    script = str(BENCH / "attention_compile.py")
    run = subprocess.run([sys.executable, script, "--reps", "1", "--only", "attn_bwd_dq", "--ctx", "32",
                          "--speed-ctx", "32", "--speed-bwd", "16x32,32x16"], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "attn_bwd_dq" in run.stdout and "WRONG" not in run.stdout and "ratio" in run.stdout
    assert "backward N_CTX=32" in run.stdout, run.stdout
    bad = subprocess.run([sys.executable, script, "--blocks", "16"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--blocks: expected pairs" in bad.stderr
    bad = subprocess.run([sys.executable, script, "--speed-bwd", "32x128"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "--speed-bwd: expected two pairs" in bad.stderr


def test_shared_transpose_script(needs_device):
    """benchmarks/shared_transpose.py runs (its own process: Mesa's shader cache off), checks
    its result, and refuses a bad --sizes with one usage line and exit code 2."""
    import subprocess
    script = str(BENCH / "shared_transpose.py")
    run = subprocess.run([sys.executable, script, "--sizes", "16x16", "--reps", "1"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "16x16" in run.stdout and "WRONG" not in run.stdout + run.stderr
    bad = subprocess.run([sys.executable, script, "--sizes", "16x3"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "expected BMxBN powers of two" in bad.stderr
