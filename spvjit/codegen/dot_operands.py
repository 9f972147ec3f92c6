"""A looped dot's operands read straight from memory, one k step at a time.

A dot lowered as a loop over k (block_loops.py) needs A[i, k] and B[k, columns] for a k known
only at run time.  Tiles live in registers, which cannot be indexed at run time, and staging
them in memory costs lavapipe dearly (each per-lane store or load of shared or Function
memory becomes a scalar loop over the lanes, and compiling 512 of them takes seconds).  But
the usual operand is `sl.load(ptrs, mask, other)` used by nothing but the dot, with
`ptrs = base + rows[:, None] * s0 + cols[None, :] * s1` (possibly carried through the K loop
and advanced by a uniform step, as in Triton's tutorial matmul).  Such a pointer tile is
affine along k: element (i, k) = element (i, 0) + k * stride, the stride a uniform scalar.  So
the dot skips the load's own lowering and, inside its k loop, loads exactly the elements each
step needs:

- A (stride along axis 1): the pointer of row i's first element, handed to every lane by a
  subgroup broadcast before the loop; A[i, k..k+3] is then one vec4 load at a uniform address
  where the rows are 4-aligned runs along k (`a_vec4`), else A[i, k] one load (`a_element`),
  or each lane loads one of a row's next W elements for subgroup broadcasts (`a_lane_element`);
- B (stride along axis 0): row 0's pointers are this lane's own registers (the lane holds the
  same columns in every row of B and C), so B[k, 4 columns] is one vec4 load where the load
  would have vectorized, else four.

The mask is recomputed for the elements loaded (remat.py: masks are index arithmetic), and
`other` must be uniform.  `stride` proves the affine form from the IR structurally (arange,
splat, broadcast, expand_dims, add/sub, multiplication by a uniform, addptr, loop-carried
values advanced by something constant along the axis); anything else keeps the load and
the staged operand.
"""
from __future__ import annotations

from ..ir.core import Block, Operation
from . import remat

_REMAT_OPS = ("arange", "constant", "splat", "broadcast", "expand_dims", "reshape", "trans") + remat._ELEMENTWISE


def _loops_of_blocks(kernel) -> dict[int, Operation]:
    return {id(op.regions[0]): op for op in kernel.walk() if op.name == "for"}


def _users(kernel) -> tuple[dict[int, list], dict[int, object], dict[int, Operation]]:
    """(id(value) -> [(op, operand index)], id(op) -> the block that holds it,
    id(block) -> the op whose region it is)."""
    users: dict[int, list] = {}
    block_of: dict[int, object] = {}
    owner_of: dict[int, Operation] = {}
    for block in _blocks(kernel.body):
        for op in block.ops:
            block_of[id(op)] = block
            for region in op.regions:
                owner_of[id(region)] = op
            for i, v in enumerate(op.operands):
                users.setdefault(id(v), []).append((op, i))
    return users, block_of, owner_of


_WRITES = ("store", "atomic_rmw", "atomic_cas")


def _may_write(op) -> bool:
    """`op`, or an op in its regions, writes memory."""
    return op.name in _WRITES or any(o.name in _WRITES for r in op.regions for o in r.walk())


def _writes_between(block, first, last) -> bool:
    """Whether an op after `first` and before `last` in `block` may write memory."""
    inside = False
    for op in block.ops:
        if op is last:
            return False
        if inside and _may_write(op):
            return True
        inside = inside or op is first
    return True                       # `last` not in the block: assume the worst


def reread_check(kernel):
    """`ok(load, dot)`: whether `dot` may read `load`'s memory again where it stands."""
    _, block_of, owner_of = _users(kernel)
    return _reread_check(block_of, owner_of)


def _reread_check(block_of, owner_of):
    def ok(load, dot) -> bool:
        """No write can run after the load and before the dot: none between them in the
        load's block, and, where the dot sits in a loop (or branch) of that block, none
        anywhere in it (a write in the loop runs before the dot's next trip).  Then reading
        the memory again at the dot gives the loaded values, whatever tensors the kernel's
        arguments alias."""
        home, holder = block_of[id(load)], dot
        while block_of.get(id(holder)) is not home:
            holder = owner_of.get(id(block_of.get(id(holder))))
            if holder is None:
                return False
        if _writes_between(home, load, holder):
            return False
        return holder is dot or not _may_write(holder)     # (holder: a loop or branch op)
    return ok


class Analysis:
    """Which loads a kernel's looped dots read themselves (found once, before lowering).

    A load qualifies when every use is a looped dot reading it as A or B, or a `trans` whose
    every use is a looped dot reading it as B (attention's `dot(q, kT)` and
    `dot(ds, trans(kT))`: B'[k, n] = kT[n, k], read through kT's pointers with k along their
    axis 1), and each dot may read the memory again where it stands: no write between the
    load and the dot, nor in the loop that holds the dot (reread_ok)."""

    def __init__(self, kernel, wants_loop, broadcast_ok: bool):
        self.loops = _loops_of_blocks(kernel)
        self.looped = wants_loop
        self.fused: dict[int, list] = {}       # id(load op) -> [(dot op, operand index, k axis, transposed)]
        self.transposes: set[int] = set()      # ids of trans ops read through their fused load
        self.crowded = False                   # many looped dots (dot_loop_plan.plan_dot_reads sets it)
        users, block_of, owner_of = _users(kernel)
        reread_ok = _reread_check(block_of, owner_of)

        def direct(load, dot, index):
            if dot.name != "dot" or index not in (0, 1) or not wants_loop(dot):
                return None
            axis = 1 if index == 0 else 0
            if (axis == 1 and not broadcast_ok) or not self.readable(load, axis) or not reread_ok(load, dot):
                return None                    # (A's row pointers arrive by subgroup broadcast)
            return (dot, index, axis, False)

        for load in kernel.walk():
            if load.name != "load" or len(load.result.type.shape) != 2:
                continue
            reads, trans_ops = [], []
            for user, index in users.get(id(load.result), []):
                if user.name == "trans":
                    tr_users = users.get(id(user.result), [])
                    ok = bool(tr_users) and _remat_able(load.operands[0]) and self.readable(load, 1)
                    for dot, i in tr_users:
                        if not (ok and dot.name == "dot" and i == 1 and wants_loop(dot) and reread_ok(load, dot)):
                            ok = False
                            break
                        reads.append((dot, 1, 1, True))
                    if not ok:
                        reads = None
                        break
                    trans_ops.append(user)
                    continue
                r = direct(load, user, index)
                if r is None:
                    reads = None
                    break
                reads.append(r)
            if reads:
                self.fused[id(load)] = reads
                self.transposes.update(id(t) for t in trans_ops)

        self.unused = _unused_after_fusion(kernel, {v: len(u) for v, u in users.items()},
                                           [op for op in kernel.walk() if id(op) in self.fused])

    def operand_load(self, dot, index: int):
        """The fused load `dot` reads as operand `index` (directly or through a trans), or None."""
        read = self.operand_read(dot, index)
        return read[0] if read else None

    def operand_read(self, dot, index: int):
        """(load, transposed) for a fused operand of `dot`, or None."""
        v = dot.operands[index]
        owner = v.owner
        transposed = isinstance(owner, Operation) and id(owner) in self.transposes
        load = owner.operands[0].owner if transposed else owner
        if not (isinstance(load, Operation) and id(load) in self.fused):
            return None
        if not any(d is dot and i == index and tr == transposed for d, i, _, tr in self.fused[id(load)]):
            return None
        return load, transposed

    def readable(self, load, axis: int) -> bool:
        ptr = load.operands[0]
        if ptr.type.elem.global_address:          # follows addresses, not a binding: load it itself
            return False
        if len(ptr.type.shape) != 2 or self.stride(ptr, axis, None) is None:
            return False
        if len(load.operands) > 1 and not _remat_able(load.operands[1]):
            return False
        if len(load.operands) > 2 and not load.operands[2].type.is_scalar and not _constant_like(load.operands[2]):
            return False
        return True

    def stride(self, v, axis: int, lw):
        """How element (.., k+1, ..) exceeds element (.., k, ..) along `axis`: 0, or an i32
        id (uniform) when `lw` is given, or True when only checking; None when not affine."""
        shape = v.type.shape
        if not shape or shape[axis] == 1:
            return 0
        owner = v.owner
        if isinstance(owner, Block):              # a loop-carried value: init + steps constant along axis
            loop = self.loops.get(id(owner))
            if loop is None or v not in owner.args[1:]:
                return None
            p = owner.args.index(v) - 1
            nxt = owner.terminator.operands[p]
            step = nxt.owner
            if not (isinstance(step, Operation) and step.name in ("addptr", "add") and step.operands[0] is v
                    and self.stride(step.operands[1], axis, None) == 0):
                return None
            return self.stride(loop.operands[3 + p], axis, lw)
        if not isinstance(owner, Operation):
            return None
        name = owner.name
        if name in ("splat", "constant"):
            return 0
        if name == "broadcast":
            return 0 if owner.operands[0].type.shape[axis] == 1 else self.stride(owner.operands[0], axis, lw)
        if name == "expand_dims":
            src = owner.operands[0]
            return self._stride_1d(src, lw) if owner.attrs["axis"] != axis else 0
        if name in ("add", "sub", "addptr"):
            s = [self.stride(x, axis, lw) for x in owner.operands]
            if None in s:
                return None
            return _combine(lw, "OpISub" if name == "sub" else "OpIAdd", *s)
        if name == "mul" and v.type.elem.is_int:
            return self._scaled(owner, lambda x: self.stride(x, axis, lw), lw)
        return None

    def _stride_1d(self, v, lw):
        owner = v.owner
        if not isinstance(owner, Operation):
            return None
        name = owner.name
        if name == "arange":
            return 1
        if name in ("splat", "constant"):
            return 0
        if name in ("add", "sub"):
            s = [self._stride_1d(x, lw) for x in owner.operands]
            if None in s:
                return None
            return _combine(lw, "OpISub" if name == "sub" else "OpIAdd", *s)
        if name == "mul" and v.type.elem.is_int:
            return self._scaled(owner, lambda x: self._stride_1d(x, lw), lw)
        return None

    def _scaled(self, mul, stride_of, lw):
        """stride of x * u where u is a uniform scalar (a splat or a constant tile)."""
        for x, u in (mul.operands, mul.operands[::-1]):
            scale = _uniform_factor(u, lw)
            if scale is None:
                continue
            s = stride_of(x)
            if s is None:
                return None
            return _combine(lw, "OpIMul", s, scale)
        return None


def _unused_after_fusion(kernel, uses, loads) -> set[int]:
    """Tile ops whose values only fed the masks of fused loads: the dot recomputes the mask
    elements it needs (remat.py), so these need no registers and are not lowered."""
    remaining = dict(uses)
    unused: set[int] = set()

    def drop(v):
        remaining[id(v)] -= 1
        op = v.owner
        if (remaining[id(v)] == 0 and isinstance(op, Operation) and not v.type.is_scalar
                and op.name in _REMAT_OPS and len(op.results) == 1 and id(op) not in unused):
            unused.add(id(op))
            for x in op.operands:
                drop(x)

    for load in loads:
        for v in load.operands[1:]:
            drop(v)
    return unused


def _blocks(block):
    yield block
    for op in block.ops:
        for region in op.regions:
            yield from _blocks(region)


def _uniform_factor(u, lw):
    """An i32 id (or int) for a tile that is one scalar everywhere, else None; True when checking."""
    owner = u.owner
    if not isinstance(owner, Operation):
        return None
    if owner.name == "constant":
        return int(owner.attrs["value"]) if lw is not None else True
    if owner.name == "splat" and owner.operands[0].type.is_scalar:
        return _Id(lw.get(owner.operands[0]).regs[0]) if lw is not None else True
    if owner.name in ("broadcast", "expand_dims"):
        return _uniform_factor(owner.operands[0], lw)
    return None


class _Id(int):
    """A SPIR-V id among strides, which are otherwise compile-time ints."""


def _combine(lw, opname: str, a, b):
    """a (op) b for strides that are compile-time ints or uniform i32 ids (_Id); when only
    checking (lw None), anything not a compile-time int is True."""
    known = [not isinstance(x, _Id) and x is not True for x in (a, b)]
    if all(known):
        return {"OpIAdd": a + b, "OpISub": a - b, "OpIMul": a * b}[opname]
    if opname == "OpIMul" and ((known[0] and a == 0) or (known[1] and b == 0)):
        return 0
    if lw is None:
        return True
    if opname != "OpIMul" and known[1] and b == 0:
        return a
    if opname == "OpIAdd" and known[0] and a == 0:
        return b
    if opname == "OpIMul" and known[0] and a == 1:
        return b
    if opname == "OpIMul" and known[1] and b == 1:
        return a
    em = lw.em
    ids = [x if isinstance(x, _Id) else em.ci(x) for x in (a, b)]
    return _Id(em.op(opname, em.i32, *ids))


def _remat_able(v, seen=None) -> bool:
    """remat.expression's rule, decided before lowering: scalars count as uniform leaves."""
    seen = set() if seen is None else seen
    if v.type.is_scalar or id(v) in seen:
        return True
    seen.add(id(v))
    if len(seen) > remat.MAX_OPS:
        return False
    op = v.owner
    if not isinstance(op, Operation) or op.name not in _REMAT_OPS:
        return False
    if op.name in ("floordiv", "mod") and v.type.elem.is_float:
        return False
    return all(_remat_able(x, seen) for x in op.operands)


def _constant_like(v) -> bool:
    op = v.owner
    return isinstance(op, Operation) and (op.name == "constant" or (op.name in ("splat", "broadcast", "expand_dims")
                                                                     and (op.operands[0].type.is_scalar
                                                                          or _constant_like(op.operands[0]))))
