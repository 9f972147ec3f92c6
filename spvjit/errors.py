"""The public exceptions, at the bottom of the import graph so that every layer can raise them.

- `CompilationError`: kernel source the compiler cannot accept (names file:line:col).
- `LaunchError`: bad launch arguments (count, type, a value that does not fit, a bad grid).
- `DeviceError`: a Vulkan failure or a feature the device lacks (one line, no traceback).
- `SettingError`: an `SPVJIT_*` environment variable with a value out of range.
"""
from __future__ import annotations


class CompilationError(Exception):
    """A kernel the compiler cannot accept.

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


class LaunchError(TypeError):
    """Bad launch arguments: wrong count, unsupported type, a value that does not fit."""


class DeviceError(RuntimeError):
    """A Vulkan runtime failure (no loader, no device, a failing vk call, a missing feature)."""


class SemanticError(Exception):
    """Raised by the language and semantic layers without a location; the frontend's code
    generator turns it into a CompilationError naming the kernel source line."""


class SettingError(LaunchError, ValueError):
    """An SPVJIT_* environment variable whose value is malformed or out of range.

    A LaunchError, because it surfaces when a kernel is launched or compiled."""
