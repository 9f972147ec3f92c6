"""Triton-compatibility suite: every test runs in the numpy interpreter and on the device.

CI runs the interpreter variant in full and a stratified subset of the device variant
(at most DEVICE_PER_TEST parametrizations of each test function, spread evenly over its
parameter list); `SPVJIT_TRITON_FULL=1` runs every device parametrization too.
"""
from __future__ import annotations

import math
import os

DEVICE_PER_TEST = 12


def pytest_collection_modifyitems(config, items):
    from spvjit import knobs
    if knobs.get("SPVJIT_TRITON_FULL"):
        return
    here = os.path.dirname(__file__)
    groups: dict[str, list] = {}
    for it in items:
        cs = getattr(it, "callspec", None)
        if str(it.fspath).startswith(here) and cs is not None and cs.params.get("mode") == "device":
            groups.setdefault(f"{it.fspath}::{it.originalname}", []).append(it)
    drop = set()
    for group in groups.values():
        if len(group) > DEVICE_PER_TEST:
            stride = len(group) / DEVICE_PER_TEST
            keep = {math.floor(i * stride) for i in range(DEVICE_PER_TEST)}
            drop.update(id(it) for i, it in enumerate(group) if i not in keep)
    if drop:
        config.hook.pytest_deselected(items=[it for it in items if id(it) in drop])
        items[:] = [it for it in items if id(it) not in drop]
