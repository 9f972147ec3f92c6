"""The settings registry: one reader of SPVJIT_* variables, one truthiness rule, README in step."""
import re
from pathlib import Path

import pytest

import spvjit
from spvjit import knobs

ROOT = Path(__file__).resolve().parent.parent


def test_no_spvjit_variable_is_read_outside_the_registry():
    # reading: os.environ.get / os.getenv / os.environ[...] with an SPVJIT_ name (writing for a
    # child process, e.g. env={...}, is allowed)
    reader = re.compile(r"""(environ\.get|getenv)\(\s*["']SPVJIT_|environ\[\s*["']SPVJIT_\w+["']\s*\](?!\s*=[^=])""")
    offenders = []
    for folder in ("spvjit", "benchmarks", "tests", "examples"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == ROOT / "spvjit" / "knobs.py":
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if reader.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "read these through spvjit.knobs.get:\n" + "\n".join(offenders)


def test_every_variable_named_in_the_code_is_registered():
    named = set()
    for path in (ROOT / "spvjit").rglob("*.py"):
        named |= set(re.findall(r"SPVJIT_[A-Z_]+[A-Z]", path.read_text(encoding="utf-8")))
    assert named <= set(knobs.KNOBS), sorted(named - set(knobs.KNOBS))


@pytest.mark.parametrize("text,value", [("", False), ("0", False), ("false", False), ("No", False),
                                        ("off", False), ("1", True), ("TRUE", True), ("yes", True),
                                        ("on", True)])
def test_one_truthiness_rule(monkeypatch, text, value):
    for name in ("SPVJIT_PRINT_AUTOTUNING", "SPVJIT_DISABLE_COOPMAT", "SPVJIT_INTERPRET"):
        monkeypatch.setenv(name, text)
        assert knobs.get(name) is value


def test_bad_values_name_the_variable(monkeypatch):
    monkeypatch.setenv("SPVJIT_INTERPRET", "maybe")
    with pytest.raises(spvjit.SettingError, match="SPVJIT_INTERPRET='maybe'"):
        knobs.get("SPVJIT_INTERPRET")
    monkeypatch.setenv("SPVJIT_DUMP", "ir,asm")
    with pytest.raises(spvjit.SettingError, match="unknown item 'asm'"):
        knobs.get("SPVJIT_DUMP")
    monkeypatch.setenv("SPVJIT_PROGRAMS_PER_WORKGROUP", "0")
    with pytest.raises(spvjit.LaunchError, match="SPVJIT_PROGRAMS_PER_WORKGROUP"):
        knobs.get("SPVJIT_PROGRAMS_PER_WORKGROUP")


def test_unset_gives_defaults(monkeypatch):
    for name in knobs.KNOBS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/x")
    assert knobs.get("SPVJIT_CACHE_DIR") == "/x/spvjit"
    assert knobs.get("SPVJIT_DUMP") == ()
    assert knobs.get("SPVJIT_PROGRAMS_PER_WORKGROUP") == 256


def test_readme_shows_the_registry_table():
    assert knobs.table() in (ROOT / "README.md").read_text(encoding="utf-8")
