"""The semantic context that `sl.*` calls and tensor operators build IR through.

The frontend activates one semantic object while it walks a kernel; the language layer
only looks it up here, so the language never imports the frontend.  The stack is
per thread: two threads may compile kernels at the same time.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

_local = threading.local()


def _stack() -> list:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def current():
    stack = _stack()
    if not stack:
        raise RuntimeError("spvjit.language functions can only be called inside a @spvjit.kernel")
    return stack[-1]


@contextmanager
def active(sem):
    stack = _stack()
    stack.append(sem)
    try:
        yield sem
    finally:
        stack.pop()
