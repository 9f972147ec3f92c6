"""Strip-mining a program along a row-parallel tile axis: the kernel's whole body runs as a
loop over `chunks` slices of that axis, each slice the same program on smaller tiles.

    axes = row_axes(kernel)              # the axes that can be cut, each with its size
    strip_mine(kernel, axes[0], 4)       # in place: every tile on that axis is a quarter

A tile axis is a class of tile dimensions that must be cut together: an elementwise op's
operands and result, a broadcast's kept dims, a dot's rows with its accumulator's and
result's rows (and columns likewise), a loop's carried value with its init, region argument,
yield and result.  A class can be cut when nothing mixes the elements along it: it is no
dot's K, no reduction's axis, not reshaped, scanned, gathered, flipped or shifted, and no tile
has two dims in it.  Its elements then differ only through the `arange`s on it, so slice c
of the program is the program with each such `arange(start, start + n)` replaced by
`arange(0, n/chunks) + start + c * n/chunks` and every tile on the axis shrunk.

What the loop repeats must not change the program's effects: the kernel may have no
atomics, barriers, prints or asserts, no early return, and no load after a store (nor a loop
holding both), since slice c + 1 would read what slice c stored.  Values off the axis (scalars,
the tiles of other axes) are recomputed by each slice with the same result: nothing on the
axis can flow into them without a reduction over it.  Stores off the axis write the same
values to the same places again.  A load before the stores that reads, through another
pointer, elements an earlier slice stored (two arguments naming overlapping memory) sees the
new values; within one Triton program such a read already races with the other warps'
stores, so no defined result changes.

Why: codegen/chunking.py cuts big tiles this way on CPU drivers whose compile time grows
faster than linearly with the registers a lane holds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..core import Block, KernelIR, Operation, Value
from ..ops import BINARY, ELEMENTWISE_OTHER, UNARY
from ..types import TileType, i32
from .util import IMPURE

_SAME_SHAPE = BINARY | UNARY | ELEMENTWISE_OTHER | {"assume", "addptr", "int_to_ptr", "ptr_to_int",
                                                     "load", "store"}
_NO_DIMS = {"splat", "arange", "constant", "program_id", "num_programs", "yield", "return"}
_ORDERED_EFFECTS = {"atomic_rmw", "atomic_cas", "barrier", "print", "assert"}
# Tiles made from nothing on their dims.  After CSE one `arange(0, 64)` may serve a matmul's
# rows and its columns, so each use of such a tile is a tile of its own here, and the rewrite
# gives the uses on the cut axis a slice of their own.
_SOURCES = {"arange", "constant", "splat"}


@dataclass
class RowAxis:
    """One class of tile dimensions that can be cut: its size, the dim on it of each value
    that has one (id(value) -> dim), and the uses of source tiles on it ((op, operand index,
    dim): an arange, constant or splat that other uses may still need whole)."""
    size: int
    dims: dict = field(default_factory=dict)
    uses: list = field(default_factory=list)


class _Dims:
    """Union-find over tile dimensions: (reference, dim), where a reference is a value, or one
    use of a source tile (op, operand index).  `bad` holds classes that cannot be cut."""

    def __init__(self):
        self.parent: dict[tuple, tuple] = {}
        self.shape: dict[tuple, tuple] = {}
        self.bad: set[tuple] = set()

    @staticmethod
    def _is_source(v: Value) -> bool:
        return isinstance(v.owner, Operation) and v.owner.name in _SOURCES and bool(v.type.shape) \
            and _uniform_constant(v.owner)

    def value(self, v: Value) -> tuple:
        ref = ("v", id(v))
        self.shape.setdefault(ref, v.type.shape)
        return ref

    def operand(self, op: Operation, i: int) -> tuple:
        v = op.operands[i]
        if not self._is_source(v):
            return self.value(v)
        ref = ("u", id(op), i)
        self.shape.setdefault(ref, v.type.shape)
        return ref

    def find(self, ref: tuple, d: int) -> tuple:
        key = ref + (d,)
        root = self.parent.setdefault(key, key)
        while root != self.parent[root]:
            root = self.parent[root]
        while self.parent[key] != root:        # path compression
            self.parent[key], key = root, self.parent[key]
        return root

    def union(self, a: tuple, da: int, b: tuple, db: int) -> None:
        ra, rb = self.find(a, da), self.find(b, db)
        if ra != rb:
            self.parent[rb] = ra
            if rb in self.bad:
                self.bad.add(ra)

    def union_all(self, refs) -> None:
        tiles = [r for r in refs if self.shape[r]]
        for r in tiles[1:]:
            for d in range(len(self.shape[r])):
                self.union(tiles[0], d, r, d)

    def forbid(self, ref: tuple, d: int) -> None:
        self.bad.add(self.find(ref, d))

    def forbid_all(self, refs) -> None:
        for r in refs:
            for d in range(len(self.shape[r])):
                self.forbid(r, d)


def row_axes(kernel: KernelIR) -> list[RowAxis]:
    """The tile axes `strip_mine` may cut, largest first; none where the kernel's effects
    depend on running once (see the module's docstring).  Only axes that an arange makes:
    along any other, every slice would be the same."""
    if not _effects_allow(kernel):
        return []
    dims = _Dims()
    _link(kernel.body, dims)
    # a class may have been merged into after it was marked: settle the marks on final roots
    bad = {dims.find(k[:-1], k[-1]) for k in list(dims.bad)}
    axes: dict[tuple, RowAxis] = {}
    for op in kernel.walk():
        for i, v in enumerate(op.operands):
            if isinstance(v.owner, Operation) and v.owner.name == "arange":
                root = dims.find(dims.operand(op, i), 0)
                if root not in bad:
                    axes.setdefault(root, RowAxis(v.type.shape[0]))
    uses = {ref: (op, i) for op in kernel.walk() for i in range(len(op.operands))
            for ref in [dims.operand(op, i)] if ref[0] == "u"}
    for ref, shape in dims.shape.items():
        roots = [dims.find(ref, d) for d in range(len(shape))]
        for d, r in enumerate(roots):
            if r not in axes:
                continue
            if roots.count(r) > 1:      # a tile with two dims on one axis: a slice would be its diagonal
                del axes[r]
            elif ref[0] == "v":
                axes[r].dims[ref[1]] = d
            else:
                axes[r].uses.append(uses[ref] + (d,))
    return sorted(axes.values(), key=lambda a: -a.size)


def strip_mine(kernel: KernelIR, axis: RowAxis, chunks: int) -> KernelIR:
    """Run `kernel` as `for chunk in range(chunks)` over slices of `axis` (from row_axes on
    this kernel, unchanged since), in place."""
    if chunks < 2 or axis.size % chunks:
        raise ValueError(f"cannot cut an axis of {axis.size} into {chunks} slices")
    rows = axis.size // chunks
    for v in _all_values(kernel):
        d = axis.dims.get(id(v))
        if d is not None:
            v.type = _cut(v.type, d, rows)
    body = kernel.body
    ret = body.ops.pop()
    assert ret.name == "return", "row_axes refuses kernels that return early"
    region = Block()
    chunk = region.add_arg(TileType((), i32), "chunk")
    head = [_constant(rows, "rows")]
    first_row = Operation("mul", [chunk, head[0].result], [TileType((), i32)], result_hints=["first_row"])
    head.append(first_row)
    hoisted, kept = _split_scalars(body.ops)
    region.ops = head + kept + [Operation("yield", [], [])]
    _slice_sources(region, axis, first_row.result, rows)
    bounds = [_constant(0), _constant(chunks), _constant(1)]
    # `slices` tells codegen that the loop repeats one program's work (dot_loop_plan sizes
    # a slice's dots as the whole program's)
    loop = Operation("for", [b.result for b in bounds], [], {"slices": chunks}, regions=[region], loc=ret.loc)
    body.ops = hoisted + bounds + [loop, ret]
    return kernel


def _split_scalars(ops: list[Operation]) -> tuple[list[Operation], list[Operation]]:
    """(the pure scalar ops of the top level that need nothing a slice computes, the rest):
    the former stay outside the loop over slices, computed once per program as before, and
    remain the program-level scalars that launch_facts checks on the host."""
    hoisted, kept, inside = [], [], set()
    for op in ops:
        scalar = not op.regions and op.name not in IMPURE and all(not r.type.shape for r in op.results)
        if scalar and not any(id(v) in inside for v in op.operands):
            hoisted.append(op)
        else:
            kept.append(op)
            inside.update(id(r) for r in op.results)
    return hoisted, kept


def _cut(t: TileType, d: int, rows: int) -> TileType:
    shape = list(t.shape)
    shape[d] = rows
    return t.with_shape(shape)


def _constant(value: int, hint: str | None = None) -> Operation:
    return Operation("constant", [], [TileType((), i32)], {"value": value}, result_hints=[hint])


def _uniform_constant(op: Operation) -> bool:
    return op.name != "constant" or isinstance(op.attrs["value"], (int, float, bool))


def _slice_sources(region: Block, axis: RowAxis, first_row: Value, rows: int) -> None:
    """Give the uses of source tiles on the axis their slice: one new op (or short chain, for
    an arange: `arange(0, rows) + (start + first_row)`) per source and dim, placed after the
    source; a source left without uses is dropped."""
    parents = _parents(region)
    sliced: dict[tuple, Value] = {}
    for use, i, d in axis.uses:
        src = use.operands[i].owner
        key = (id(src), d)
        if key not in sliced:
            block = parents[id(src)]
            new = _slice_source(src, d, first_row, rows)
            at = block.ops.index(src) + 1
            block.ops[at:at] = new
            sliced[key] = new[-1].result
        use.operands[i] = sliced[key]
    used = {id(v) for op in region.walk() for v in op.operands}
    for key in sliced:
        src = next(op for op in region.walk() if id(op) == key[0])
        if id(src.result) not in used:
            parents[id(src)].ops.remove(src)


def _slice_source(src: Operation, d: int, first_row: Value, rows: int) -> list[Operation]:
    t = _cut(src.result.type, d, rows)
    if src.name != "arange":          # a splat or uniform constant: the same value, fewer rows
        return [Operation(src.name, list(src.operands), [t], dict(src.attrs), loc=src.loc)]
    fresh = Operation("arange", [], [t], {"start": 0, "end": rows}, loc=src.loc)
    new = [fresh]
    offset = first_row
    if src.attrs["start"]:
        c = _constant(src.attrs["start"])
        add = Operation("add", [first_row, c.result], [TileType((), i32)], loc=src.loc)
        new += [c, add]
        offset = add.result
    splat = Operation("splat", [offset], [t], loc=src.loc)
    return new + [splat, Operation("add", [splat.result, fresh.result], [t], loc=src.loc)]


def _parents(block: Block, out: dict | None = None) -> dict:
    """id(op) -> the block holding it, for every op under `block`."""
    out = {} if out is None else out
    for op in block.ops:
        out[id(op)] = block
        for region in op.regions:
            _parents(region, out)
    return out


def _all_values(kernel: KernelIR):
    for op in kernel.walk():
        yield from op.results
        for region in op.regions:
            yield from region.args


def _effects_allow(kernel: KernelIR) -> bool:
    """No order-dependent effects, no early return, no load after a store (or beside one in a loop)."""
    ops = kernel.body.ops
    if not ops or ops[-1].name != "return":
        return False
    seen_store = False
    for op in kernel.walk():
        if op.name in _ORDERED_EFFECTS or (op.name == "return" and op is not ops[-1]):
            return False
        if op.name == "store":
            seen_store = True
        elif op.name == "load" and seen_store:
            return False
        elif op.name in ("for", "while"):
            inner = {o.name for r in op.regions for o in r.walk()}
            if "store" in inner and "load" in inner:
                return False
    return True


def _link(block: Block, dims: _Dims) -> None:
    for op in block.ops:
        name = op.name
        ins = [dims.operand(op, i) for i in range(len(op.operands))]
        outs = [dims.value(v) for v in op.results]
        if name in _SAME_SHAPE:
            dims.union_all(ins + outs)
        elif name == "broadcast":
            src, dst = op.operands[0].type.shape, op.results[0].type.shape
            for d, (a, b) in enumerate(zip(src, dst)):
                if a == b:
                    dims.union(ins[0], d, outs[0], d)
        elif name == "expand_dims":
            ax = op.attrs["axis"]
            for d in range(len(op.operands[0].type.shape)):
                dims.union(ins[0], d, outs[0], d if d < ax else d + 1)
        elif name == "trans":
            dims.union(ins[0], 0, outs[0], 1)
            dims.union(ins[0], 1, outs[0], 0)
        elif name == "permute":
            order = [int(p) for p in str(op.attrs["order"]).split(",")]
            for d, src_d in enumerate(order):
                dims.union(ins[0], src_d, outs[0], d)
        elif name == "reduce":
            ax = op.attrs["axis"]
            dims.forbid(ins[0], ax)
            for d in range(len(op.operands[0].type.shape)):
                if d != ax:
                    dims.union(ins[0], d, outs[0], d if d < ax else d - 1)
        elif name == "dot":
            a, b, c = ins
            for x, y in ((a, c), (c, outs[0])):
                dims.union(x, 0, y, 0)
            for x, y in ((b, c), (c, outs[0])):
                dims.union(x, 1, y, 1)
            dims.forbid(a, 1)
            dims.forbid(b, 0)
        elif name == "constant" and not _uniform_constant(op):
            dims.forbid_all(outs)
        elif name == "for":
            body = op.regions[0]
            _link_carried(dims, ins[3:], body.args[1:], outs, body)
        elif name == "while":
            before, body = op.regions
            _link_carried(dims, ins, before.args, outs, body)
            _link_carried(dims, ins, body.args, outs, None)
        elif name == "if":
            for region in op.regions:
                term = region.terminator
                if term is not None and term.name == "yield":
                    for r, i in zip(outs, range(len(term.operands))):
                        dims.union_all([r, dims.operand(term, i)])
        elif name not in _NO_DIMS:
            # reshape, flip, shift, extract, scan, gather, histogram and any op added later:
            # they move elements along their dims, so none of those dims can be cut
            dims.forbid_all(ins + outs)
        for region in op.regions:
            _link(region, dims)


def _link_carried(dims: _Dims, inits, args, results, body: Block | None) -> None:
    term = body.terminator if body is not None else None
    n = len(inits)
    yields = [dims.operand(term, i) for i in range(n)] if term is not None and term.name == "yield" else []
    for k in range(n):
        dims.union_all([inits[k], dims.value(args[k]), results[k]] + ([yields[k]] if yields else []))
