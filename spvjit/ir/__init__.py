"""Tile IR: types, ops, printer, parser, verifier and passes.

    from spvjit.ir import parse, print_kernel, verify, run_passes
    k = parse(text); verify(k); run_passes(k); print(print_kernel(k))
"""
from .core import Block, Builder, KernelIR, Loc, Operation, Param, Value
from .parser import IRParseError, parse, parse_type
from .passes import DEFAULT_PASSES, canonicalize, cse, dce, fold_constants, run_passes
from .printer import print_kernel
from .types import DTYPES, DType, PointerType, TileType, dtype_from_numpy, scalar
from .verifier import IRVerificationError, verify

__all__ = [
    "Block", "Builder", "KernelIR", "Loc", "Operation", "Param", "Value",
    "IRParseError", "parse", "parse_type", "print_kernel", "IRVerificationError", "verify",
    "DEFAULT_PASSES", "run_passes", "canonicalize", "cse", "dce", "fold_constants",
    "DTYPES", "DType", "PointerType", "TileType", "dtype_from_numpy", "scalar",
]
