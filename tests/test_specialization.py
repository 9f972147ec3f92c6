"""Integer arguments equal to 1 compile as the constant 1 (Triton's unit-stride specialization),
unless `do_not_specialize` names them; results stay right either way."""
import numpy as np
import pytest

import spvjit
import spvjit.language as sl
from spvjit.ir import types as T


@spvjit.kernel
def strided_copy(src, dst, stride, BLOCK: sl.constexpr):
    offs = sl.arange(0, BLOCK)
    sl.store(dst + offs, sl.load(src + offs * stride))


@spvjit.jit(do_not_specialize=["stride"])
def strided_copy_unspecialized(src, dst, stride, BLOCK: sl.constexpr):
    offs = sl.arange(0, BLOCK)
    sl.store(dst + offs, sl.load(src + offs * stride))


@spvjit.jit(do_not_specialize=[2])
def strided_copy_by_position(src, dst, stride, BLOCK: sl.constexpr):
    offs = sl.arange(0, BLOCK)
    sl.store(dst + offs, sl.load(src + offs * stride))


def _args(stride):
    x = np.arange(64 * 3, dtype=np.float32)
    return x, spvjit.tensor(x), spvjit.empty((64,), np.float32)


@pytest.mark.parametrize("stride", [1, 3])
@pytest.mark.parametrize("kern", [strided_copy, strided_copy_unspecialized, strided_copy_by_position])
def test_strided_copy_matches_numpy(mode, kern, stride):
    x, src, dst = _args(stride)
    kern = spvjit.interpret(kern) if mode == "interpreter" else kern
    kern[(1,)](src, dst, stride, BLOCK=64)
    np.testing.assert_array_equal(dst.numpy(), x[::stride][:64])


def test_value_one_becomes_a_constant_in_the_ir():
    x, src, dst = _args(1)
    spec, _ = strided_copy.specialize([src, dst, 1], {"BLOCK": 64})
    assert spec.kinds["stride"] == ("one", T.i32)
    assert [n for n, _ in spec.runtime] == ["src", "dst", "stride"]      # still passed at launch
    text = strided_copy.ir(src, dst, 1, BLOCK=64)
    assert "constant {value = 1}" in text and "%stride" not in text.split("{", 1)[1]
    assert strided_copy.ir(src, dst, 3, BLOCK=64).count("%stride") >= 2


@pytest.mark.parametrize("kern", [strided_copy_unspecialized, strided_copy_by_position])
def test_do_not_specialize_keeps_the_argument(kern):
    x, src, dst = _args(1)
    spec, _ = kern.specialize([src, dst, 1], {"BLOCK": 64})
    assert spec.kinds["stride"] == ("scalar", T.i32)
    assert not spec.divisibility
    spec, _ = kern.specialize([src, dst, 64], {"BLOCK": 64})
    assert not spec.divisibility          # nor divisibility


def test_do_not_specialize_names_a_missing_parameter():
    with pytest.raises(TypeError, match="'strid' is not a parameter name or position"):
        @spvjit.jit(do_not_specialize=["strid"])
        def k(src, stride):
            pass
