"""Autotuning results on disk: one JSON file per (device, kernel), written atomically.

Keyed by the device, the kernel's source closure and the compiler fingerprint
(the same inputs as the compiled-kernel cache), then by the tuning key values,
so the next process starts tuned and an edited kernel is tuned again.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile

from ..cache import cache_dir, compiler_fingerprint, source_closure


def store_path(jitfn, caps):
    h = hashlib.sha256()
    for text in source_closure(jitfn):
        h.update(text.encode())
    h.update(repr((caps.name, caps.driver_info, caps.api_version)).encode())
    h.update(compiler_fingerprint().encode())
    return cache_dir() / "autotune" / f"{jitfn.__name__}-{h.hexdigest()[:24]}.json"


def load(path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}      # missing or damaged: tune again


def save(path, data: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass
