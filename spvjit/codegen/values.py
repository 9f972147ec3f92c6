"""What the lowering produces per IR value, and the error it raises."""
from __future__ import annotations

from dataclasses import dataclass


class LoweringError(Exception):
    """The IR is valid but this lowering cannot express it (message names the source line)."""


@dataclass
class LV:
    """A lowered value: uniform (scalar) or blocked registers; pointers carry their binding.

    A value in cooperative-matrix layout (coopmat.CoopValue) has `coop` set, and `regs` is
    None unless some use also needs its blocked registers."""
    regs: list[int] | None
    uniform: bool
    binding: int | None = None
    coop: object | None = None
