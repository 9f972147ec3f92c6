"""Lowering of tile IR to SPIR-V (layouts, shared memory, subgroups) and the module builder.

`compile_hooks`: callables run on every CompiledKernel right after it is
built; the test suite registers spirv-val there.
"""
compile_hooks: list = []
