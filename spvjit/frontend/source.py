"""Source of a kernel function: its AST, file and line offsets for error messages."""
from __future__ import annotations

import ast
import inspect
import linecache
import textwrap
from dataclasses import dataclass
from functools import cached_property

from ..ir.core import Loc
from .errors import CompilationError


@dataclass
class FunctionSource:
    fn: object
    file: str
    first_line: int       # line number in `file` of the first source line
    indent: int           # columns removed by dedent
    text: str

    @classmethod
    def of(cls, fn) -> "FunctionSource":
        try:
            lines, first = inspect.getsourcelines(fn)
            file = inspect.getsourcefile(fn) or inspect.getfile(fn)
        except (OSError, TypeError) as e:
            raise CompilationError(f"cannot read the source of {getattr(fn, '__name__', fn)!r}: {e}; "
                                   "kernels must be defined in a file") from None
        raw = "".join(lines)
        dedented = textwrap.dedent(raw)
        indent = len(lines[0]) - len(lines[0].lstrip()) if lines else 0
        return cls(fn, file, first, indent, dedented)

    @cached_property
    def tree(self) -> ast.FunctionDef:
        mod = ast.parse(self.text)
        node = mod.body[0]
        if not isinstance(node, ast.FunctionDef):
            raise CompilationError("@spvjit.kernel must decorate a plain `def` function", self.file, self.first_line)
        return node

    def loc(self, node: ast.AST) -> Loc:
        line = self.first_line + getattr(node, "lineno", 1) - 1
        return Loc(self.file, line, getattr(node, "col_offset", 0) + self.indent)

    def error(self, message: str, node: ast.AST | None) -> CompilationError:
        if node is None:
            return CompilationError(message, self.file, self.first_line, 0, linecache.getline(self.file, self.first_line))
        loc = self.loc(node)
        return CompilationError(message, loc.file, loc.line, loc.col, linecache.getline(loc.file, loc.line))
