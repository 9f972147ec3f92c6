"""A bounded GGUF parser: every count, length and offset is checked before it is used.

GGUF files are untrusted input. ``gguf.GGUFReader`` trusts the counts it reads: a corrupt
array length makes it walk the file element by element, building numpy views for each
(gigabytes for a small file), and a corrupt offset or dimension surfaces as whatever numpy
trips over. This module reads the same format (the ``gguf`` package supplies the type
enums and block sizes) but

* checks every count and length against the bytes left in the file *before* looping or
  allocating, with Python integers (no overflow in products of dimensions);
* keeps metadata values undecoded (key -> type, count, byte range) until they are asked
  for, so rejecting a file costs memory proportional to its key and tensor count only;
* checks each tensor's type, dimensions, alignment, and that tensors follow each other
  the way llama.cpp's own reader requires (each at the previous one's padded end), which
  catches wrapping, overlapping and retyped tensors;
* refuses anything but a regular file (a FIFO would block, /dev/zero would never end).

All errors are :class:`~.errors.ModelError` with one line starting with the file's name.
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError

# GGUF value type ids (gguf.GGUFValueType) -> (name, struct format or None).
_SCALARS = {
    0: ("uint8", "<B"), 1: ("int8", "<b"), 2: ("uint16", "<H"), 3: ("int16", "<h"),
    4: ("uint32", "<I"), 5: ("int32", "<i"), 6: ("float32", "<f"), 7: ("bool", "<B"),
    10: ("uint64", "<Q"), 11: ("int64", "<q"), 12: ("float64", "<d"),
}
STRING, ARRAY, BOOL = 8, 9, 7
INT_TYPES = frozenset({0, 1, 2, 3, 4, 5, 10, 11})
FLOAT_TYPES = frozenset({6, 12})
_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 10: "<u8", 11: "<i8", 12: "<f8"}

MAX_DIMS = 4  # GGML_MAX_DIMS
# Smallest possible encodings, used to bound counts before looping over them.
_MIN_KV_BYTES = 8 + 4 + 1  # key length, value type, a one-byte value
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 8 + 4 + 8  # name length, n_dims, one dimension, type, offset
_HEADER_BYTES = 4 + 4 + 8 + 8  # magic, version, tensor count, key count
# Far beyond any real model (the largest have a few thousand tensors and ~50 keys); a
# cap keeps the bookkeeping for a hostile file small in absolute terms too.
MAX_TENSORS = 1 << 16
MAX_KEYS = 1 << 16


def type_name(vtype: int, item_type: int | None = None) -> str:
    """A GGUF value type as words: ``uint32``, ``string``, ``array of int32``."""
    if vtype == ARRAY:
        return f"array of {type_name(item_type) if item_type is not None else '?'}"
    if vtype == STRING:
        return "string"
    return _SCALARS[vtype][0] if vtype in _SCALARS else f"unknown type {vtype}"


@dataclass(frozen=True)
class Field:
    """One metadata entry, not yet decoded: the value occupies bytes [offset, end)."""

    key: str
    vtype: int
    item_type: int | None  # arrays only
    count: int  # array length; 1 for scalars and strings
    offset: int
    end: int

    @property
    def type_name(self) -> str:
        return type_name(self.vtype, self.item_type)


class TensorInfo:
    """A tensor's header entry, checked against the file; ``data`` views the mmap."""

    __slots__ = ("name", "tensor_type", "ne", "data_offset", "n_bytes", "n_elements", "_buf")

    def __init__(self, name, tensor_type, ne, data_offset, n_bytes, n_elements, buf):
        self.name = name
        self.tensor_type = tensor_type  # gguf.GGMLQuantizationType
        self.ne = ne  # GGUF order: ne[0] is the contiguous axis
        self.data_offset = data_offset  # absolute, in the file
        self.n_bytes = n_bytes
        self.n_elements = n_elements
        self._buf = buf

    @property
    def shape(self) -> np.ndarray:
        """Dimensions in GGUF order (as ``gguf.ReaderTensor.shape``)."""
        return np.array(self.ne, dtype=np.uint64)

    @property
    def raw(self) -> np.ndarray:
        """The tensor's bytes: a 1-D uint8 view of the mapped file (no copy)."""
        return self._buf[self.data_offset : self.data_offset + self.n_bytes]

    @property
    def data(self) -> np.ndarray:
        """Like ``gguf.ReaderTensor.data``: typed values for plain types, else uint8 rows."""
        shape = tuple(reversed(self.ne))
        plain = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I8": "<i1", "I16": "<i2", "I32": "<i4", "I64": "<i8"}
        dtype = plain.get(self.tensor_type.name)
        if dtype is not None:
            return self.raw.view(dtype).reshape(shape)
        return self.raw.reshape(*shape[:-1], -1)


class GGUFFile:
    """A parsed, bounds-checked GGUF file (memory-mapped read-only). Use :func:`open_gguf`."""

    def __init__(self, path: Path, buf: np.ndarray):
        self.path = path
        self.where = path.name
        self.data = buf  # uint8 view of the whole file
        self.size = int(buf.size)
        self.fields: dict[str, Field] = {}
        self.tensors: list[TensorInfo] = []
        self.version = 0
        self.alignment = 32
        self.data_offset = 0
        self.byte_order = "I"  # as gguf.GGUFReader: little-endian only here
        self._parse()

    # -- errors -----------------------------------------------------------------------

    def _error(self, msg: str) -> ModelError:
        return ModelError(f"{self.where}: {msg}")

    def _need(self, pos: int, n: int, what: str) -> None:
        """Fail unless ``n`` bytes starting at ``pos`` lie inside the file."""
        if pos + n > self.size:
            raise self._error(f"file is truncated or corrupt: {what} at byte {pos} takes {n} bytes, "
                              f"but only {max(self.size - pos, 0)} are left in the file")

    # -- primitive reads --------------------------------------------------------------

    def _unpack(self, fmt: str, pos: int, what: str) -> tuple[Any, int]:
        n = struct.calcsize(fmt)
        self._need(pos, n, what)
        return struct.unpack_from(fmt, self.data, pos)[0], pos + n

    def _string(self, pos: int, what: str) -> tuple[str, int]:
        n, pos = self._unpack("<Q", pos, f"{what} length")
        self._need(pos, n, what)
        raw = bytes(self.data[pos : pos + n])
        try:
            return raw.decode("utf-8"), pos + n
        except UnicodeDecodeError:
            raise self._error(f"corrupt: {what} at byte {pos} is not UTF-8") from None

    def _skip_value(self, vtype: int, pos: int, what: str) -> tuple[int | None, int, int]:
        """Validate a value's extent without decoding it: (item type, count, end)."""
        if vtype in _SCALARS:
            n = struct.calcsize(_SCALARS[vtype][1])
            self._need(pos, n, what)
            return None, 1, pos + n
        if vtype == STRING:
            n, p = self._unpack("<Q", pos, f"{what} length")
            self._need(p, n, what)
            return None, 1, p + n
        if vtype != ARRAY:
            raise self._error(f"corrupt: {what} has unknown value type {vtype}")
        item, pos = self._unpack("<I", pos, f"{what} item type")
        count, pos = self._unpack("<Q", pos, f"{what} length")
        if item in _SCALARS:
            size = count * struct.calcsize(_SCALARS[item][1])
            if pos + size > self.size:
                raise self._error(
                    f"file is truncated or corrupt: {what} claims {count} {type_name(item)} items ({size} bytes) "
                    f"at byte {pos}, but only {self.size - pos} bytes are left in the file")
            return item, count, pos + size
        if item == STRING:
            if count * 8 > self.size - pos:  # every string has at least its 8-byte length
                raise self._error(
                    f"file is truncated or corrupt: {what} claims {count} strings at byte {pos}, but only "
                    f"{self.size - pos} bytes are left in the file")
            unpack, data, size = struct.Struct("<Q").unpack_from, self.data, self.size
            for i in range(count):
                if pos + 8 > size:
                    raise self._error(f"file is truncated or corrupt: {what} item {i} at byte {pos} runs past the end ({size} bytes)")
                (n,) = unpack(data, pos)
                pos += 8 + n
                if pos > size:
                    raise self._error(f"file is truncated or corrupt: {what} item {i} ({n} bytes) runs past the end ({size} bytes)")
            return item, count, pos
        if item == ARRAY:
            raise self._error(f"{what} is an array of arrays, which GGUF readers do not support")
        raise self._error(f"corrupt: {what} has unknown array item type {item}")

    # -- the file ---------------------------------------------------------------------

    def _parse(self) -> None:
        if self.size < 4 or bytes(self.data[:4]) != b"GGUF":
            head = bytes(self.data[:4])
            raise self._error(f"not a GGUF file (starts with {head!r}, expected b'GGUF')")
        self._need(0, _HEADER_BYTES, "the GGUF header")
        version = struct.unpack_from("<I", self.data, 4)[0]
        if version & 0xFFFF == 0 and struct.unpack_from(">I", self.data, 4)[0] in (2, 3):
            # Tensor bytes are handed out raw, and the dequantizers and kernels read them
            # as little-endian; a byte-swapped file would decode to garbage.
            raise self._error("byte-swapped (big-endian) GGUF files are not supported")
        if version not in (2, 3):
            raise self._error(f"GGUF version {version} is not supported (supported: 2, 3)")
        self.version = version
        n_tensors, n_kv = struct.unpack_from("<QQ", self.data, 8)
        pos = _HEADER_BYTES
        left = self.size - pos
        if n_kv > MAX_KEYS or n_kv * _MIN_KV_BYTES > left:
            raise self._error(f"file is truncated or corrupt: the header lists {n_kv} metadata keys, more than the "
                              f"{left} bytes after it can hold")
        if n_tensors > MAX_TENSORS or n_tensors * _MIN_TENSOR_INFO_BYTES > left:
            raise self._error(f"file is truncated or corrupt: the header lists {n_tensors} tensors, more than the "
                              f"{left} bytes after it can hold")
        for i in range(n_kv):
            key, pos = self._string(pos, f"metadata key #{i}")
            if key in self.fields:
                raise self._error(f"corrupt: metadata key {key!r} appears twice")
            vtype, pos = self._unpack("<I", pos, f"metadata key {key!r} type")
            item, count, end = self._skip_value(vtype, pos, f"metadata key {key!r}")
            self.fields[key] = Field(key, vtype, item, count, pos, end)
            pos = end
        self._read_alignment()
        infos = []
        names = set()
        for i in range(n_tensors):
            name, pos = self._string(pos, f"tensor name #{i}")
            if name in names:
                raise self._error(f"corrupt: tensor {name!r} appears twice")
            names.add(name)
            n_dims, pos = self._unpack("<I", pos, f"tensor {name!r} dimension count")
            if not 1 <= n_dims <= MAX_DIMS:
                raise self._error(f"tensor {name!r} has {n_dims} dimensions (must be 1 to {MAX_DIMS})")
            self._need(pos, 8 * n_dims + 12, f"tensor {name!r} header")
            ne = struct.unpack_from(f"<{n_dims}Q", self.data, pos)
            ttype, offset = struct.unpack_from("<IQ", self.data, pos + 8 * n_dims)
            pos += 8 * n_dims + 12
            infos.append((name, ne, ttype, offset))
        self.data_offset = -(-pos // self.alignment) * self.alignment
        self._check_tensors(infos)

    def _read_alignment(self) -> None:
        f = self.fields.get("general.alignment")
        if f is None:
            return
        if f.vtype != 4:
            raise self._error(f"metadata key 'general.alignment' has type {f.type_name}, expected uint32")
        a = self.value("general.alignment")
        if a == 0 or a & (a - 1):
            raise self._error(f"metadata key 'general.alignment' is {a}, not a power of two")
        self.alignment = a

    def _check_tensors(self, infos) -> None:
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

        expected = 0  # where the next tensor must start, relative to data_offset
        for name, ne, ttype, offset in infos:
            try:
                qtype = GGMLQuantizationType(ttype)
                block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
            except (ValueError, KeyError):
                raise self._error(f"tensor {name!r} has unknown type id {ttype}") from None
            if 0 in ne:
                raise self._error(f"tensor {name!r} has an empty dimension: {list(ne)}")
            if ne[0] % block_elems:
                raise self._error(f"tensor {name!r}: row length {ne[0]} is not a multiple of "
                                  f"{block_elems}, the block size of type {qtype.name}")
            n_elements = 1
            for d in ne:
                n_elements *= d  # Python integers: no wrap-around
            n_bytes = n_elements // block_elems * block_bytes
            where = f"tensor {name!r} ({qtype.name}, shape {list(reversed(ne))})"
            if n_bytes > self.size:
                raise self._error(f"file is truncated or corrupt: {where} takes {n_bytes} bytes, "
                                  f"more than the whole file ({self.size} bytes)")
            if offset % self.alignment:
                raise self._error(f"corrupt: tensor {name!r} has data offset {offset}, not a multiple "
                                  f"of the alignment {self.alignment}")
            if offset != expected:
                # llama.cpp requires the same: tensors in header order, each at the padded
                # end of the previous one. A wrong offset or a changed type breaks this.
                raise self._error(f"corrupt: tensor {name!r} has data offset {offset}, expected {expected} "
                                  "(the end of the previous tensor; is a tensor's offset, type or shape wrong?)")
            start = self.data_offset + offset
            if start + n_bytes > self.size:
                raise self._error(f"file is truncated: {where} ends at byte {start + n_bytes}, the file has {self.size}")
            self.tensors.append(TensorInfo(name, qtype, tuple(ne), start, n_bytes, n_elements, self.data))
            expected = offset + -(-n_bytes // self.alignment) * self.alignment
        end = self.data_offset + expected
        if self.tensors and self.size > end:
            raise self._error(f"corrupt: {self.size - end} bytes after the last tensor's data "
                              "(is a tensor's type or shape wrong?)")

    # -- metadata values --------------------------------------------------------------

    def value(self, key: str) -> Any:
        """The decoded value of ``key``: int, float, bool, str, or a list of those."""
        f = self.fields[key]
        what = f"metadata key {key!r}"
        if f.vtype == STRING:
            return self._string(f.offset, what)[0]
        if f.vtype in _SCALARS:
            v = struct.unpack_from(_SCALARS[f.vtype][1], self.data, f.offset)[0]
            return self._bool(v, what) if f.vtype == BOOL else v
        start = f.offset + 12  # item type and count
        if f.item_type == STRING:
            out, pos = [], start
            for i in range(f.count):
                s, pos = self._string(pos, f"{what} item {i}")
                out.append(s)
            return out
        arr = np.frombuffer(self.data, dtype=_NUMPY.get(f.item_type, "<u1"), count=f.count, offset=start)
        if f.item_type == BOOL:
            return [self._bool(int(v), what) for v in arr]
        return arr.tolist()

    def _bool(self, v: int, what: str) -> bool:
        if v not in (0, 1):
            raise self._error(f"corrupt: {what} is a bool with byte value {v} (must be 0 or 1)")
        return bool(v)


def open_gguf(path: str | os.PathLike[str]) -> GGUFFile:
    """Open and parse ``path``; ModelError (one line, naming the file) if it is unusable."""
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ModelError(f"{path}: no such model file") from None
    except PermissionError:
        raise ModelError(f"{path}: cannot read the model file: permission denied") from None
    except OSError as e:
        raise ModelError(f"{path}: cannot open the model file: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ModelError(f"{path}: is {_kind_of(st.st_mode)}, not a model file")
        if st.st_size == 0:
            raise ModelError(f"{path.name}: not a GGUF file (the file is empty)")
        try:
            mm = mmap.mmap(fd, st.st_size, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as e:
            raise ModelError(f"{path}: cannot map the model file: {e}") from None
    finally:
        os.close(fd)
    return GGUFFile(path, np.frombuffer(mm, dtype=np.uint8))


def _kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"
