"""Every SPVJIT_* environment variable, declared once with its type, default and meaning.

All of spvjit reads its settings through `get(name)`; a test fails if an SPVJIT_* variable
is read anywhere else.  One truthiness rule for flags: unset, "", "0", "false", "no" and
"off" mean off; "1", "true", "yes" and "on" mean on (any case); anything else is a
SettingError naming the variable.  Values are read at each call, so tests and users may
change them at run time.  The README's table of settings is `table()`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import SettingError

_OFF = ("", "0", "false", "no", "off")
_ON = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Knob:
    name: str
    kind: str                 # "flag" | "int" | "str" | "list" | "path"
    default: object
    help: str
    minimum: int = 1          # for "int"
    choices: tuple = ()       # for "list": the allowed items
    lowering: bool = False    # changes the SPIR-V a kernel compiles to (part of cache keys)
    shown_default: str = ""   # the default as the README table shows it, where it is not a value


KNOBS: dict[str, Knob] = {k.name: k for k in (
    Knob("SPVJIT_INTERPRET", "flag", False, "run kernels in the numpy interpreter (no device needed)"),
    Knob("SPVJIT_DUMP", "list", (), "print each compiled kernel: tile IR, IR annotated with its "
         "lowering choices, SPIR-V disassembly", choices=("ir", "lowered", "spirv")),
    Knob("SPVJIT_DEVICE", "str", "", "the Vulkan device to use, by index or by part of its name"),
    Knob("SPVJIT_CACHE_DIR", "path", None, "compiled kernels and tuning results",
         shown_default="$XDG_CACHE_HOME/spvjit"),
    Knob("SPVJIT_DISABLE_COOPMAT", "flag", False, "never use cooperative matrices", lowering=True),
    Knob("SPVJIT_DISABLE_COOPMAT2", "flag", False, "never use VK_NV_cooperative_matrix2 (flexible "
         "matrix dimensions, reductions, per-element operations, conversions); VK_KHR_cooperative_matrix "
         "stays", lowering=True),
    Knob("SPVJIT_CPU_COOPMAT", "flag", False, "CPU drivers (Mesa 26.1's lavapipe): compile for the cooperative "
         "matrices they emulate; off by default, as there they compile and run slower than the blocked "
         "path (scripts/coopmat-env turns it on, to test that path)", lowering=True),
    Knob("SPVJIT_DISABLE_TUNING", "flag", False, "ignore the block sizes `spvjit tune` stored"),
    Knob("SPVJIT_PRINT_AUTOTUNING", "flag", False, "print each autotuning result"),
    Knob("SPVJIT_DEBUG", "flag", False, "check tl.device_assert on the device too, as Triton's "
         "TRITON_DEBUG=1 (the interpreter always checks)", lowering=True),
    Knob("SPVJIT_PROGRAMS_PER_WORKGROUP", "int", 256, "CPU drivers: at most this many programs "
         "run in turn in one workgroup", lowering=True),   # their loops share lavapipe's loop budget
    Knob("SPVJIT_DOT_UNROLL_LIMIT", "int", 8192, "a `dot` with more multiply-adds per invocation "
         "than this runs as a loop over k instead of unrolled, and, on CPU drivers, so does one above a "
         "quarter of it whose operands are both loads the loop reads itself, with at least four trips "
         "of the loop, or, in a kernel whose several dots together reach three quarters of it, one from a quarter "
         "of it whose B the loop reads, with two trips (codegen/dot_loop_plan.py)", minimum=0,
         lowering=True),
    Knob("SPVJIT_WHOLE_TILES", "flag", False, "CPU drivers, where a program runs on one subgroup "
         "(every kernel before Mesa 26): keep tiles of more than 256 registers per lane whole instead "
         "of running the program over slices of them "
         "(codegen/chunking.py): several times the compile time, for up to 15% more speed on some "
         "kernels (the tutorial matmul at 64x64x32)", lowering=True),
    Knob("SPVJIT_REQUIRE_COOPMAT", "flag", False, "tests: fail, instead of skipping, where the "
         "device lacks cooperative matrices"),
    Knob("SPVJIT_DIFF_EXAMPLES", "int", 50, "tests: hypothesis examples per differential test"),
    # read by scripts/coopmat-env (bash), declared here so that every setting has one table
    Knob("SPVJIT_COOPMAT_ROOT", "str", "/var/cache/spvjit/coopmat-root", "scripts/coopmat-env: "
         "where the Debian 13 root with Mesa 26.1 lavapipe is built (Debian 12 hosts)"),
    Knob("SPVJIT_COOPMAT_MIRROR", "str", "", "scripts/coopmat-env: the Debian mirror to build it from",
         shown_default="the host's apt mirror"),
    Knob("SPVJIT_TRITON_FULL", "flag", False, "tests: run every device parametrization of the "
         "Triton-compatibility suite (tests/triton_compat), not the default subset, and tutorial 06's "
         "backward at Triton's own block sizes on CPU drivers that neither cut nor spread its tiles "
         "(minutes of compile there; with `SPVJIT_CPU_COOPMAT=1`)"),
)}


def get(name: str):
    """The typed value of an SPVJIT_* variable (its default when unset)."""
    knob = KNOBS.get(name)
    if knob is None:
        raise KeyError(f"{name} is not a registered spvjit setting (see spvjit/knobs.py)")
    text = os.environ.get(name)
    if text is None or (text == "" and knob.kind != "flag"):
        if knob.kind == "path" and knob.default is None:
            return _default_cache_dir()
        return knob.default
    if knob.kind == "flag":
        low = text.strip().lower()
        if low in _OFF:
            return False
        if low in _ON:
            return True
        raise SettingError(f"{name}={text!r}: expected 1/true/yes/on or 0/false/no/off")
    if knob.kind == "int":
        return _parse_int(name, text, knob.minimum)
    if knob.kind == "list":
        items = tuple(t.strip() for t in text.split(",") if t.strip())
        bad = [t for t in items if knob.choices and t not in knob.choices]
        if bad:
            raise SettingError(f"{name}={text!r}: unknown item {bad[0]!r}; choose from "
                               + ", ".join(knob.choices))
        return items
    return text


def _default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "spvjit")


def env_int(name: str, default: int) -> int:
    """A positive integer from a variable spvjit does not own (LP_NUM_THREADS), same rule."""
    text = os.environ.get(name)
    return _parse_int(name, text, 1) if text else default


def _parse_int(name: str, text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise SettingError(f"{name}={text!r}: expected an integer >= {minimum}")
    return value


def lowering_env() -> tuple:
    """The settings that change what the lowering emits: cache keys include them."""
    return tuple((k.name, get(k.name)) for k in KNOBS.values() if k.lowering)


def table() -> str:
    """The Markdown table of settings that the README shows (a test keeps them equal)."""
    rows = ["| variable | kind | default | meaning |", "|---|---|---|---|"]
    for k in KNOBS.values():
        default = k.shown_default or (
            "off" if k.kind == "flag" else (",".join(k.default) or "none") if k.kind == "list"
            else (k.default if k.default != "" else "first device"))
        kind = k.kind if not k.choices else "list of " + "/".join(k.choices)
        rows.append(f"| `{k.name}` | {kind} | {default} | {k.help} |")
    return "\n".join(rows)
