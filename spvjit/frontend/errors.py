"""CompilationError: the one exception the frontend raises for bad kernel source."""
from __future__ import annotations


class CompilationError(Exception):
    """A kernel the frontend cannot accept.

    The message names file, line and column and quotes the source line, e.g.::

        kernels.py:14:8: error: name 'offz' is not defined
            x = sl.load(x_ptr + offz)
                                ^
    """

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 col: int | None = None, source_line: str | None = None):
        self.message = message
        self.file, self.line, self.col, self.source_line = file, line, col, source_line
        super().__init__(self._format())

    def _format(self) -> str:
        if self.file is None or self.line is None:
            return f"error: {self.message}"
        text = f"{self.file}:{self.line}:{self.col or 0}: error: {self.message}"
        if self.source_line is not None:
            stripped = self.source_line.rstrip("\n")
            text += f"\n    {stripped}"
            if self.col is not None:
                text += "\n    " + " " * self.col + "^"
        return text


class SemanticError(Exception):
    """Raised by the semantic layer without a location; the code generator adds one."""
