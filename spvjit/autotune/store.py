"""Autotuning results on disk: one entry per (device, kernel) in the shared cache store.

Keyed by the device, the kernel's source key and the compiler fingerprint (the same
inputs as the compiled-kernel cache), then by the tuning key values, so the next process
starts tuned and an edited kernel is tuned again.
"""
from __future__ import annotations

import hashlib

from ..cache import Store, compiler_fingerprint, device_fingerprint

AUTOTUNE = Store("autotune")


def entry_name(jitfn, caps) -> str:
    h = hashlib.sha256(f"{jitfn.cache_key} {device_fingerprint(caps)} {compiler_fingerprint()}".encode())
    return f"{jitfn.__name__}-{h.hexdigest()[:24]}"


def load(name: str) -> dict:
    return AUTOTUNE.read(name) or {}      # missing or damaged: tune again


def save(name: str, data: dict) -> None:
    AUTOTUNE.write(name, data)
