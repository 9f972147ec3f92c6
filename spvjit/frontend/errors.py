"""Frontend errors: CompilationError (defined in spvjit.errors) and SemanticError."""
from __future__ import annotations

from ..errors import CompilationError

__all__ = ["CompilationError", "SemanticError"]


class SemanticError(Exception):
    """Raised by the semantic layer without a location; the code generator adds one."""
