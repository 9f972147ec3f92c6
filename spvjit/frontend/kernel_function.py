"""What the compiler needs of a kernel: its function, its source, and a key for its source.

`jit.JITFunction` (the `@spvjit.kernel` object) extends this with specialization and
launch; the frontend inlines calls to any `KernelFunction`, and the compile cache keys on
`cache_key`, which a dependency finder computes once from the function itself (as Triton's
`JITFunction.cache_key`): its source, the sources of the kernels it can call (transitively)
and the values of the `sl.constexpr` globals they read.  Rebinding such a global after the
first launch is not seen, as in Triton.
"""
from __future__ import annotations

import ast
import hashlib
from functools import cached_property

from ..language.core import constexpr
from .source import FunctionSource


class KernelFunction:
    def __init__(self, fn):
        self.fn = fn
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__
        self.__module__ = fn.__module__
        self.__wrapped__ = fn

    @cached_property
    def source(self) -> FunctionSource:
        return FunctionSource.of(self.fn)

    @cached_property
    def cache_key(self) -> str:
        """sha256 of the source closure: this kernel, the kernels it calls, constexpr globals."""
        h = hashlib.sha256()
        for text in self._source_closure(set()):
            h.update(text.encode())
            h.update(b"\0")
        return h.hexdigest()

    def _source_closure(self, seen: set) -> list[str]:
        if id(self) in seen:
            return []
        seen.add(id(self))
        out = [self.source.text]
        glb = getattr(self.fn, "__globals__", {})
        for node in ast.walk(self.source.tree):
            target = None
            if isinstance(node, ast.Name):
                target = glb.get(node.id)
                if isinstance(target, constexpr):      # its value is compiled in: part of the key
                    out.append(f"{node.id}={target.value!r}")
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                mod = glb.get(node.value.id)
                target = getattr(mod, node.attr, None) if mod is not None else None
            if isinstance(target, KernelFunction):
                out += target._source_closure(seen)
        return out
