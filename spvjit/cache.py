"""One on-disk store for everything spvjit caches, under SPVJIT_CACHE_DIR.

Compiled kernels (`kernels/`), autotuning results (`autotune/`) and the llama runner's
tuning tables (`tuning/`) share it: entries are JSON files written atomically (temp file +
rename), read back only when they are regular files of bounded size that parse as a JSON
object, and the directory is created private to the user.  Kernel entries also record
their own key and a digest of their content, and their bindings and push-constant size
are cross-checked against the SPIR-V module's own decorations: anything wrong means
recompile and overwrite, with one warning, never a dispatch of an entry we cannot trust.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path

from . import knobs
from .codegen.compiler import CompiledKernel
from .codegen.memory import Binding, PushMember
from .codegen.spirv.interface import module_interface
from .ir.types import DTYPES

FORMAT = 6
MAX_ENTRY_BYTES = 64 << 20       # far above any real entry; bounds what a damaged file costs


def cache_dir() -> Path:
    return Path(knobs.get("SPVJIT_CACHE_DIR"))


@lru_cache(maxsize=1)
def compiler_fingerprint() -> str:
    """Hash of the compiler's own sources: editing spvjit invalidates old entries."""
    root = Path(__file__).parent
    h = hashlib.sha256()
    for sub in ("frontend", "ir", "codegen", "language"):
        for p in sorted((root / sub).rglob("*.py")):
            h.update(p.name.encode())
            h.update(p.read_bytes())
    for name in ("cache.py", "compiler.py", "knobs.py"):
        h.update((root / name).read_bytes())
    return h.hexdigest()[:16]


_fingerprints: dict[int, tuple[object, str]] = {}    # id(caps) -> (caps, fingerprint): every launch asks


def device_fingerprint(caps) -> str:
    """Identity of a device and driver for cached results: what compiles or tunes differently."""
    known = _fingerprints.get(id(caps))
    if known is not None and known[0] is caps:
        return known[1]
    text = repr((caps.name, caps.driver_info, caps.api_version, caps.subgroup_size, caps.max_shared_memory))
    fingerprint = hashlib.sha256(text.encode()).hexdigest()[:16]
    _fingerprints[id(caps)] = (caps, fingerprint)     # holding caps keeps its id from being reused
    return fingerprint


class Store:
    """One namespace (a folder) of JSON entries in the cache directory."""

    def __init__(self, namespace: str, folder: Path | None = None):
        self.namespace = namespace
        self._folder = None if folder is None else Path(folder)

    @property
    def folder(self) -> Path:
        """The namespace's folder in SPVJIT_CACHE_DIR, read at each use (tests change it)."""
        return self._folder if self._folder is not None else cache_dir() / self.namespace

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    def read(self, name: str) -> dict | None:
        """The entry as a dict; None when missing or unusable (a damaged one warns once)."""
        path = self.path(name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            return self._damaged(path, f"cannot be opened ({e.strerror})")
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):        # a FIFO would block, /dev/zero never ends
                return self._damaged(path, "is not a regular file")
            if st.st_size > MAX_ENTRY_BYTES:
                return self._damaged(path, f"is {st.st_size} bytes, over the {MAX_ENTRY_BYTES} limit")
            data = f.read(MAX_ENTRY_BYTES + 1)
        try:
            entry = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return self._damaged(path, "is not valid JSON")
        if not isinstance(entry, dict):
            return self._damaged(path, "is not a JSON object")
        return entry

    def _damaged(self, path: Path, why: str) -> None:
        warnings.warn(f"spvjit cache entry {path} {why}; it will be rebuilt", RuntimeWarning, stacklevel=4)
        return None

    def write(self, name: str, entry: dict, must_succeed: bool = False) -> None:
        """Atomically replace the entry.  A read-only or full cache only costs a rebuild later,
        unless `must_succeed` (results a user asked to save): then the OSError propagates."""
        folder = self.folder
        tmp = None
        try:
            if not _usable_dir(folder, self._folder is None):
                if must_succeed:
                    raise PermissionError(f"cache directory {folder} is writable by other users")
                return
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(entry, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path(name))
            tmp = None
        except OSError:
            if must_succeed:
                raise
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass


_warned_dirs: set[str] = set()


def _usable_dir(folder: Path, in_cache_dir: bool) -> bool:
    """Create the cache folders private to the user; refuse (with one warning) a cache
    directory that other users can write, since its entries become code we run."""
    dirs = (cache_dir(), folder) if in_cache_dir else (folder,)
    for d in dirs:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    for d in dirs:
        st = d.stat()
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
            if str(d) not in _warned_dirs:
                _warned_dirs.add(str(d))
                warnings.warn(f"spvjit cache directory {d} is writable by other users; not using it "
                              "(chmod go-w it, or set SPVJIT_CACHE_DIR)", RuntimeWarning, stacklevel=4)
            return False
    return True


# ---- compiled kernels ----------------------------------------------------------------
KERNELS = Store("kernels")


def disk_key(kernel_cache_key: str, spec_key: tuple) -> str:
    """The on-disk name of one specialization: the kernel's source key, the same specialization
    key the in-memory cache uses, and the compiler's fingerprint."""
    h = hashlib.sha256()
    h.update(kernel_cache_key.encode())
    h.update(repr(spec_key).encode())
    h.update(compiler_fingerprint().encode())
    return h.hexdigest()


def _digest(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _to_json(key: str, ck: CompiledKernel) -> dict:
    body = {"format": FORMAT, "key": key, "name": ck.name, "spirv": base64.b64encode(ck.spirv).decode(),
            "workgroup_size": ck.workgroup_size, "push_size": ck.push_size,
            "scratch_bytes": ck.scratch_bytes, "capabilities": sorted(ck.capabilities),
            "program_loop": ck.program_loop,
            "bindings": [[b.index, b.name, b.dtype.name, b.storage.name, b.atomic, b.texel, b.vec, b.read_only,
                          b.write_only]
                         for b in ck.bindings],
            "push": [[m.name, m.dtype.name, m.offset] for m in ck.push_members]}
    return {**body, "digest": _digest(body)}


def _expect(cond: bool, what: str):
    if not cond:
        raise ValueError(what)


def _from_json(key: str, d: dict) -> CompiledKernel:
    body = {k: v for k, v in d.items() if k != "digest"}
    _expect(d.get("digest") == _digest(body), "does not match its digest")
    _expect(d.get("key") == key, "was stored under another key")
    _expect(isinstance(d.get("spirv"), str), "has no SPIR-V")
    spirv = base64.b64decode(d["spirv"], validate=True)
    ints = ("workgroup_size", "push_size", "scratch_bytes")
    _expect(all(type(d.get(k)) is int and d[k] >= 0 for k in ints), "has malformed sizes")
    _expect(isinstance(d.get("bindings"), list) and isinstance(d.get("push"), list), "has malformed lists")
    # by keyword: a field added to Binding must never shift what a cached entry means
    bindings = [Binding(index=int(i), name=str(n), dtype=DTYPES[dt], storage=DTYPES[st], atomic=bool(at),
                        texel=bool(tx), vec=int(vec), read_only=bool(ro), write_only=bool(wo))
                for i, n, dt, st, at, tx, vec, ro, wo in d["bindings"]]
    push = [PushMember(str(n), DTYPES[dt], int(off)) for n, dt, off in d["push"]]
    decorated, push_bytes = module_interface(spirv)
    _expect(decorated == {b.index for b in bindings}, "lists other bindings than its SPIR-V declares")
    _expect(push_bytes == d["push_size"], "has another push-constant size than its SPIR-V")
    return CompiledKernel(str(d["name"]), spirv, d["workgroup_size"], bindings, push, d["push_size"],
                          d["scratch_bytes"], frozenset(map(str, d["capabilities"])), bool(d["program_loop"]))


def load_kernel(key: str) -> CompiledKernel | None:
    entry = KERNELS.read(key)
    if entry is None or entry.get("format") != FORMAT:
        return None         # missing, unreadable, or from another spvjit version: rebuild quietly
    try:
        return _from_json(key, entry)
    except ValueError as e:
        return KERNELS._damaged(KERNELS.path(key), str(e))
    except (KeyError, TypeError, IndexError, AttributeError):
        return KERNELS._damaged(KERNELS.path(key), "has a malformed field")


def store_kernel(key: str, ck: CompiledKernel) -> None:
    KERNELS.write(key, _to_json(key, ck))
