"""Which live tensor a raw address (`Tensor.data_ptr()`) belongs to.

`data_ptr()` hands out an integer that kernels turn back into a pointer
(`tl.load(ptrs + g).to(tl.pointer_type(tl.float16))`, Triton's tutorial 08).  On the
device the integer is the buffer's device address and the GPU follows it by itself; the
numpy interpreter has no such memory, so every tensor whose address was taken is
recorded here (weakly: the registry never keeps a tensor alive, exactly as a device
address does not) and the interpreter maps each address back to the tensor's array.

This is a bottom-layer module (numpy only) so that the runtime's tensors, the
interpreter's host tensors and the interpreter's executor can all reach it.
"""
from __future__ import annotations

import bisect
import threading
import weakref

import numpy as np

_lock = threading.RLock()      # a weakref callback may run inside a locked section (GC)
_starts: list[int] = []           # sorted base addresses
_entries: dict[int, tuple] = {}   # base -> (nbytes, weakref to the tensor)


def register(address: int, nbytes: int, tensor) -> None:
    """Record that [address, address + nbytes) is `tensor`'s memory while it lives."""
    address = int(address)
    with _lock:
        if address in _entries and _entries[address][1]() is tensor:
            return
        _forget_locked(address)
        bisect.insort(_starts, address)
        _entries[address] = (int(nbytes), weakref.ref(tensor, lambda _r, a=address: forget(a, _r)))


def forget(address: int, ref=None) -> None:
    with _lock:
        entry = _entries.get(address)
        if entry is not None and (ref is None or entry[1] is ref):
            _forget_locked(address)


def _forget_locked(address: int) -> None:
    if _entries.pop(address, None) is not None:
        i = bisect.bisect_left(_starts, address)
        if i < len(_starts) and _starts[i] == address:
            _starts.pop(i)


def live_tensors() -> list:
    """Every registered tensor still alive (strong references: the caller pins them)."""
    with _lock:
        refs = [entry[1] for entry in _entries.values()]
    return [t for t in (r() for r in refs) if t is not None]


def resolve(addresses: np.ndarray, elem_bytes: int):
    """[(tensor, element offsets, positions)] for a flat uint64 array of byte addresses:
    which registered live tensor holds each whole element, grouped by tensor.  An address in
    no live tensor, or one not aligned to the element size within its tensor, raises
    IndexError naming it (the interpreter's bounds check for raw pointers)."""
    addresses = np.asarray(addresses, np.uint64).reshape(-1)
    with _lock:
        starts = np.asarray(_starts, np.uint64)
        entries = [_entries[int(s)] for s in _starts]
    if addresses.size == 0:
        return []
    idx = np.searchsorted(starts, addresses, side="right").astype(np.int64) - 1
    out = []
    for i in np.unique(idx):
        where = np.nonzero(idx == i)[0]
        first = int(addresses[where[0]])
        tensor = entries[i][1]() if i >= 0 else None
        if tensor is None:
            raise IndexError(f"address {first:#x} is not inside any live tensor whose data_ptr() was taken")
        nbytes = entries[i][0]
        rel = addresses[where] - starts[i]
        bad = (rel + np.uint64(elem_bytes) > np.uint64(nbytes)) | (rel % np.uint64(elem_bytes) != 0)
        if np.any(bad):
            a = int(addresses[where[np.argmax(bad)]])
            raise IndexError(f"address {a:#x} lies outside (or misaligned within) the tensor at "
                             f"{int(starts[i]):#x} of {nbytes} bytes")
        out.append((tensor, (rel // np.uint64(elem_bytes)).astype(np.int64), where))
    return out
