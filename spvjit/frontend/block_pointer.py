"""Block pointers (`sl.make_block_ptr`, `sl.advance`, loads and stores through them).

As in Triton's semantic layer, a block pointer is an immutable compile-time object holding
scalar IR values: the base pointer, the tensor's shape and strides, the block's offsets,
plus the static block shape and order.  A load or store through it is desugared here into a
pointer tile `base + sum_d (offset_d + arange(block_d)) * stride_d` and, for the dimensions
named in `boundary_check`, a mask `0 <= offset_d + i < shape_d`; so nothing below the
frontend knows block pointers.  Loops carry one by its scalar fields (`fields` / `rebuild`).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import types as T
from ..language.core import tensor
from .errors import SemanticError
from .semantic import is_number, unwrap

PADDINGS = ("", "zero", "nan")


@dataclass(frozen=True)
class BlockPointer:
    base: tensor                  # scalar ptr<dtype>
    shape: tuple                  # scalar i32 tensors, one per dimension
    strides: tuple
    offsets: tuple
    block_shape: tuple[int, ...]  # static
    order: tuple[int, ...]        # static; a layout hint in Triton, kept for checks only

    @property
    def dtype(self):
        return self.base.dtype

    @property
    def type(self):
        return self.base.type

    def fields(self) -> list[tensor]:
        """The scalar values a loop carries for this block pointer."""
        return [self.base, *self.shape, *self.strides, *self.offsets]

    def rebuild(self, values) -> "BlockPointer":
        """The same static block pointer over other scalar values (a loop's block arguments)."""
        r = len(self.block_shape)
        v = list(values)
        return BlockPointer(v[0], tuple(v[1:1 + r]), tuple(v[1 + r:1 + 2 * r]), tuple(v[1 + 2 * r:]),
                            self.block_shape, self.order)

    def same_kind(self, other) -> bool:
        return (isinstance(other, BlockPointer) and other.block_shape == self.block_shape
                and other.order == self.order and other.base.type == self.base.type)

    def __repr__(self) -> str:
        return f"block_ptr<{self.base.dtype.pointee}, block {list(self.block_shape)}>"


def _ints(sem, values, what: str, rank: int | None) -> tuple:
    values = unwrap(values)
    if not isinstance(values, (tuple, list)):
        raise SemanticError(f"make_block_ptr's {what} must be a tuple, got {values!r}")
    if rank is not None and len(values) != rank:
        raise SemanticError(f"make_block_ptr's {what} has {len(values)} entries but the block has {rank} "
                            "dimensions")
    out = []
    for v in values:
        v = unwrap(v)
        if isinstance(v, bool) or not (isinstance(v, int) or isinstance(v, tensor)):
            raise SemanticError(f"make_block_ptr's {what} must hold integers, got {v!r}")
        t = sem.to_tensor(v, T.i32)
        if t.shape != () or not t.dtype.is_int:
            raise SemanticError(f"make_block_ptr's {what} must hold integer scalars, got {t.type}")
        out.append(t if t.dtype == T.i32 else sem.cast(t, T.i32))
    return tuple(out)


def make_block_ptr(sem, base, shape, strides, offsets, block_shape, order) -> BlockPointer:
    base = unwrap(base)
    if not isinstance(base, tensor) or not base.type.is_pointer or base.shape != ():
        raise SemanticError(f"make_block_ptr's base must be a tensor argument (a scalar pointer), got {base!r}")
    block_shape = unwrap(block_shape)
    if not isinstance(block_shape, (tuple, list)) or not block_shape:
        raise SemanticError(f"make_block_ptr's block_shape must be a tuple of constexpr ints, got {block_shape!r}")
    dims = []
    for d in block_shape:
        d = unwrap(d)
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise SemanticError(f"make_block_ptr's block_shape must hold positive constexpr ints, got {d!r}")
        dims.append(d)
    rank = len(dims)
    order = tuple(unwrap(o) for o in unwrap(order))
    if sorted(order) != list(range(rank)):
        raise SemanticError(f"make_block_ptr's order must be a permutation of 0..{rank - 1}, got {list(order)}")
    return BlockPointer(base, _ints(sem, shape, "shape", rank), _ints(sem, strides, "strides", rank),
                        _ints(sem, offsets, "offsets", rank), tuple(dims), order)


def advance(sem, ptr, offsets) -> BlockPointer:
    ptr = unwrap(ptr)
    if not isinstance(ptr, BlockPointer):
        raise SemanticError(f"advance takes a block pointer (from make_block_ptr), got {ptr!r}")
    delta = _ints(sem, offsets, "advance offsets", len(ptr.block_shape))
    new = tuple(o if _is_zero(d) else sem.binary("add", o, d) for o, d in zip(ptr.offsets, delta))
    return BlockPointer(ptr.base, ptr.shape, ptr.strides, new, ptr.block_shape, ptr.order)


def _is_zero(t: tensor) -> bool:
    op = t.handle.owner
    return getattr(op, "name", None) == "constant" and op.attrs["value"] == 0


def _boundary_dims(ptr: BlockPointer, boundary_check) -> list[int]:
    bc = unwrap(boundary_check)
    if bc is None:
        return []
    if isinstance(bc, int) and not isinstance(bc, bool):
        bc = (bc,)
    dims = []
    for d in bc:
        d = unwrap(d)
        if isinstance(d, bool) or not isinstance(d, int) or not 0 <= d < len(ptr.block_shape):
            raise SemanticError(f"boundary_check names dimension {d!r}, but the block pointer has "
                                f"{len(ptr.block_shape)} dimensions")
        if d in dims:
            raise SemanticError(f"boundary_check names dimension {d} twice")
        dims.append(d)
    return dims


def _pointers_and_mask(sem, ptr: BlockPointer, boundary_check):
    """(pointer tile of the block's shape, mask or None)."""
    rank = len(ptr.block_shape)
    checked = _boundary_dims(ptr, boundary_check)
    address, mask = None, None
    for d, n in enumerate(ptr.block_shape):
        idx = sem.binary("add", sem.arange(0, n), ptr.offsets[d])
        for _ in range(d):
            idx = sem.expand_dims(idx, 0)
        for _ in range(rank - d - 1):
            idx = sem.expand_dims(idx, -1)
        part = sem.binary("mul", idx, ptr.strides[d])
        address = part if address is None else sem.binary("add", address, part)
        if d in checked:
            inside = sem.binary("and", sem.compare("ge", idx, 0), sem.compare("lt", idx, ptr.shape[d]))
            mask = inside if mask is None else sem.binary("and", mask, inside)
    address = sem.broadcast_to(address, ptr.block_shape)
    pointers = sem.binary("add", ptr.base, address)
    if mask is not None:
        mask = sem.broadcast_to(mask, ptr.block_shape)
    return pointers, mask


def load(sem, ptr: BlockPointer, mask, other, boundary_check, padding_option) -> tensor:
    if unwrap(mask) is not None or unwrap(other) is not None:
        raise SemanticError("a load through a block pointer takes no `mask` or `other`; "
                            "use boundary_check= and padding_option=")
    padding = unwrap(padding_option) or ""
    if padding not in PADDINGS:
        raise SemanticError(f"padding_option must be 'zero' or 'nan', got {padding!r}")
    elem = ptr.dtype.pointee
    if padding == "nan" and not elem.is_float:
        raise SemanticError(f"padding_option='nan' needs a floating-point tensor, not {elem}")
    pointers, mask = _pointers_and_mask(sem, ptr, boundary_check)
    if mask is None:
        return sem.load(pointers)
    # Triton leaves unpadded out-of-bounds elements undefined; zero is one such value
    return sem.load(pointers, mask, float("nan") if padding == "nan" else 0)


def store(sem, ptr: BlockPointer, value, mask, boundary_check) -> None:
    if unwrap(mask) is not None:
        raise SemanticError("a store through a block pointer takes no `mask`; use boundary_check=")
    value = unwrap(value)
    if isinstance(value, tensor) and value.shape not in ((), ptr.block_shape):
        try:
            sem.broadcast_shapes(value.shape, ptr.block_shape)
        except SemanticError:
            raise SemanticError(f"store of a {list(value.shape)} tile through a block pointer of block shape "
                                f"{list(ptr.block_shape)}") from None
    elif not isinstance(value, tensor) and not is_number(value):
        raise SemanticError(f"cannot store {value!r} through a block pointer")
    pointers, mask = _pointers_and_mask(sem, ptr, boundary_check)
    sem.store(pointers, value, mask)
