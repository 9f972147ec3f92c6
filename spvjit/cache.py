"""On-disk cache of compiled kernels under SPVJIT_CACHE_DIR (default $XDG_CACHE_HOME/spvjit).

The key hashes everything the SPIR-V depends on: the kernel's source and the
sources of the kernels it calls (transitively), its specialization (constexpr
values, argument dtypes, num_warps), the device, and a fingerprint of the
compiler itself.  Entries are written atomically (temp file + rename); an
entry that does not parse is recompiled, never trusted.
"""
from __future__ import annotations

import ast
import base64
import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

from .codegen import lowering_env
from .codegen.compiler import CompiledKernel
from .codegen.memory import Binding, PushMember
from .ir.types import DTYPES

FORMAT = 5


def cache_dir() -> Path:
    env = os.environ.get("SPVJIT_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "spvjit"


@lru_cache(maxsize=1)
def compiler_fingerprint() -> str:
    """Hash of the compiler's own sources: editing spvjit invalidates old entries."""
    root = Path(__file__).parent
    h = hashlib.sha256()
    for sub in ("frontend", "ir", "codegen", "language"):
        for p in sorted((root / sub).rglob("*.py")):
            h.update(p.name.encode())
            h.update(p.read_bytes())
    h.update((root / "cache.py").read_bytes())
    return h.hexdigest()[:16]


def source_closure(jitfn, seen=None) -> list[str]:
    """Sources of `jitfn` and of every @spvjit.kernel it can call (by name lookup), plus the
    values of the sl.constexpr globals they read."""
    from .jit import JITFunction
    seen = seen if seen is not None else set()
    if id(jitfn) in seen:
        return []
    seen.add(id(jitfn))
    out = [jitfn.source.text]
    glb = getattr(jitfn.fn, "__globals__", {})
    from .language.core import constexpr
    for node in ast.walk(jitfn.source.tree):
        target = None
        if isinstance(node, ast.Name):
            target = glb.get(node.id)
            if isinstance(target, constexpr):      # its value is compiled in: part of the key
                out.append(f"{node.id}={target.value!r}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            mod = glb.get(node.value.id)
            target = getattr(mod, node.attr, None) if mod is not None else None
        if isinstance(target, JITFunction):
            out += source_closure(target, seen)
    return out


def kernel_key(jitfn, spec, device_caps, extra: tuple = ()) -> str:
    h = hashlib.sha256()
    for text in source_closure(jitfn):
        h.update(text.encode())
        h.update(b"\0")
    h.update(repr(spec.key()).encode())
    from .jit import JITFunction
    for _, (kind, value) in sorted(spec.kinds.items()):
        if kind == "constexpr" and isinstance(value, JITFunction):   # a kernel passed as an argument
            for text in source_closure(value):
                h.update(text.encode())
    caps = device_caps
    h.update(repr((caps.name, caps.driver_info, caps.api_version, caps.subgroup_size,
                   caps.max_shared_memory, tuple(extra), lowering_env())).encode())
    h.update(compiler_fingerprint().encode())
    return h.hexdigest()


def _to_json(ck: CompiledKernel) -> dict:
    return {"format": FORMAT, "name": ck.name, "spirv": base64.b64encode(ck.spirv).decode(),
            "workgroup_size": ck.workgroup_size, "push_size": ck.push_size,
            "scratch_bytes": ck.scratch_bytes, "capabilities": sorted(ck.capabilities),
            "program_loop": ck.program_loop,
            "bindings": [[b.index, b.name, b.dtype.name, b.storage.name, b.atomic, b.texel, b.vec, b.read_only,
                          b.write_only]
                         for b in ck.bindings],
            "push": [[m.name, m.dtype.name, m.offset] for m in ck.push_members]}


def _from_json(d: dict) -> CompiledKernel:
    if d.get("format") != FORMAT:
        raise ValueError("cache format changed")
    spirv = base64.b64decode(d["spirv"], validate=True)
    if len(spirv) < 20 or len(spirv) % 4 or spirv[:4] != b"\x03\x02\x23\x07":
        raise ValueError("not a SPIR-V module")
    # by keyword: a field added to Binding must never shift what a cached entry means
    bindings = [Binding(index=i, name=n, dtype=DTYPES[dt], storage=DTYPES[st], atomic=bool(at), texel=bool(tx),
                        vec=int(vec), read_only=bool(ro), write_only=bool(wo))
                for i, n, dt, st, at, tx, vec, ro, wo in d["bindings"]]
    push = [PushMember(n, DTYPES[dt], int(off)) for n, dt, off in d["push"]]
    return CompiledKernel(d["name"], spirv, int(d["workgroup_size"]), bindings, push,
                          int(d["push_size"]), int(d["scratch_bytes"]), frozenset(d["capabilities"]),
                          bool(d["program_loop"]))


def load(key: str) -> CompiledKernel | None:
    path = cache_dir() / "kernels" / f"{key}.json"
    try:
        with open(path, encoding="utf-8") as f:
            return _from_json(json.load(f))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None     # corrupt or truncated: the caller recompiles and overwrites it


def store(key: str, ck: CompiledKernel) -> None:
    folder = cache_dir() / "kernels"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(_to_json(ck), f)
        os.replace(tmp, folder / f"{key}.json")
    except OSError:
        pass    # a read-only or full cache directory only costs a recompile next time
