"""Which pointer tiles a cooperative-matrix load or store may address directly.

`OpCooperativeMatrixLoadKHR`/`StoreKHR` read or write an m x n tile as rows (or columns) of
contiguous elements, `Stride` elements apart.  A Triton pointer tile qualifies when it is
affine in the tile's (row, column) index with coefficient exactly 1 along one of them:

    ptr[r, c] = base + r * s_r + c * s_c,   s_c == 1 (row-major) or s_r == 1 (column-major)

with base and the other coefficient uniform (built from scalars, constants and aranges only:
`rm[:, None] * K + rk[None, :]` is, `(rm % M)[:, None] * K` and loaded indices are not).
Vulkan also wants Pointer and Stride aligned to min(16 bytes, a row's bytes)
(VUID-RuntimeSpirv-OpCooperativeMatrixLoadKHR-08986), so each part carries a power of two
known to divide it (`div`, from constants and the divisibility specialization of integer
arguments).  The code that emits the tile's address recomputes it element by element from
the IR (remat.evaluate); this module only proves that doing so addresses a strided tile.
"""
from __future__ import annotations

from dataclasses import dataclass

from .axis_info import BIG, pow2_div

ROW_MAJOR, COLUMN_MAJOR = 0, 1


@dataclass(frozen=True)
class Coef:
    value: int | None       # known constant, else a runtime uniform
    div: int                # a power of two dividing it

    def __add__(self, o: "Coef") -> "Coef":
        v = self.value + o.value if self.value is not None and o.value is not None else None
        return Coef(v, pow2_div(v) if v is not None else min(self.div, o.div))

    def __mul__(self, o: "Coef") -> "Coef":
        if self.value == 0 or o.value == 0:
            return ZERO
        v = self.value * o.value if self.value is not None and o.value is not None else None
        return Coef(v, pow2_div(v) if v is not None else min(BIG, self.div * o.div))


ZERO = Coef(0, BIG)
ONE = Coef(1, 1)


@dataclass(frozen=True)
class Affine:
    """value[i0, i1, ...] = base + sum_d coef[d] * i_d."""
    base: Coef
    coef: tuple

    @property
    def uniform(self) -> bool:
        return all(c.value == 0 for c in self.coef)


def _scalar(v, axis) -> Affine | None:
    """A scalar is uniform; its divisibility is axis_info's (specialized arguments, constants,
    loop induction variables and the integer arithmetic between them)."""
    op = v.owner
    if getattr(op, "name", None) == "constant":
        val = op.attrs["value"]
        if isinstance(val, int) and not isinstance(val, bool):
            return Affine(Coef(val, pow2_div(val)), ())
        return None
    if not (v.type.is_pointer or v.type.elem.is_int):
        return None
    info = axis.get(id(v))
    return Affine(Coef(None, info.div if info is not None else 1), ())


def analyze(value, axis: dict, depth: int = 0) -> Affine | None:
    """The affine form of an integer or pointer tile, or None.  `axis`: axis_info.analyze's
    facts, whose divisibility of scalars is used."""
    if depth > 32:
        return None
    ty = value.type
    if ty.is_scalar:
        return _scalar(value, axis)
    op = value.owner
    name = getattr(op, "name", None)
    shape = ty.shape
    rec = lambda v: analyze(v, axis, depth + 1)    # noqa: E731
    if name == "constant":
        val = op.attrs["value"]
        if not isinstance(val, int) or isinstance(val, bool):
            return None
        return Affine(Coef(val, pow2_div(val)), (ZERO,) * len(shape))
    if name == "arange":
        start = op.attrs["start"]
        return Affine(Coef(start, pow2_div(start)), (ONE,))
    if name == "splat":
        s = rec(op.operands[0])
        return None if s is None else Affine(s.base, (ZERO,) * len(shape))
    if name == "expand_dims":
        s = rec(op.operands[0])
        if s is None:
            return None
        coef = list(s.coef)
        coef.insert(op.attrs["axis"], ZERO)
        return Affine(s.base, tuple(coef))
    if name == "broadcast":
        s = rec(op.operands[0])
        src = op.operands[0].type.shape
        if s is None or len(src) != len(shape):
            return None
        return Affine(s.base, tuple(ZERO if n == 1 else c for n, c in zip(src, s.coef)))
    if name == "trans" and len(shape) == 2:
        s = rec(op.operands[0])
        return None if s is None else Affine(s.base, s.coef[::-1])
    if name == "assume":
        return rec(op.operands[0])
    if name in ("add", "addptr", "sub"):
        x, y = rec(op.operands[0]), rec(op.operands[1])
        if x is None or y is None:
            return None
        if name == "sub":
            neg = Coef(-1, 1)
            y = Affine(y.base * neg, tuple(c * neg for c in y.coef))
        return Affine(x.base + y.base, tuple(a + b for a, b in zip(x.coef, y.coef)))
    if name in ("mul", "shl"):
        x, y = rec(op.operands[0]), rec(op.operands[1])
        if x is None or y is None:
            return None
        if name == "shl":
            if y.base.value is None or not y.uniform:
                return None
            y = Affine(Coef(1 << y.base.value, 1 << y.base.value), y.coef)
        if y.uniform:
            return Affine(x.base * y.base, tuple(c * y.base for c in x.coef))
        if x.uniform:
            return Affine(x.base * y.base, tuple(c * x.base for c in y.coef))
        return None
    return None


@dataclass(frozen=True)
class Strided:
    """A 2-D pointer tile proven to be a strided matrix: layout, and the dimension whose
    coefficient is the stride (0: rows for row-major, 1: columns for column-major)."""
    layout: int
    stride: Coef
    base: Coef


def strided(ptr_value, axis, elem_bytes: int, tile_rows: int, tile_cols: int) -> Strided | None:
    """A [R, C] pointer tile as row-major or column-major rows of contiguous elements, with
    base and stride aligned as Vulkan asks for tiles of tile_rows x tile_cols elements
    (None when not provable; a stride of 0 repeats one row, allowed for loads only)."""
    ty = ptr_value.type
    if len(ty.shape) != 2:
        return None
    f = analyze(ptr_value, axis)
    if f is None:
        return None
    cr, cc = f.coef
    for layout, unit, stride, line in ((ROW_MAJOR, cc, cr, tile_cols), (COLUMN_MAJOR, cr, cc, tile_rows)):
        if unit.value != 1:
            continue
        align = max(1, min(16, line * elem_bytes) // elem_bytes)      # in elements
        if f.base.div % align or stride.div % align or line % align:
            continue
        return Strided(layout, stride, f.base)
    return None
