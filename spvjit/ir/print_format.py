"""The text of `print` ops (tl.device_print), in Triton's format, shared by the interpreter
and the device's debug buffer (codegen/debug_print.py):

    pid (x, y, z) idx (i, j) prefix: value            one line per element
    pid (x, y, z) idx (i, j) prefix: (operand k) value   when a print has several values
"""
from __future__ import annotations

import numpy as np

from . import types as T


def triton_prefix(prefix: str, has_args: bool) -> str:
    """Triton's normalization: a prefix with values ends in ': ', a long one starts with ' '."""
    if has_args and not prefix.endswith(" "):
        prefix += " "
    if has_args and not prefix.endswith(": "):
        prefix = prefix[:-1] + ": "
    if len(prefix) > 2 and not prefix.startswith(" "):
        prefix = " " + prefix
    return prefix


def format_value(value, dtype: str, hex_: bool) -> str:
    """One element: `dtype` is an IR dtype name or "ptr" (value: an element offset)."""
    if dtype == "ptr":
        return f"ptr+{int(value)}"
    dt = T.DTYPES[dtype]
    if hex_:
        bits = dt.bits
        if dt.is_float:
            raw = int(np.asarray(value, {16: np.float16, 32: np.float32}[bits]).view(
                {16: np.uint16, 32: np.uint32}[bits])) if dtype != "bf16" else \
                int(np.asarray(value, np.float32).view(np.uint32)) >> 16
        else:
            raw = int(value) & ((1 << bits) - 1)
        return f"0x{raw:0{max(1, bits // 4)}x}"
    if dt.is_float:
        return f"{float(value):f}"
    return str(int(value))


def line(pid, idx, prefix: str, operand: int | None, nvalues: int, text: str) -> str:
    where = f"pid ({pid[0]}, {pid[1]}, {pid[2]}) idx ({', '.join(str(int(i)) for i in idx)})"
    if nvalues == 0:
        return where + triton_prefix(prefix, False)
    tag = f"(operand {operand}) " if nvalues > 1 else ""
    return f"{where}{triton_prefix(prefix, True)}{tag}{text}"


def program_lines(pid, prefix: str, values, dtypes, hex_: bool) -> list[str]:
    """Every line one execution of a print makes in one program (the interpreter's output)."""
    if not values:
        return [line(pid, (), prefix, None, 0, "")]
    out = []
    for k, (v, dt) in enumerate(zip(values, dtypes)):
        arr = np.asarray(v)
        for idx in np.ndindex(*arr.shape):
            out.append(line(pid, idx, prefix, k, len(values), format_value(arr[idx], dt, hex_)))
    return out
