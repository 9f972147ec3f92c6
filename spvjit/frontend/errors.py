"""Frontend errors: CompilationError (defined in spvjit.errors) and SemanticError."""
from __future__ import annotations

from ..errors import CompilationError, SemanticError

__all__ = ["CompilationError", "SemanticError"]
