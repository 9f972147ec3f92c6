"""Lowering of tile IR to SPIR-V (layouts, shared memory, subgroups) and the module builder.

`compile_hooks`: callables run on every CompiledKernel right after it is
built; the test suite registers spirv-val there.
`lowering_env()`: the environment variables that change what the lowering emits; the
in-memory and on-disk kernel caches key on them.
"""
import os

compile_hooks: list = []

LOWERING_ENV = ("SPVJIT_DISABLE_COOPMAT",)


def lowering_env() -> tuple:
    return tuple((name, os.environ.get(name, "")) for name in LOWERING_ENV)
