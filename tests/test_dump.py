"""SPVJIT_DUMP=ir,spirv,lowered prints each compiled kernel; the dumps are readable and parse."""
import os
import re
import subprocess
import sys

import spvjit.ir as ir

SCRIPT = """
import numpy as np, spvjit, spvjit.language as sl

@spvjit.kernel
def rowsum(x_ptr, y_ptr, n, BLOCK: sl.constexpr):
    cols = sl.arange(0, BLOCK)
    x = sl.load(x_ptr + sl.program_id(0) * n + cols, mask=cols < n, other=0.0)
    sl.store(y_ptr + sl.program_id(0), sl.sum(x, axis=0))

x = spvjit.tensor(np.ones((4, 64), np.float32)); y = spvjit.empty(4)
rowsum[(4,)](x, y, 64, BLOCK=64)
assert (y.numpy() == 64).all()
"""


def _dump(tmp_path, flags):
    env = {**os.environ, "SPVJIT_DUMP": flags, "SPVJIT_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("SPVJIT_INTERPRET", None)
    script = tmp_path / "dump_me.py"          # kernels must live in a file (the frontend reads it)
    script.write_text(SCRIPT)
    p = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stderr


def test_ir_dump_parses_back(tmp_path):
    text = _dump(tmp_path, "ir")
    assert text.startswith("kernel @rowsum(")
    assert ir.print_kernel(ir.parse(text)) == text.strip() + "\n"


def test_lowered_dump_shows_layouts_and_choices(tmp_path):
    text = _dump(tmp_path, "lowered")
    assert re.search(r"load .*// W=\d+ v=\d regs=\d+; (vec4|scalar) (texel fetch|storage load)", text)
    assert re.search(r"reduce .*// uniform; per-lane fold", text)
    body = text[text.index("kernel @"):]
    ir.parse(body)            # the notes are comments: the module still parses


def test_spirv_dump_is_a_disassembly(tmp_path):
    text = _dump(tmp_path, "spirv")
    assert "OpEntryPoint GLCompute" in text and "OpFunctionEnd" in text
