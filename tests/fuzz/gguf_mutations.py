"""Mutated GGUF files, built from a valid one: the raw material of the GGUF fuzzer.

The seed file is read with ``gguf.GGUFReader`` (independent of spvjit's reader) into a
:class:`Doc` (metadata entries, tensor headers, the data blob). :func:`serialize` writes a
Doc back to bytes with its own encoder, so entries can hold values of any type, and
records *marks*: where each structural field sits (counts, lengths, type ids, dimensions,
offsets). Mutations either edit the Doc (a key of the wrong type, a hostile
hyperparameter, a retyped or misplaced tensor) or the bytes (truncation at every mark,
huge values in count fields, byte flips).

Every mutation is named by a ``(family, index)`` pair, so a failing case reproduces from
its name alone: ``mutant(seed, family, index)``.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gguf

VT = gguf.GGUFValueType
_FMT = {VT.UINT8: "<B", VT.INT8: "<b", VT.UINT16: "<H", VT.INT16: "<h", VT.UINT32: "<I", VT.INT32: "<i",
        VT.FLOAT32: "<f", VT.BOOL: "<?", VT.UINT64: "<Q", VT.INT64: "<q", VT.FLOAT64: "<d"}


@dataclass
class KV:
    key: str
    vtype: int
    value: Any
    item_type: int | None = None


@dataclass
class Tensor:
    name: str
    ne: tuple[int, ...]  # GGUF order
    ttype: int
    offset: int


@dataclass
class Doc:
    kvs: list[KV]
    tensors: list[Tensor]
    data: bytes  # everything after the tensor headers' aligned end
    alignment: int = 32
    version: int = 3
    trailing: bytes = b""


@dataclass
class Mark:
    offset: int
    size: int  # bytes of the field (4 or 8 for numbers), 0 for a plain boundary
    kind: str  # "count", "type", "ndims", "dim", "offset", "boundary"
    label: str


@dataclass
class Encoded:
    data: bytes
    marks: list[Mark] = field(default_factory=list)


def read_doc(path: Path) -> Doc:
    r = gguf.GGUFReader(path)
    kvs = []
    for key, f in r.fields.items():
        if key.startswith("GGUF."):
            continue
        vtype = VT(f.types[0])
        item = VT(f.types[1]) if vtype == VT.ARRAY else None
        kvs.append(KV(key, vtype, f.contents(), item))
    tensors = [Tensor(t.name, tuple(int(d) for d in t.shape), int(t.tensor_type), int(t.data_offset) - r.data_offset)
               for t in r.tensors]
    data = Path(path).read_bytes()[r.data_offset:]
    return Doc(kvs, tensors, data, alignment=r.alignment)


def _value(buf: bytearray, marks: list[Mark], vtype: int, value: Any, item: int | None, label: str) -> None:
    if vtype == VT.STRING:
        raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        marks.append(Mark(len(buf), 8, "count", f"{label} string length"))
        buf += struct.pack("<Q", len(raw)) + raw
    elif vtype == VT.ARRAY:
        marks.append(Mark(len(buf), 4, "type", f"{label} item type"))
        buf += struct.pack("<I", item)
        marks.append(Mark(len(buf), 8, "count", f"{label} array length"))
        buf += struct.pack("<Q", len(value))
        if item == VT.STRING:
            for i, v in enumerate(value):
                _value(buf, marks if i < 4 or i == len(value) - 1 else [], item, v, None, f"{label}[{i}]")
        else:
            buf += b"".join(struct.pack(_FMT[item], v) for v in value)
    else:
        buf += struct.pack(_FMT[vtype], value)


def serialize(doc: Doc) -> Encoded:
    buf, marks = bytearray(), []
    buf += b"GGUF" + struct.pack("<I", doc.version)
    marks.append(Mark(len(buf), 8, "count", "tensor count"))
    buf += struct.pack("<Q", len(doc.tensors))
    marks.append(Mark(len(buf), 8, "count", "key count"))
    buf += struct.pack("<Q", len(doc.kvs))
    for kv in doc.kvs:
        marks.append(Mark(len(buf), 0, "boundary", f"key {kv.key}"))
        _value(buf, marks, VT.STRING, kv.key, None, f"key {kv.key} name")
        marks.append(Mark(len(buf), 4, "type", f"key {kv.key} type"))
        buf += struct.pack("<I", kv.vtype)
        marks.append(Mark(len(buf), 0, "boundary", f"key {kv.key} value"))
        _value(buf, marks, kv.vtype, kv.value, kv.item_type, f"key {kv.key}")
    for t in doc.tensors:
        marks.append(Mark(len(buf), 0, "boundary", f"tensor {t.name}"))
        _value(buf, marks, VT.STRING, t.name, None, f"tensor {t.name} name")
        marks.append(Mark(len(buf), 4, "ndims", f"tensor {t.name} n_dims"))
        buf += struct.pack("<I", len(t.ne))
        for i, d in enumerate(t.ne):
            marks.append(Mark(len(buf), 8, "dim", f"tensor {t.name} ne[{i}]"))
            buf += struct.pack("<Q", d)
        marks.append(Mark(len(buf), 4, "type", f"tensor {t.name} type"))
        buf += struct.pack("<I", t.ttype)
        marks.append(Mark(len(buf), 8, "offset", f"tensor {t.name} offset"))
        buf += struct.pack("<Q", t.offset)
    buf += bytes(-len(buf) % doc.alignment)
    marks.append(Mark(len(buf), 0, "boundary", "tensor data"))
    for t in doc.tensors:
        if len(buf) + t.offset < len(buf) + len(doc.data):
            marks.append(Mark(len(buf) + t.offset, 0, "boundary", f"tensor {t.name} data"))
    buf += doc.data + doc.trailing
    return Encoded(bytes(buf), marks)


# -- document-level mutations ------------------------------------------------------------

# One value of each GGUF type: a key the runner reads gets each one that is not its own.
SWAP_VALUES = [
    (VT.UINT8, 7, None), (VT.INT32, -1, None), (VT.UINT32, 3, None), (VT.UINT64, 2**63, None),
    (VT.INT64, -(2**62), None), (VT.FLOAT32, float("nan"), None), (VT.FLOAT64, float("inf"), None),
    (VT.FLOAT32, -1.0, None), (VT.BOOL, True, None), (VT.STRING, "x\x1b[31m", None),
    (VT.STRING, "", None), (VT.ARRAY, [1, 2, 3], VT.INT32), (VT.ARRAY, ["a", "b"], VT.STRING),
    (VT.ARRAY, [0.5], VT.FLOAT32), (VT.ARRAY, [], VT.UINT8),
]

# Hostile values for the hyperparameters, by key suffix.
HOSTILE = {
    "block_count": [0, 2**31, 2**32 - 1, 3, 1],
    "embedding_length": [0, 1, 63, 2**32 - 1, 128],
    "feed_forward_length": [0, 2**31, 97],
    "attention.head_count": [0, 3, 5, 2**31, 64],
    "attention.head_count_kv": [0, 3, 4, 8],
    "context_length": [0, 2**32 - 1],
    "rope.dimension_count": [0, 3, 2**31, 64],
    "rope.freq_base": [float("nan"), 0.0, -10000.0, float("inf"), 1e-45],
    "attention.layer_norm_rms_epsilon": [float("nan"), 0.0, -1e-5, float("inf")],
    "tokenizer.ggml.bos_token_id": [2**32 - 1, 10**6, 280],
    "tokenizer.ggml.eos_token_id": [2**32 - 1, 10**6],
    "tokenizer.ggml.unknown_token_id": [2**31],
    "general.alignment": [0, 3, 1, 64, 2**31],
    "tokenizer.ggml.model": ["gpt2", "bert", "", "llama\x00"],
    "tokenizer.ggml.pre": ["nonexistent", "", "llama3"],
}


def _typed(vtype: int, value: Any) -> tuple[int, Any]:
    """Keep a hostile value's type plausible: floats stay float32, ints fit their type."""
    if isinstance(value, float):
        return VT.FLOAT32, value
    if isinstance(value, str):
        return VT.STRING, value
    return (VT.UINT32 if 0 <= value < 2**32 else VT.UINT64), value


def doc_mutations(doc: Doc) -> list[tuple[str, Any]]:
    """(label, function Doc -> Doc) for every deterministic document-level mutation."""
    out: list[tuple[str, Any]] = []

    def edit_kv(key, **changes):
        def apply(d):
            kvs = [replace(kv, **changes) if kv.key == key else kv for kv in d.kvs]
            if not any(kv.key == key for kv in d.kvs):
                kvs.append(KV(key, **changes))
            return replace(d, kvs=kvs)
        return apply

    from spvjit.models.llama.metadata_types import expected_kind

    for kv in doc.kvs:
        if expected_kind(kv.key) is None:
            continue
        for vtype, value, item in SWAP_VALUES:
            if (vtype, item) != (kv.vtype, kv.item_type):
                out.append((f"key {kv.key} as {gguf.GGUFValueType(vtype).name.lower()} {value!r}",
                            edit_kv(kv.key, vtype=vtype, value=value, item_type=item)))
        out.append((f"drop key {kv.key}", lambda d, k=kv.key: replace(d, kvs=[x for x in d.kvs if x.key != k])))
        if kv.vtype == VT.ARRAY and len(kv.value) > 1:
            out.append((f"key {kv.key} one item short", edit_kv(kv.key, value=kv.value[:-1])))
            out.append((f"key {kv.key} halved", edit_kv(kv.key, value=kv.value[: len(kv.value) // 2])))
            out.append((f"key {kv.key} one item more", edit_kv(kv.key, value=kv.value + kv.value[-1:])))
    for kv in doc.kvs:
        suffix = kv.key.split(".", 1)[1] if not kv.key.startswith("tokenizer.") else kv.key
        for value in HOSTILE.get(suffix, []):
            vtype, value = _typed(kv.vtype, value)
            out.append((f"key {kv.key} = {value!r}", edit_kv(kv.key, vtype=vtype, value=value, item_type=None)))
    arch = next((kv.value for kv in doc.kvs if kv.key == "general.architecture"), "llama")
    for value in HOSTILE["general.alignment"]:
        out.append((f"general.alignment = {value}", edit_kv("general.alignment", vtype=VT.UINT32, value=value)))
    out.append(("vocab_size one more than tokens",
                edit_kv(f"{arch}.vocab_size", vtype=VT.UINT32, value=_count(doc, "tokenizer.ggml.tokens") + 1)))
    out.append(("duplicate first key", lambda d: replace(d, kvs=d.kvs + d.kvs[:1])))

    for i, t in enumerate(doc.tensors):
        def edit_t(d, i=i, **changes):
            ts = list(d.tensors)
            ts[i] = replace(ts[i], **changes)
            return replace(d, tensors=ts)
        for ttype in (0, 1, 2, 3, 8, 12, 14, 30, 4, 99, 2**31):
            if ttype != t.ttype:
                out.append((f"tensor {t.name} retyped {ttype}", lambda d, e=edit_t, q=ttype: e(d, ttype=q)))
        for off in (t.offset + 1, t.offset + 32, t.offset - 32, 2**64 - 32, 2**63, len(doc.data), 0):
            if off != t.offset and 0 <= off < 2**64:
                out.append((f"tensor {t.name} offset {off}", lambda d, e=edit_t, o=off: e(d, offset=o)))
        for ne in ((), (0,) + t.ne[1:], t.ne[::-1], t.ne + (1,), t.ne + (1, 1, 1, 1),
                   (2**32,) + t.ne[1:], (t.ne[0], 2**62), (t.ne[0] * 2,) + t.ne[1:]):
            if ne != t.ne:
                out.append((f"tensor {t.name} shape {ne}", lambda d, e=edit_t, n=ne: e(d, ne=n)))
        out.append((f"drop tensor {t.name}", lambda d, i=i: replace(d, tensors=d.tensors[:i] + d.tensors[i + 1:])))
    if len(doc.tensors) > 1:
        def swap_offsets(d):
            ts = list(d.tensors)
            ts[0], ts[1] = replace(ts[0], offset=ts[1].offset), replace(ts[1], offset=ts[0].offset)
            return replace(d, tensors=ts)
        out.append(("swap the first two tensor offsets", swap_offsets))
        out.append(("duplicate tensor name",
                    lambda d: replace(d, tensors=[d.tensors[0], replace(d.tensors[1], name=d.tensors[0].name)]
                                      + d.tensors[2:])))
    out.append(("trailing bytes", lambda d: replace(d, trailing=b"\0" * 64)))
    out.append(("version 1", lambda d: replace(d, version=1)))
    out.append(("version 4", lambda d: replace(d, version=4)))
    out.append(("big-endian version", lambda d: replace(d, version=0x03000000)))
    return out


def _count(doc: Doc, key: str) -> int:
    return next((len(kv.value) for kv in doc.kvs if kv.key == key), 0)


# -- byte-level mutations --------------------------------------------------------------------

HUGE = [2**64 - 1, 2**63, 2**62 + 1, 2**32, 2**32 - 1, 2**31, 10**12]


def truncations(enc: Encoded) -> list[tuple[str, bytes]]:
    """The file cut at every mark, and one byte either side of it."""
    out, seen = [], set()
    for m in enc.marks:
        for cut in (m.offset - 1, m.offset, m.offset + 1, m.offset + max(m.size, 1) // 2):
            if 0 <= cut < len(enc.data) and cut not in seen:
                seen.add(cut)
                out.append((f"cut at {cut} ({m.label})", enc.data[:cut]))
    return out


def huge_fields(enc: Encoded) -> list[tuple[Mark, int]]:
    """Every (count, length, dimension, type id or offset field, hostile value) pair."""
    out = []
    for m in enc.marks:
        if not m.size:
            continue
        values = HUGE + [len(enc.data), len(enc.data) + 1, 0]
        if m.size == 4:
            values = [v for v in values if v < 2**32] + [2**32 - 1, 13, 5]
        out += [(m, v) for v in values]
    return out


def set_field(enc: Encoded, mark: Mark, value: int) -> tuple[str, bytes]:
    data = bytearray(enc.data)
    data[mark.offset : mark.offset + mark.size] = value.to_bytes(mark.size, "little")
    return f"{mark.label} = {value}", bytes(data)


def flips(enc: Encoded, rng: random.Random, n: int) -> list[tuple[str, bytes]]:
    """``n`` random byte edits, three in four inside the headers (where parsing happens)."""
    header_end = next(m.offset for m in enc.marks if m.label == "tensor data")
    out = []
    for _ in range(n):
        data = bytearray(enc.data)
        edits = []
        for _ in range(rng.choice((1, 1, 2, 4))):
            pos = rng.randrange(header_end) if rng.random() < 0.75 else rng.randrange(len(data))
            val = rng.choice((rng.randrange(256), data[pos] ^ (1 << rng.randrange(8)), 0xFF, 0x00, 0x80))
            data[pos] = val
            edits.append(f"{pos}={val}")
        out.append((f"flip {' '.join(edits)}", bytes(data)))
    return out
