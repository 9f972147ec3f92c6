"""Contiguity facts about integer tiles along their last dimension (as Triton's AxisInfo).

For each i32 tile, pointer tile or mask: `contig` (values rise by one within
aligned runs of this many elements), `div` (a power of two dividing the first
value of every run) and `const` (values are equal within aligned runs of this
many elements), and `nonneg` (every value is >= 0, so C's remainder is the periodic one).
A load whose pointer offsets have contig >= 4 and div >= 4, with a mask whose const >= 4,
can read 4 elements with one vector load.  Integer kernel arguments are specialized on
divisibility by 16, as in Triton.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from math import gcd

BIG = 1 << 30


@dataclass(frozen=True)
class Info:
    contig: int = 1
    div: int = 1
    const: int = 1
    nonneg: bool = False


def pow2_div(x: int) -> int:
    if x == 0:
        return BIG
    return min(BIG, x & -x)


def _last(ty) -> int:
    return ty.shape[-1] if ty.shape else 1


class _Facts(dict):
    """id(value) -> Info, and the ids of the values the launch promises are >= 0."""
    assumed: frozenset = frozenset()


def analyze(kernel, param_div: dict[str, int], assume_nonneg: bool = False) -> dict[int, Info]:
    """The facts of every value of `kernel`.  `assume_nonneg`: the launch checked, for every
    program of its grid, that the scalars nonneg_wanted names are >= 0 (launch_facts.py)."""
    info = _analyze(kernel, param_div, frozenset())
    if assume_nonneg:
        wanted = nonneg_wanted(kernel, info)
        if wanted:
            info = _analyze(kernel, param_div, frozenset(id(v) for v in wanted))
    return info


def _analyze(kernel, param_div, assumed: frozenset) -> _Facts:
    info = _Facts()
    info.assumed = assumed
    for p in kernel.params:
        d = 16 if p.value.type.is_pointer else param_div.get(p.name, 1)
        info[id(p.value)] = Info(1, d, BIG, id(p.value) in assumed)
    _block(kernel.body, info)
    return info


def nonneg_wanted(kernel, info) -> list:
    """The scalars that, were each >= 0 in every program, would let a `%` keep its operand's
    runs (the `mod` rule needs x >= 0): Triton's `(pid_n * BLOCK_N + arange) % N` has runs of
    4 wherever pid_n >= 0, which the tutorial's grouped pid_n is in its own grid but not in
    every grid (an oversized one makes it negative).  The launch checks them on the host, so
    only scalars of the kernel's top level count (computed once per program, from its ids, the
    arguments and constants; never copied by loop unrolling, so a compile finds the same set)."""
    top = {id(p.value) for p in kernel.params}
    top |= {id(r) for op in kernel.body.ops for r in op.results}
    found = {}
    for op in kernel.walk():
        if op.name != "mod" or not op.results:
            continue
        res = op.results[0]
        if not (res.type.elem.is_int and res.type.elem.is_signed):
            continue
        x, y = (_get(info, v) for v in op.operands)
        if x.nonneg or y.const < _last(res.type) or min(x.contig, x.div, y.div) < 2:
            continue
        roots = _scalar_roots(op.operands[0], info)
        if roots is None or any(id(v) not in top for v in roots):
            continue        # only scalars of the kernel's top level: the host can compute them
        for v in roots:
            found[id(v)] = v
    return list(found.values())


# ops whose result is >= 0 where their operands are (the tile ops that carry a scalar into a
# tile, sums and products; wrap-around is ignored, as the rules above ignore it)
_NONNEG_FROM_OPERANDS = ("splat", "broadcast", "expand_dims", "cast", "add", "mul")


def _scalar_roots(v, info):
    """The scalars not known to be >= 0 that tile or scalar `v` is built from through
    _NONNEG_FROM_OPERANDS, or None where `v` also depends on a tile not known to be >= 0."""
    if _get(info, v).nonneg:
        return []
    if not v.type.shape:
        return [v]
    op = v.owner
    if getattr(op, "name", None) not in _NONNEG_FROM_OPERANDS or (
            op.name == "cast" and not op.operands[0].type.elem.is_int):
        return None
    out = []
    for x in op.operands:
        roots = _scalar_roots(x, info)
        if roots is None:
            return None
        out += roots
    return out


def _get(info, v) -> Info:
    return info.get(id(v), Info())


def _block(block, info):
    for op in block.ops:
        _op(op, info)


def _op(op, info):
    name = op.name
    a = [_get(info, v) for v in op.operands]
    res = op.results[0] if op.results else None
    out = Info()
    if name == "constant":
        val = op.attrs["value"]
        d = pow2_div(int(val)) if isinstance(val, int) and not isinstance(val, bool) else 1
        out = Info(1, d, BIG, isinstance(val, (int, float)) and val >= 0)
    elif name == "arange":
        out = Info(_last(res.type), pow2_div(op.attrs["start"]), 1, op.attrs["start"] >= 0)
    elif name in ("program_id", "num_programs"):
        out = Info(1, 1, BIG, True)
    elif name == "splat":
        out = Info(1, a[0].div, BIG, a[0].nonneg)
    elif name == "broadcast":
        src_last = _last(op.operands[0].type)
        if src_last == 1 and _last(res.type) > 1:
            out = Info(1, a[0].div, BIG, a[0].nonneg)
        else:
            out = a[0]
    elif name == "expand_dims":
        # a new last axis of size 1 makes every element the start of its own run: `div` must
        # then hold for each element, and inside a run of consecutive values only 1 does
        # (`rows[:, None] * 3` is not 4-aligned however aligned rows[0] is)
        div = a[0].div if a[0].contig == 1 else 1
        out = Info(1, div, BIG, a[0].nonneg) if op.attrs["axis"] == len(op.operands[0].type.shape) else a[0]
    elif name in ("add", "addptr"):
        x, y = a
        out = Info(max(min(x.contig, y.const), min(y.contig, x.const)), min(x.div, y.div),
                   min(x.const, y.const), name == "add" and x.nonneg and y.nonneg)
    elif name == "mod" and res.type.elem.is_int and a[1].const >= _last(res.type) and (
            a[0].nonneg or not res.type.elem.is_signed):
        # x % y, y one value along the axis and x >= 0 (C's remainder of a negative x is not
        # periodic; of a negative y it equals x % |y|): a run of x that starts at a multiple of
        # g = min(contig, div of x, div of y) cannot straddle a multiple of y, so it stays a run
        # (Triton's `(pid * BLOCK + arange) % M` offsets, with M specialized on divisibility)
        x, y = a
        g = min(x.contig, x.div, y.div)
        out = Info(g, g, min(x.const, y.const), True)
    elif name == "sub":
        x, y = a
        out = Info(min(x.contig, y.const), min(x.div, y.div), min(x.const, y.const))
    elif name == "mul":
        x, y = a
        cx, cy = _const_value(op.operands[0]), _const_value(op.operands[1])
        if cy == 1 or cx == 1:                         # x * 1 keeps everything
            out = x if cy == 1 else y
        else:
            out = Info(1, min(BIG, x.div * y.div), min(x.const, y.const), x.nonneg and y.nonneg)
    elif name in ("shl", "shr") and _const_value(op.operands[1]) is not None:
        x = a[0]
        c = _const_value(op.operands[1])
        if name == "shl":
            out = Info(1, min(BIG, x.div << c), x.const)
        else:                                          # x >> c: divisibility drops by 2^c
            out = Info(1, max(1, x.div >> c), x.const)
    elif (name == "cast" and op.operands[0].type.elem.is_int and res.type.elem.is_int
          and res.type.elem.bits >= 32):
        # int <-> int of at least 32 bits (`offs.to(tl.int64)` and back to an i32 index): values
        # that fit are unchanged, and a wrap-around mod 2^32 keeps runs consecutive, powers of two
        # up to 2^32 dividing, and equal values equal
        out = a[0]
    elif name == "assume":                 # the user's promise (sl.multiple_of / max_contiguous)
        x = a[0]
        out = Info(max(x.contig, op.attrs.get("contig", 1)), max(x.div, op.attrs.get("div", 1)), x.const)
    elif name == "cmp":
        x, y = a
        # x < b and x >= b flip at b itself (le/gt flip at b+1, whose divisibility is unknown)
        if op.attrs["pred"] in ("lt", "ge") and x.contig > 1 and y.const > 1:
            # x runs over [s, s+c) with s % div == 0: constant where no bound falls inside a run
            g = min(x.contig, y.const, x.div, y.div)
            out = Info(1, 1, max(g, min(x.const, y.const)))
        else:
            out = Info(1, 1, min(x.const, y.const))
    elif name in ("and", "or", "xor", "select", "not") and res is not None and res.type.elem.is_bool:
        out = Info(1, 1, min(i.const for i in a))
    elif name in ("and", "or", "xor", "maximum", "minimum", "floordiv", "mod", "shl", "shr", "neg"):
        out = Info(1, 1, min(i.const for i in a))
    elif name == "for":
        body = op.regions[0]
        # the induction variable is lb + i*step: divisible by whatever divides both
        info[id(body.args[0])] = Info(1, min(a[0].div, a[2].div), BIG, a[0].nonneg and a[2].nonneg)
        inits = a[3:]
        cur = list(inits)
        for _ in range(3):                      # iterate to a fixed point (facts only shrink)
            for arg, c in zip(body.args[1:], cur):
                info[id(arg)] = c
            _block(body, info)
            term = body.terminator
            if term is None or term.name != "yield":
                break
            nxt = [_meet(c, _get(info, y)) for c, y in zip(cur, term.operands)]
            if nxt == cur:
                break
            cur = nxt
        for r, c in zip(op.results, cur):
            info[id(r)] = c
        return
    elif name == "while":
        # carried values change at run time: nothing is known of them, but the ops inside
        # still get their facts (loads in the body may vectorize)
        for region in op.regions:
            for arg in region.args:
                info[id(arg)] = Info()
            _block(region, info)
        return
    elif name == "if":
        for region in op.regions:
            _block(region, info)
        outs = None
        for region in op.regions:
            term = region.terminator
            if term is not None and term.name == "yield":
                vals = [_get(info, y) for y in term.operands]
                outs = vals if outs is None else [_meet(x, y) for x, y in zip(outs, vals)]
        for r, c in zip(op.results, outs or [Info()] * len(op.results)):
            info[id(r)] = c
        return
    if res is not None:
        info[id(res)] = replace(out, nonneg=True) if id(res) in info.assumed else out


def _meet(x: Info, y: Info) -> Info:
    return Info(gcd(x.contig, y.contig), gcd(x.div, y.div), gcd(x.const, y.const), x.nonneg and y.nonneg)


def _const_value(v):
    """The value of a scalar or splat integer constant, else None."""
    op = v.owner
    while getattr(op, "name", None) in ("splat", "broadcast", "expand_dims"):
        op = op.operands[0].owner
    if getattr(op, "name", None) == "constant":
        val = op.attrs["value"]
        if isinstance(val, int) and not isinstance(val, bool):
            return val
    return None
