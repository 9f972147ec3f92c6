"""Types of the tile IR.

Every IR value has a `TileType`: a shape (``()`` for a scalar, which is uniform
across the program) and an element type, either a `DType` or a `PointerType`
to a `DType`.  Shapes are static: tile sizes come from constexprs, as in Triton.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np

from ..errors import SemanticError


@dataclass(frozen=True)
class DType:
    name: str          # IR spelling: f32, f16, bf16, i32, u32, i16, u16, i8, u8, i1, i64, u64
    kind: str          # "float", "int" (signed), "uint", "bool"
    bits: int

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def is_int(self) -> bool:
        return self.kind in ("int", "uint")

    @property
    def is_signed(self) -> bool:
        return self.kind == "int"

    @property
    def is_bool(self) -> bool:
        return self.kind == "bool"

    @property
    def nbytes(self) -> int:
        return max(1, self.bits // 8)

    @property
    def numpy(self) -> np.dtype:
        """The numpy dtype that holds this type's values (bf16 lives in uint16 storage)."""
        return np.dtype(_NUMPY[self.name])

    def __str__(self) -> str:
        return self.name

    # Triton's dtype queries (methods there, so kernels ported from Triton call them)
    def is_floating(self) -> bool:
        return self.kind == "float"

    def is_int_signed(self) -> bool:
        return self.kind == "int"

    def is_int_unsigned(self) -> bool:
        return self.kind == "uint"

    def is_fp16(self) -> bool:
        return self.name == "f16"

    def is_bf16(self) -> bool:
        return self.name == "bf16"

    def is_fp32(self) -> bool:
        return self.name == "f32"

    def is_fp64(self) -> bool:
        return self.name == "f64"

    def is_ptr(self) -> bool:
        return False

    @property
    def primitive_bitwidth(self) -> int:
        return self.bits

    @property
    def scalar(self) -> "DType":
        return self


f32 = DType("f32", "float", 32)
f16 = DType("f16", "float", 16)
bf16 = DType("bf16", "float", 16)
f64 = DType("f64", "float", 64)
i64 = DType("i64", "int", 64)
u64 = DType("u64", "uint", 64)
i32 = DType("i32", "int", 32)
u32 = DType("u32", "uint", 32)
i16 = DType("i16", "int", 16)
u16 = DType("u16", "uint", 16)
i8 = DType("i8", "int", 8)
u8 = DType("u8", "uint", 8)
i1 = DType("i1", "bool", 1)

DTYPES = {t.name: t for t in (f32, f16, bf16, f64, i64, u64, i32, u32, i16, u16, i8, u8, i1)}
_NUMPY = {"f32": "float32", "f16": "float16", "bf16": "uint16", "f64": "float64",
          "i64": "int64", "u64": "uint64", "i32": "int32", "u32": "uint32", "i16": "int16", "u16": "uint16",
          "i8": "int8", "u8": "uint8", "i1": "bool"}


def dtype_from_numpy(dt) -> DType:
    dt = np.dtype(dt)
    for t in DTYPES.values():
        if t.name != "bf16" and np.dtype(_NUMPY[t.name]) == dt:
            return t
    raise TypeError(f"numpy dtype {dt} has no spvjit equivalent")


@dataclass(frozen=True)
class PointerType:
    """A pointer to `pointee`.  Two kinds: a tensor argument plus element offsets (`ptr<T>`,
    a storage-buffer binding and an index: the default), or a *global address* (`gptr<T>`,
    `global_address=True`): a 64-bit device address made from an integer by
    `x.to(tl.pointer_type(T))`, followed through PhysicalStorageBuffer64 pointers
    (codegen/global_pointers.py).  `address_space` and `const` are accepted for Triton's signature."""
    pointee: DType
    address_space: int = 1
    global_address: bool = False

    def __init__(self, pointee, address_space: int = 1, const: bool = False, global_address: bool = False):
        # Triton's signature (element_ty, address_space=1, const=False): neither changes the
        # pointer here (one address space; constness is not tracked)
        if not isinstance(pointee, DType):
            raise SemanticError(f"pointer_type needs an element dtype such as tl.float16, got {pointee!r}")
        object.__setattr__(self, "pointee", pointee)
        object.__setattr__(self, "address_space", 1)    # one address space: not part of the type
        object.__setattr__(self, "global_address", bool(global_address))

    @property
    def name(self) -> str:
        return f"{'gptr' if self.global_address else 'ptr'}<{self.pointee.name}>"

    @property
    def element_ty(self) -> DType:
        """Triton's name for the pointee type (`ptr.dtype.element_ty`)."""
        return self.pointee

    def is_ptr(self) -> bool:
        return True

    @property
    def scalar(self) -> "PointerType":
        return self

    def __str__(self) -> str:
        return self.name


ElemType = DType | PointerType


MAX_TILE_NUMEL = 1 << 20


@dataclass(frozen=True)
class TileType:
    shape: tuple[int, ...]
    elem: ElemType

    def __post_init__(self):
        # bound tiles before anything is built per element (a BLOCK of 2**30 took 8 GB in the
        # SPIR-V builder); the frontend reports this at the kernel line that made the tile
        n = prod(self.shape)
        if n > MAX_TILE_NUMEL:
            raise SemanticError(f"a tile of shape {list(self.shape)} has {n} elements; at most "
                                f"{MAX_TILE_NUMEL} are allowed (as Triton's MAX_TENSOR_NUMEL): use smaller blocks")

    @property
    def is_scalar(self) -> bool:
        return self.shape == ()

    @property
    def numel(self) -> int:
        return prod(self.shape)

    @property
    def is_pointer(self) -> bool:
        return isinstance(self.elem, PointerType)

    def with_shape(self, shape) -> "TileType":
        return TileType(tuple(shape), self.elem)

    def with_elem(self, elem) -> "TileType":
        return TileType(self.shape, elem)

    def __str__(self) -> str:
        if not self.shape:
            return str(self.elem)
        return "tensor<" + "x".join(map(str, self.shape)) + "x" + str(self.elem) + ">"


def scalar(elem: ElemType) -> TileType:
    return TileType((), elem)
