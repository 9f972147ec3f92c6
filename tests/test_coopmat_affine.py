"""coopmat_affine: which pointer tiles are provably strided matrices (pure IR analysis)."""
import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit.codegen import axis_info
from spvjit.codegen.coopmat_affine import COLUMN_MAJOR, ROW_MAJOR, analyze, strided

pytestmark = pytest.mark.coopmat


@spvjit.kernel
def ptr_kernel(p, out, M, K, off, BM: sl.constexpr, BK: sl.constexpr, FORM: sl.constexpr):
    rm = sl.program_id(0) * BM + sl.arange(0, BM)
    rk = sl.arange(0, BK)
    if FORM == "row":
        ptrs = p + rm[:, None] * K + rk[None, :]
    elif FORM == "col":
        ptrs = p + rk[None, :] * K + rm[:, None]
    elif FORM == "wrapped":           # Triton's tutorial: rows wrapped with % M
        ptrs = p + (rm % M)[:, None] * K + rk[None, :]
    elif FORM == "offset":
        ptrs = p + off + rm[:, None] * K + rk[None, :]
    elif FORM == "scaled_cols":       # every other column: no unit stride
        ptrs = p + rm[:, None] * K + 2 * rk[None, :]
    else:                             # a constant row stride of 24
        ptrs = p + rm[:, None] * 24 + rk[None, :]
    sl.store(out + rm[:, None] * BK + rk[None, :], sl.load(ptrs))


def _ptr_tile(form, div):
    a = spvjit.empty((64, 64), np.float32)
    ir = ptr_kernel.ir_module(a, a, 64, 64, 16, BM=16, BK=16, FORM=form)
    load = next(op for op in ir.walk() if op.name == "load")
    return load.operands[0], axis_info.analyze(ir, div)


def test_row_and_column_major_tiles():
    ptr, axis = _ptr_tile("row", {"K": 16})
    s = strided(ptr, axis, 4, 8, 8)
    assert s.layout == ROW_MAJOR and s.stride.value is None and s.stride.div >= 16
    ptr, axis = _ptr_tile("col", {"K": 16})
    assert strided(ptr, axis, 4, 8, 8).layout == COLUMN_MAJOR


def test_constant_stride_is_known():
    ptr, axis = _ptr_tile("const", {})
    s = strided(ptr, axis, 4, 8, 8)
    assert s.layout == ROW_MAJOR and s.stride.value == 24


def test_not_strided_or_not_aligned():
    for form in ("wrapped", "scaled_cols"):
        ptr, axis = _ptr_tile(form, {"K": 16})
        assert strided(ptr, axis, 4, 8, 8) is None, form
    ptr, axis = _ptr_tile("row", {})               # K of unknown divisibility: stride may be odd
    assert analyze(ptr, axis) is not None and strided(ptr, axis, 4, 8, 8) is None
    ptr, axis = _ptr_tile("offset", {"K": 16})     # an offset of unknown divisibility
    assert strided(ptr, axis, 4, 8, 8) is None
    ptr, axis = _ptr_tile("offset", {"K": 16, "off": 16})
    assert strided(ptr, axis, 4, 8, 8) is not None
    # a stride of 24 one-byte elements: aligned enough for rows of 8 bytes (8-byte alignment),
    # not for rows of 16 (Vulkan then wants 16 bytes)
    ptr, axis = _ptr_tile("const", {})
    assert strided(ptr, axis, 1, 8, 8) is not None and strided(ptr, axis, 1, 8, 16) is None
