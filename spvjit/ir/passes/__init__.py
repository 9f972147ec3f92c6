"""Cleanup passes over the tile IR, each `KernelIR -> KernelIR` (in place).

    run_passes(kernel)                       # DEFAULT_PASSES, verifying after each
    run_passes(kernel, [canonicalize, dce])  # a chosen pipeline

The passes only use values that dominate their uses, so the result is
valid SSA; `run_passes` verifies after every pass to catch a pass bug at
the pass that made it.
"""
from __future__ import annotations

from ..core import KernelIR
from ..verifier import IRVerificationError, verify
from .canonical import canonicalize
from .subexpressions import cse
from .dead_code import dce
from .dot_accumulate import accumulate_dots
from .fold import fold_constants

# canonicalize first, so splat/broadcast of constants become constants fold can use (and
# accumulate_dots can see a dot's zero accumulator); once more after cse, since folded and
# merged constants expose `x + 0` and friends
DEFAULT_PASSES = (canonicalize, fold_constants, accumulate_dots, cse, canonicalize, dce)


def run_passes(kernel: KernelIR, passes=DEFAULT_PASSES) -> KernelIR:
    for p in passes:
        kernel = p(kernel)
        try:
            verify(kernel)
        except IRVerificationError as e:
            raise IRVerificationError(f"after pass {p.__name__}: {e}") from None
    return kernel


__all__ = ["DEFAULT_PASSES", "run_passes", "accumulate_dots", "canonicalize", "cse", "dce", "fold_constants"]
