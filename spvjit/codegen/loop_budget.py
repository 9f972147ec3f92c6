"""Fewer loop-header visits per program, for drivers that cap them (lavapipe on Mesa < 26).

llvmpipe keeps ONE counter per shader invocation, set to 65535 when the invocation starts
and decremented at every loop-header visit of any loop; at 0 the loop being run breaks,
silently.  So the limit is not per loop: nesting a loop does not help, only fewer header
visits do.  This module owns the three lowering decisions that follow from it:

- `unroll_for_budget(kernel)`: a `for` with a constant positive step and a small body runs
  as a main loop stepping U*step whose body is U copies of the original one (the carried
  values threaded from copy to copy), then the original loop as the remainder for the last
  < U iterations.  A 100,000-trip loop of a small body makes 100000/16 + 15 header visits.
- `header_visits(kernel)`: an upper bound on one program's header visits when every loop's
  trip count is a constant, else None; the program loop (several programs per workgroup in
  turn) is kept only where all its programs' visits fit the budget.
- `add_exit_checks(kernel)`: where the visits are not bounded under the limit, each loop
  checks at its exit whether its condition still held (only the limiter stops a loop there)
  and reports it through a hidden status buffer that the launcher turns into an error.
  Atomics lowered as compare-and-swap retry loops (codegen/atomics.py: f32 add, 16-bit
  atomics) make the visits unknown too, and report a cut retry loop the same way.

The transforms run on the optimized IR right before lowering; the interpreter runs the IR
as the frontend built it, so the differential tests check that the copies compute the same.
docs/ARCHITECTURE.md ("Loop limits") has the whole rule.
"""
from __future__ import annotations

from ..ir.core import Block, KernelIR, Operation, Param, Value
from ..ir.types import PointerType, TileType, i1, i32
from .atomics import needs_retry_loop
from .loop_status import STATUS_PARAM
from .values import LoweringError

INT32_MIN = -(1 << 31)
OPS_BUDGET = 64          # U * body weight stays under this: bounds code size and lavapipe's compile time
FACTORS = (16, 8, 4, 2)
SHORT_LOOP = 64          # a loop with a constant trip count up to this is left alone
_NEVER_COPIED = {"dot", "return"}   # dot: tiles (and coopmat plans) are big; return: ends the program
_SCALAR_I32 = TileType((), i32)


def unroll_for_budget(kernel: KernelIR) -> KernelIR:
    """Unroll every eligible `for` (innermost first), in place."""
    _unroll_block(kernel.body)
    return kernel


def header_visits(kernel: KernelIR, args: dict | None = None, extra=None) -> int | None:
    """Loop-header visits one program makes (each loop: trips + the final failing check,
    plus its trips times its body's visits), or None when a trip count is not known.  Trip
    counts are known from constants and, given `args` (scalar parameter name -> int), from
    the kernel's scalar arguments, through scalar integer arithmetic; never from program ids
    or loaded values.  `extra(op)`, when given, is the header visits of loops the lowering
    itself emits for an op (dot_forms.extra_visits: a dot lowered as a loop over k, or staged)."""
    env = {id(p.value): int(args[p.name]) for p in _int_params(kernel) if args is not None and p.name in args}
    return _visits(kernel.body, _Scalars(env), extra)


def _int_params(kernel: KernelIR) -> list:
    return [p for p in kernel.params if not p.value.type.is_pointer and p.value.type.elem.is_int]


def depends_only_on_args(kernel: KernelIR) -> bool:
    """Whether `header_visits(kernel, args)` is known for some scalar arguments (a loop bound
    depends on nothing but constants and scalar arguments)."""
    return header_visits(kernel, {p.name: 1 for p in _int_params(kernel)}) is not None


class VisitCounter:
    """`header_visits` of one kernel for the arguments of a launch, remembered per distinct
    integer arguments (launches mostly repeat them; walking the IR costs ~0.1 ms)."""

    def __init__(self, kernel: KernelIR, extra=None):
        self.kernel = kernel
        self.extra = extra
        self.names = [p.name for p in _int_params(kernel)]
        self._seen: dict[tuple, int | None] = {}

    def __call__(self, args: dict) -> int | None:
        key = tuple(args.get(n) for n in self.names)
        if key not in self._seen:
            if len(self._seen) >= 256:
                self._seen.clear()
            self._seen[key] = header_visits(self.kernel, args, self.extra)
        return self._seen[key]


def _visits(block: Block, scalars, extra=None) -> int | None:
    total = 0
    for op in block.ops:
        if needs_retry_loop(op):
            return None                    # a compare-and-swap retry loop: runs until it wins
        inner = 0
        if extra is not None:
            total += extra(op)
        for region in op.regions:
            v = _visits(region, scalars, extra)
            if v is None:
                return None
            inner = max(inner, v)          # `if`: one of its regions runs
        if op.name == "while":
            return None                    # its trip count is known only at run time
        if op.name == "for":
            trips = scalars.trips(op)
            if trips is None:
                return None
            total += trips + 1 + trips * inner
        else:
            total += inner
    return total


def _wrap32(x: int) -> int:
    return (x + (1 << 31)) % (1 << 32) - (1 << 31)


_CMP = {"lt": int.__lt__, "le": int.__le__, "gt": int.__gt__, "ge": int.__ge__, "eq": int.__eq__,
        "ne": int.__ne__}


class _Scalars:
    """Values of scalar integers computed from constants and known arguments, as the device
    computes them (32-bit wrapping); None where unknown."""

    def __init__(self, env: dict):
        self.env = dict(env)

    def trips(self, op: Operation) -> int | None:
        lb, ub, step = (self.value(v) for v in op.operands[:3])
        if lb is None or ub is None or not step:
            return None
        return len(range(lb, ub, step))

    def value(self, v: Value):
        if id(v) not in self.env:
            self.env[id(v)] = self._compute(v)
        return self.env[id(v)]

    def _compute(self, v: Value):
        op = v.owner
        if not isinstance(op, Operation) or v.type.shape:
            return None
        if op.name == "constant":
            c = op.attrs["value"]
            return c if type(c) in (int, bool) else None
        if op.name == "for":
            return self._loop_counter(op, op.results.index(v))
        a = [self.value(x) for x in op.operands] if op.name in _SCALAR_RULES else [None]
        if any(x is None for x in a):
            return None
        return _SCALAR_RULES[op.name](op, *a)

    def _loop_counter(self, op: Operation, i: int):
        """A carried value that starts at the lower bound and steps with the induction
        variable (the unrolled main loop's next_iv, an exit check's iv) ends at lb + trips*step."""
        body = op.regions[0]
        y = body.terminator.operands[i] if body.terminator is not None and body.terminator.name == "yield" else None
        nxt = y.owner if y is not None else None
        if (op.operands[3 + i] is not op.operands[0] or not isinstance(nxt, Operation) or nxt.name != "add"
                or nxt.operands[0] is not body.args[0] or nxt.operands[1] is not op.operands[2]):
            return None
        trips, lb, step = self.trips(op), self.value(op.operands[0]), self.value(op.operands[2])
        return None if trips is None else _wrap32(lb + trips * step)


def _nonneg_div(a: int, b: int, f):
    return f(a, b) if a >= 0 and b > 0 else None    # where C and Python division agree


_SCALAR_RULES = {
    "add": lambda op, a, b: _wrap32(a + b),
    "sub": lambda op, a, b: _wrap32(a - b),
    "mul": lambda op, a, b: _wrap32(a * b),
    "floordiv": lambda op, a, b: _nonneg_div(a, b, int.__floordiv__),
    "mod": lambda op, a, b: _nonneg_div(a, b, int.__mod__),
    "maximum": lambda op, a, b: max(a, b),
    "minimum": lambda op, a, b: min(a, b),
    "cmp": lambda op, a, b: _CMP[op.attrs["pred"]](a, b),
    "select": lambda op, c, a, b: a if c else b,
}


def _const_int(v: Value):
    owner = v.owner
    if isinstance(owner, Operation) and owner.name == "constant" and type(owner.attrs["value"]) is int:
        return owner.attrs["value"]
    return None


def _const_trips(op: Operation) -> int | None:
    lb, ub, step = (_const_int(v) for v in op.operands[:3])
    if lb is None or ub is None or not step:
        return None
    return len(range(lb, ub, step))


def _weight(block: Block) -> int:
    """A body's size in scalar-op equivalents: a tile op weighs one per 128 elements (about a
    register per lane in a workgroup of 128), nested regions count in full."""
    w = 0
    for op in block.ops:
        numel = max((r.type.numel if r.type.shape else 1 for r in op.results), default=1)
        w += max(1, numel // 128)
        for region in op.regions:
            w += _weight(region)
    return w


def _unroll_factor(op: Operation) -> int:
    step = _const_int(op.operands[2])
    if step is None or step <= 0:
        return 1
    body = op.regions[0]
    if body.terminator is None or body.terminator.name != "yield":
        return 1
    if any(inner.name in _NEVER_COPIED for inner in body.walk()):
        return 1
    trips = _const_trips(op)
    if trips is not None and trips <= SHORT_LOOP:
        return 1
    weight = _weight(body)
    for u in FACTORS:
        if u * weight <= OPS_BUDGET:
            return u
    return 1


def _unroll_block(block: Block) -> None:
    out = []
    for op in block.ops:
        for region in op.regions:
            _unroll_block(region)            # innermost first: an unrolled inner loop weighs more
        if op.name == "for":
            u = _unroll_factor(op)
            if u > 1:
                out.extend(_unrolled(op, u))
        out.append(op)
    block.ops = out


def _new(name, operands, result_types, loc, attrs=None, regions=None, hints=None) -> Operation:
    return Operation(name, operands, result_types, attrs, regions, loc, hints)


def _unrolled(op: Operation, u: int) -> list[Operation]:
    """Ops to place before `op`: the main loop over U iterations at a time.  `op` itself
    becomes the remainder loop, starting where the main loop stopped, with its carried values.

        main_ub = ub < INT32_MIN + K ? INT32_MIN : ub - K        K = (U-1)*step
        for iv in [lb, main_ub) step U*step                      iv < main_ub  <=>  iv + K < ub
            copy j of the body with iv + j*step, j = 0..U-1       (no overflow either way)
        for iv in [main's last iv, ub) step step                 the original loop
    """
    loc = op.loc
    lb, ub, step_v = op.operands[:3]
    inits = op.operands[3:]
    step = _const_int(step_v)
    span = (u - 1) * step
    pre = []

    def const(value, ty=_SCALAR_I32):
        c = _new("constant", [], [ty], loc, {"value": value})
        pre.append(c)
        return c.result

    ub_const = _const_int(ub)
    if ub_const is not None:         # a constant bound keeps the trip counts constant (header_visits)
        main_ub = const(INT32_MIN if ub_const < INT32_MIN + span else ub_const - span)
    else:
        low = _new("cmp", [ub, const(INT32_MIN + span)], [TileType((), i1)], loc, {"pred": "lt"})
        less = _new("sub", [ub, const(span)], [_SCALAR_I32], loc)
        select = _new("select", [low.result, const(INT32_MIN), less.result], [_SCALAR_I32], loc)
        pre += [low, less, select]
        main_ub = select.result

    body = op.regions[0]
    carried_types = [a.type for a in body.args[1:]]
    main_body = Block()
    iv0 = main_body.add_arg(_SCALAR_I32, body.args[0].hint)
    carried = [main_body.add_arg(t, a.hint) for t, a in zip(carried_types, body.args[1:])]
    main_body.add_arg(_SCALAR_I32, "next_iv")     # only carried out, to start the remainder loop
    for j in range(u):
        if j == 0:
            iv = iv0
        else:
            c = _new("constant", [], [_SCALAR_I32], loc, {"value": j * step})
            add = _new("add", [iv0, c.result], [_SCALAR_I32], loc, hints=[body.args[0].hint])
            main_body.ops += [c, add]
            iv = add.result
        vmap = {id(body.args[0]): iv, **{id(a): v for a, v in zip(body.args[1:], carried)}}
        for inner in body.ops[:-1]:
            main_body.ops.append(_clone(inner, vmap))
        carried = [vmap.get(id(v), v) for v in body.terminator.operands]
    main_step = const(u * step)
    # iv + the loop's own step: the form header_visits recognizes as a loop counter
    after = _new("add", [iv0, main_step], [_SCALAR_I32], loc, hints=["next_iv"])
    main_body.ops += [after, _new("yield", carried + [after.result], [], loc)]
    main = _new("for", [lb, main_ub, main_step, *inits, lb], carried_types + [_SCALAR_I32],
                loc, regions=[main_body], hints=[v.hint for v in op.results] + ["next_iv"])
    pre.append(main)
    start = main.results[-1]
    lb_const = _const_int(lb)
    if lb_const is not None and ub_const is not None:   # keep the remainder's trip count constant too
        main_trips = len(range(lb_const, _const_int(main_ub), u * step))
        start = const(lb_const + main_trips * u * step)
    op.operands = [start, ub, step_v, *main.results[:-1]]
    return pre


def _clone(op: Operation, vmap: dict) -> Operation:
    """A deep copy of `op` (regions included) reading values through `vmap`, which gains the
    copy's results and region arguments."""
    regions = []
    for region in op.regions:
        nb = Block()
        for a in region.args:
            vmap[id(a)] = nb.add_arg(a.type, a.hint)
        nb.ops = [_clone(inner, vmap) for inner in region.ops]
        regions.append(nb)
    new = Operation(op.name, [vmap.get(id(v), v) for v in op.operands], [r.type for r in op.results],
                    op.attrs, regions, op.loc, [r.hint for r in op.results])
    for old, res in zip(op.results, new.results):
        vmap[id(old)] = res
    return new


def add_exit_checks(kernel: KernelIR) -> bool:
    """After every loop, check whether its condition still held when it stopped: only the
    driver's limiter ends a loop that way.  Then the program writes 1 to a hidden buffer
    (pointer parameter STATUS_PARAM, appended to the kernel's) that the launcher reads back and
    turns into an error.  Each loop carries its induction variable out for the check (one
    more phi).  Atomics lowered as compare-and-swap retry loops check themselves (codegen/
    atomics.py) and need the buffer too.  Returns whether anything was added (no loops:
    nothing to check)."""
    status = Value(TileType((), PointerType(i32)), STATUS_PARAM)
    loops = _check_block(kernel.body, status)
    if not loops and not any(needs_retry_loop(op) for op in kernel.walk()):
        return False
    kernel.params.append(Param(STATUS_PARAM, status))
    return True


def _check_block(block: Block, status: Value) -> bool:
    out, added = [], False
    for op in block.ops:
        for region in op.regions:
            added |= _check_block(region, status)
        out.append(op)
        term = op.regions[0].terminator if op.name == "for" else None
        if term is not None and term.name == "yield":
            out += _exit_check(op, status)
            added = True
        elif op.name == "while":
            out += _while_exit_check(op, status)
            added = True
    block.ops = out
    return added


def _exit_check(op: Operation, status: Value) -> list[Operation]:
    """Carry `op`'s induction variable out and return the ops that follow the loop:
    `if (iv_out still in range) store 1 -> status`."""
    loc = op.loc
    lb, ub, step = op.operands[:3]
    body = op.regions[0]
    body.add_arg(_SCALAR_I32, "iv_carried")      # unused inside: only the yield feeds it
    term = body.ops.pop()
    nxt = _new("add", [body.args[0], step], [_SCALAR_I32], loc, hints=["iv_next"])
    body.ops += [nxt, _new("yield", list(term.operands) + [nxt.result], [], loc)]
    iv_out = Value(_SCALAR_I32, "iv_out", op)
    op.operands.append(lb)
    op.results.append(iv_out)
    b1 = TileType((), i1)
    const_step = _const_int(step)
    ops = []
    if const_step is not None:
        pending = _new("cmp", [iv_out, ub], [b1], loc, {"pred": "lt" if const_step > 0 else "gt"})
        ops.append(pending)
    else:
        zero = _new("constant", [], [_SCALAR_I32], loc, {"value": 0})
        up = _new("cmp", [step, zero.result], [b1], loc, {"pred": "gt"})
        below = _new("cmp", [iv_out, ub], [b1], loc, {"pred": "lt"})
        above = _new("cmp", [iv_out, ub], [b1], loc, {"pred": "gt"})
        pending = _new("select", [up.result, below.result, above.result], [b1], loc)
        ops += [zero, up, below, above, pending]
    then = Block()
    one = _new("constant", [], [_SCALAR_I32], loc, {"value": 1})
    then.ops = [one, _new("store", [status, one.result], [], loc), _new("yield", [], [], loc)]
    other = Block()
    other.ops = [_new("yield", [], [], loc)]
    ops.append(_new("if", [pending.result], [], loc, regions=[then, other]))
    return ops


# ops whose second run would differ from the first or be seen: a condition holding one of
# them cannot be evaluated again after its loop
_SIDE_EFFECTS = {"store", "atomic_rmw", "print", "assert", "barrier", "return"}


def _while_exit_check(op: Operation, status: Value) -> list[Operation]:
    """After a `while`, evaluate its condition once more on the values it ended with: a
    loop that stopped on its own ended with the condition false (nothing ran in between),
    so true there means the limiter stopped it.  The condition region is cloned, which needs
    it free of side effects (a spin lock's atomic, a print)."""
    before = op.regions[0]
    bad = next((inner for inner in before.walk() if inner.name in _SIDE_EFFECTS
                and not (inner.name == "store" and inner.operands[0] is status)), None)   # inner loops' checks
    if bad is not None:
        where = f"{op.loc}: " if op.loc else ""
        raise LoweringError(f"{where}this `while` loop's condition has a side effect ('{bad.name}'), and on "
                            "this driver, which stops long-running loops silently, a loop is checked by "
                            "evaluating its condition again after it; compute the condition into a "
                            "variable at the end of the body instead")
    vmap = {id(a): r for a, r in zip(before.args, op.results)}
    ops = [_clone(inner, vmap) for inner in before.ops[:-1]]
    pending = vmap.get(id(before.terminator.operands[0]), before.terminator.operands[0])
    loc = op.loc
    then = Block()
    one = _new("constant", [], [_SCALAR_I32], loc, {"value": 1})
    then.ops = [one, _new("store", [status, one.result], [], loc), _new("yield", [], [], loc)]
    other = Block()
    other.ops = [_new("yield", [], [], loc)]
    ops.append(_new("if", [pending], [], loc, regions=[then, other]))
    return ops
