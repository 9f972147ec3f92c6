"""SPIR-V module builder, grammar tables (generated) and SPIRV-Tools helpers.

    from spvjit.codegen.spirv import ModuleBuilder, validate, disassemble
"""

from .builder import ModuleBuilder
from .tools import SpirvToolNotFoundError, SpirvValidationError, disassemble, find_tool, validate

__all__ = ["ModuleBuilder", "SpirvValidationError", "SpirvToolNotFoundError", "disassemble",
           "find_tool", "validate"]
