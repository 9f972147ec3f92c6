"""Lowering of the tile IR to invocations and SPIR-V (see spirv/ for the module builder)."""
