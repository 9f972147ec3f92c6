"""Python AST of a kernel -> tile IR.

Names hold either IR tiles (`sl.tensor`) or plain Python values (constexprs,
dtypes, tuples): arithmetic on Python values folds at compile time, as in
Triton.  `if` on a constexpr picks a branch statically; `if` on a runtime
scalar becomes an IR `if` whose results are the names either branch assigns;
`range` loops become IR `for` and `while cond:` an IR `while`, with the names
the body reassigns carried (block pointers by their scalar fields).
"""
from __future__ import annotations

import ast
import builtins
import operator
import types as pytypes
from typing import Any

from ..ir import types as T
from ..ir.core import Block, Builder
from ..language import builtins as lang_builtins
from ..language.core import constexpr, tensor
from .block_pointer import BlockPointer
from .errors import CompilationError, SemanticError
from .kernel_function import KernelFunction
from .semantic import is_number, promote, unwrap
from .source import FunctionSource

_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "truediv",
           ast.FloorDiv: "floordiv", ast.Mod: "mod", ast.Pow: "pow", ast.BitAnd: "and",
           ast.BitOr: "or", ast.BitXor: "xor", ast.LShift: "shl", ast.RShift: "shr"}
_PYOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
          ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
          ast.Pow: operator.pow, ast.BitAnd: operator.and_, ast.BitOr: operator.or_,
          ast.BitXor: operator.xor, ast.LShift: operator.lshift, ast.RShift: operator.rshift}
_CMPOPS = {ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge", ast.Eq: "eq", ast.NotEq: "ne"}
_PYCMP = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
          ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Is: operator.is_, ast.IsNot: operator.is_not}
_PY_BUILTINS = {"range": lang_builtins.range, "min": builtins.min, "max": builtins.max,
                "float": float, "int": int, "bool": bool, "len": len, "abs": builtins.abs,
                "tuple": tuple, "isinstance": isinstance, "print": None, "getattr": getattr,
                "hasattr": hasattr}
_UNSUPPORTED = {ast.Try: "`try`",
                ast.With: "`with`", ast.Raise: "`raise`", ast.Global: "`global`",
                ast.Nonlocal: "`nonlocal`", ast.Delete: "`del`", ast.Import: "`import`",
                ast.ImportFrom: "`import`", ast.ClassDef: "class definitions",
                ast.FunctionDef: "nested functions",
                ast.Break: "`break` (as in Triton; carry a flag into the loop's condition instead)",
                ast.Continue: "`continue` (as in Triton; guard the rest of the body with `if`)",
                ast.AsyncFor: "`async for`", ast.AsyncWith: "`async with`", ast.Match: "`match`"}
_UNSUPPORTED_EXPR = {ast.ListComp: "list comprehensions", ast.SetComp: "set comprehensions",
                     ast.DictComp: "dict comprehensions", ast.GeneratorExp: "generator expressions",
                     ast.Lambda: "lambda", ast.Dict: "dict literals", ast.Set: "set literals",
                     ast.JoinedStr: "f-strings", ast.Await: "await", ast.Yield: "yield",
                     ast.NamedExpr: "`:=`", ast.Starred: "`*` unpacking"}


class _Returned(Exception):
    """Unwinds statement lists after a `return` (the rest of the block is dead)."""


def assigned_names(stmts) -> list[str]:
    """Names a statement list may (re)bind, in first-seen order."""
    out: list[str] = []
    for node in stmts:
        for sub in ast.walk(node):
            targets = []
            if isinstance(sub, ast.Assign):
                targets = sub.targets
            elif isinstance(sub, (ast.AugAssign, ast.AnnAssign)):
                targets = [sub.target]
            elif isinstance(sub, ast.For):
                targets = [sub.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name) and n.id not in out:
                        out.append(n.id)
    return out


# Helpers are inlined, so a helper that calls itself with a depth known only at run time
# would inline forever; past this many nested calls it is a CompilationError at the call.
MAX_INLINE_DEPTH = 24


class KernelCodegen(ast.NodeVisitor):
    inline_depth = 0  # helpers being inlined around this one

    def __init__(self, src: FunctionSource, sem, args: dict[str, Any], helper: bool = False):
        self.src = src
        self.sem = sem
        self.symbols: dict[str, Any] = dict(args)
        self.globals = getattr(src.fn, "__globals__", {})
        self.closure = _closure_vars(src.fn)     # helpers and constexprs of an enclosing function
        self.helper = helper
        self.return_value = None

    @property
    def b(self) -> Builder:
        return self.sem.b

    def err(self, msg: str, node) -> CompilationError:
        return self.src.error(msg, node)

    # ---- statements -----------------------------------------------------------
    def run(self):
        body = self.src.tree.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:]          # docstring
        try:
            self.visit_stmts(body)
        except _Returned:
            pass
        return self.return_value

    def visit_stmts(self, stmts):
        for i, s in enumerate(stmts):
            self.b.loc = self.src.loc(s)
            try:
                if self.helper and isinstance(s, ast.If) and self._has_return(s) \
                        and self.b.block is self.root_block:
                    self._if_that_returns(s, stmts[i + 1:])   # consumes the rest of the list
                    return
                self.visit(s)
            except SemanticError as e:
                # semantic calls made by statements themselves (`x += y`, loop-carried and
                # if-merged values) are outside eval(): give them the statement's location too
                raise self.err(str(e), s) from None

    def generic_visit(self, node):
        kind = _UNSUPPORTED.get(type(node)) or _UNSUPPORTED_EXPR.get(type(node))
        what = kind or f"`{type(node).__name__}`"
        # plural names ("list comprehensions", "`while` loops (...)") take "are"
        verb = "are" if what.split(" (")[0].endswith("s") else "is"
        raise self.err(f"{what} {verb} not supported in kernels", node)

    def visit_Pass(self, node):
        pass

    def visit_Expr(self, node):
        if isinstance(node.value, ast.Constant):
            return
        self.eval(node.value)

    def visit_Assign(self, node):
        value = self.eval(node.value)
        for target in node.targets:
            self.assign(target, value, node)

    def visit_AnnAssign(self, node):
        if node.value is None:
            raise self.err("an annotation without a value declares nothing", node)
        self.assign(node.target, self.eval(node.value), node)

    def visit_AugAssign(self, node):
        if not isinstance(node.target, ast.Name):
            raise self.err("augmented assignment needs a plain name on the left", node)
        cur = self.lookup(node.target.id, node.target)
        self.assign(node.target, self.binop(type(node.op), cur, self.eval(node.value), node), node)

    def assign(self, target, value, node):
        if isinstance(target, ast.Name):
            self.symbols[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            if not isinstance(value, tuple) or len(value) != len(target.elts):
                raise self.err(f"cannot unpack {value!r} into {len(target.elts)} names", node)
            for t, v in zip(target.elts, value):
                self.assign(t, v, node)
        else:
            raise self.err("only assignments to names (and tuples of names) are supported", target)

    def visit_Assert(self, node):
        cond = self.eval(node.test)
        if isinstance(cond, tensor):
            raise self.err("runtime assertions are not supported; use sl.static_assert on constexprs", node)
        if not cond:
            msg = self.eval(node.msg) if node.msg is not None else "assertion failed"
            raise self.err(f"static assertion failed: {msg}", node)

    def visit_Return(self, node):
        value = None if node.value is None else self.eval(node.value)
        if self.helper:
            if self.b.block is not self.root_block:
                raise self.err("a helper kernel may return only at its top level", node)
            self.return_value = value
            raise _Returned()
        if value is not None:
            raise self.err("a kernel launched from the host cannot return a value; store it", node)
        self.b.create("return", [], [])
        raise _Returned()

    # ---- if -----------------------------------------------------------------
    def visit_If(self, node):
        cond = self.eval(node.test)
        if not isinstance(cond, tensor):
            self.visit_stmts(node.body if cond else node.orelse)
            return
        if self.helper and self._has_return(node):
            raise self.err("a helper kernel may return only at its top level", node)
        try:
            cond = self.sem.to_cond(cond)
        except SemanticError as e:
            raise self.err(f"`if` on a tensor: {e}; use sl.where for element-wise choice", node.test)
        before = dict(self.symbols)
        branches = []
        for stmts in (node.body, node.orelse):
            block = Block()
            self.symbols = dict(before)
            terminated = self._lower_region(block, stmts)
            branches.append((block, dict(self.symbols), terminated))
        live = [br for br in branches if not br[2]]
        names = self._merged_names(before, live, node)
        pointers = self._merged_block_pointers(before, live, node)
        result_types = []
        for name in names:
            result_types.append(self._merged_type(name, live, node))
        for block, syms, terminated in branches:
            if not terminated:
                fields = [f for n in pointers for f in syms[n].fields()]
                self._yield(block, [self._coerce(syms[n], t, node) for n, t in zip(names, result_types)]
                            + fields, node)
        field_values, field_hints = self._flatten(pointers, [live[0][1][n] for n in pointers]) if live else ([], [])
        op = self.b.create("if", [cond.handle], result_types + [f.type for f in field_values],
                           regions=[b for b, _, _ in branches], hints=list(names) + field_hints)
        self.symbols = dict(before)
        if not live:
            raise _Returned()
        if len(live) == 1:
            # names only one live branch set are still defined after the `if`
            self.symbols.update({k: v for k, v in live[0][1].items() if k not in names and k not in pointers})
        for name, res in zip(names, op.results):
            self.symbols[name] = tensor(res)
        rest = list(op.results[len(names):])
        for name in pointers:
            self.symbols[name] = self._rebuild(live[0][1][name], rest)

    def _merged_block_pointers(self, before, live, node) -> list[str]:
        """Block pointers a branch reassigns: the `if` yields their scalar fields."""
        if not live:
            return []
        out = []
        for name in sorted(set.intersection(*(set(s) for _, s, _ in live))):
            vals = [s[name] for _, s, _ in live]
            if not any(isinstance(v, BlockPointer) for v in vals):
                continue
            if all(v is before.get(name, _MISSING) for v in vals):
                continue
            if not all(isinstance(v, BlockPointer) and vals[0].same_kind(v) for v in vals):
                raise self.err(f"'{name}' is {vals[0]!r} in one branch and {vals[-1]!r} in the other; "
                               "both branches must leave a block pointer of one element type and block "
                               "shape", node)
            out.append(name)
        return out

    def _if_that_returns(self, node, rest):
        """A helper's `if` with a `return` inside, at the helper's top level (as Triton allows):
        the statements after the `if` run in each branch that does not return first, so every
        path ends in a return, and the `if` yields the returned values."""
        cond = self.eval(node.test)
        if not isinstance(cond, tensor):
            self.visit_stmts(list(node.body if cond else node.orelse) + list(rest))
            return
        try:
            cond = self.sem.to_cond(cond)
        except SemanticError as e:
            raise self.err(f"`if` on a tensor: {e}; use sl.where for element-wise choice", node.test)
        before, outer_root = dict(self.symbols), self.root_block
        branches = []
        for stmts in (node.body, node.orelse):
            block = Block()
            self.symbols, self.root_block, self.return_value = dict(before), block, None
            self._lower_region(block, list(stmts) + list(rest))
            value = self.return_value
            branches.append((block, list(value) if isinstance(value, tuple) else
                             ([] if value is None else [value]), isinstance(value, tuple)))
        self.symbols, self.root_block = before, outer_root
        (b0, v0, tup0), (b1, v1, tup1) = branches
        if len(v0) != len(v1) or tup0 != tup1:
            raise self.err("the branches of this `if` return different numbers of values", node)
        live = [(b0, {i: v for i, v in enumerate(v0)}, False), (b1, {i: v for i, v in enumerate(v1)}, False)]
        types_ = [self._merged_type(i, live, node) for i in range(len(v0))]
        for block, values, _ in branches:
            self._yield(block, [self._coerce(v, t, node) for v, t in zip(values, types_)], node)
        op = self.b.create("if", [cond.handle], types_, regions=[b0, b1], hints=[f"ret{i}" for i in range(len(v0))])
        results = [tensor(r) for r in op.results]
        self.return_value = tuple(results) if tup0 else (results[0] if results else None)
        raise _Returned()

    def _has_return(self, node) -> bool:
        return any(isinstance(n, ast.Return) for n in ast.walk(node))

    def _lower_region(self, block: Block, stmts) -> bool:
        """Lower statements into `block`; True if they ended in `return`."""
        saved = self.b.block
        self.b.block = block
        try:
            self.visit_stmts(stmts)
            return False
        except _Returned:
            return True
        finally:
            self.b.block = saved

    def _merged_names(self, before, live, node) -> list[str]:
        names = []
        if not live:
            return names
        keys = set.intersection(*(set(s) for _, s, _ in live))
        for name in sorted(keys):
            vals = [s[name] for _, s, _ in live]
            changed = any(v is not before.get(name, _MISSING) for v in vals)
            if any(isinstance(v, BlockPointer) for v in vals):
                continue                       # _merged_block_pointers
            if changed and (any(isinstance(v, tensor) for v in vals) or len(live) == 1 and name in before):
                names.append(name)
            elif changed and not all(v == vals[0] for v in vals):
                if all(is_number(v) for v in vals):
                    names.append(name)
        return names

    def _merged_type(self, name, live, node) -> T.TileType:
        types_ = [v.type for _, s, _ in live for v in [s[name]] if isinstance(v, tensor)]
        if not types_:
            # Python numbers in every branch: promote them all (`s = 1` / `s = 2.5` gives f32,
            # not an i32 that cannot hold 2.5)
            try:
                dts = [self.sem.literal_dtype(unwrap(s[name])) for _, s, _ in live]
            except SemanticError as e:
                raise self.err(f"'{name}': {e}", node) from None
            dt = dts[0]
            for other in dts[1:]:
                dt = promote(dt, other)
            return T.TileType((), dt)
        if any(t != types_[0] for t in types_):
            raise self.err(f"'{name}' is {types_[0]} in one branch and {types_[1]} in the other", node)
        return types_[0]

    def _coerce(self, value, ty: T.TileType, node):
        value = unwrap(value)
        if isinstance(value, tensor):
            return value
        if is_number(value) and ty.is_scalar and not ty.is_pointer:
            try:
                return self.sem.constant(value, ty.elem)
            except SemanticError as e:   # e.g. 2.5 merged with an i32: report it at the `if`
                raise self.err(f"cannot merge the compile-time value {value!r} with a runtime {ty}: {e}",
                               node) from None
        raise self.err(f"cannot merge the compile-time value {value!r} with a runtime {ty}", node)

    def _yield(self, block: Block, values, node):
        saved = self.b.block
        self.b.block = block
        try:
            vals = [self._coerce(v, None, node) if not isinstance(v, tensor) else v for v in values]
            self.b.create("yield", [v.handle for v in vals], [])
        finally:
            self.b.block = saved

    # ---- for ------------------------------------------------------------------
    def visit_For(self, node):
        if node.orelse:
            raise self.err("`for ... else` is not supported", node)
        it = node.iter
        if not isinstance(it, ast.Call):
            raise self.err("kernels loop only over range(...), sl.range(...) or sl.static_range(...)", it)
        fn = self.eval(it.func)
        args = [self.eval(a) for a in it.args]
        if fn in (lang_builtins.static_range, lang_builtins.range):
            args = self._range_args(fn, args, {k.arg: self.eval(k.value) for k in it.keywords}, it)
        elif it.keywords:
            raise self.err(f"{getattr(fn, '__name__', fn)}() in a `for` takes no keyword arguments", it)
        if fn is lang_builtins.static_range:
            bounds = [unwrap(a) for a in args]
            if not all(isinstance(a, int) for a in bounds):
                raise self.err("sl.static_range needs constexpr integer bounds", it)
            for i in builtins.range(*bounds):
                self.assign(node.target, i, node)
                self.visit_stmts(node.body)
            return
        if fn is not lang_builtins.range:
            raise self.err("kernels loop only over range(...), sl.range(...) or sl.static_range(...)", it)
        if not isinstance(node.target, ast.Name):
            raise self.err("the loop variable must be a plain name", node.target)
        if not 1 <= len(args) <= 3:
            raise self.err("range takes 1 to 3 arguments", it)
        lo, hi, step = (0, args[0], 1) if len(args) == 1 else (args[0], args[1], args[2] if len(args) == 3 else 1)
        if is_number(unwrap(step)) and unwrap(step) == 0:
            raise self.err("range step must not be zero", it)
        try:
            bounds = [self.sem.to_tensor(v, T.i32) for v in (lo, hi, step)]
            wide = [b for b in bounds if not b.type.is_pointer and b.dtype.bits == 64]
            if wide:
                # the induction variable is an i32; truncating a 64-bit bound would loop wrongly
                raise SemanticError(f"range bounds must be 32-bit integers, got {wide[0].dtype}; "
                                    "convert with .to(tl.int32)")
            bounds = [self.sem.cast(b, T.i32) for b in bounds]
        except SemanticError as e:
            raise self.err(str(e), it)
        if any(b.shape != () for b in bounds):
            raise self.err("range bounds must be scalars", it)
        carried = [n for n in assigned_names(node.body) if n in self.symbols and n != node.target.id]
        inits = self._carried_inits(carried, node)
        body = Block()
        iv = body.add_arg(T.TileType((), T.i32), node.target.id)
        before = dict(self.symbols)
        self._bind_carried_args(body, carried, inits)
        self.symbols[node.target.id] = tensor(iv)
        if self.helper and self._has_return(node):
            raise self.err("a helper kernel may return only at its top level", node)
        terminated = self._lower_region(body, node.body)
        if not terminated:
            self._yield_carried(body, carried, inits, node)
        leaves, hints = self._flatten(carried, inits)
        op = self.b.create("for", [b.handle for b in bounds] + [v.handle for v in leaves],
                           [v.type for v in leaves], regions=[body], hints=hints)
        self.symbols = before
        self._bind_carried_results(op, carried, inits)

    # A loop carries tensors, and block pointers by their scalar fields (block_pointer.py).
    @staticmethod
    def _flatten(carried, values) -> tuple[list, list]:
        leaves, hints = [], []
        for n, v in zip(carried, values):
            fields = v.fields() if isinstance(v, BlockPointer) else [v]
            leaves += fields
            hints += [n] if len(fields) == 1 else [f"{n}.{i}" for i in range(len(fields))]
        return leaves, hints

    @staticmethod
    def _rebuild(init, leaves: list):
        """The carried value of `init`'s kind over the next values of `leaves` (consumed)."""
        if isinstance(init, BlockPointer):
            n = len(init.fields())
            taken = [tensor(leaves.pop(0)) for _ in range(n)]
            return init.rebuild(taken)
        return tensor(leaves.pop(0))

    def _bind_carried_args(self, block: Block, carried, inits):
        _, hints = self._flatten(carried, inits)
        args = [block.add_arg(v.type, h) for v, h in zip(self._flatten(carried, inits)[0], hints)]
        for n, init in zip(carried, inits):
            self.symbols[n] = self._rebuild(init, args)

    def _bind_carried_results(self, op, carried, inits):
        results = list(op.results)
        for n, init in zip(carried, inits):
            self.symbols[n] = self._rebuild(init, results)

    def _carried_inits(self, carried, node) -> list:
        """The current values of the names a runtime loop reassigns, as tensors."""
        inits = []
        for n in carried:
            v = unwrap(self.symbols[n])
            if is_number(v):
                v = self.sem.to_tensor(v)
            if not isinstance(v, (tensor, BlockPointer)):
                raise self.err(f"'{n}' holds the compile-time value {v!r} and is reassigned in a runtime loop", node)
            inits.append(v)
        return inits

    def _yield_carried(self, body: Block, carried, inits, node):
        """End a loop body: yield the carried names' new values, which must keep their types."""
        outs = []
        saved, self.b.block = self.b.block, body
        for n, init in zip(carried, inits):
            v = unwrap(self.symbols[n])
            if isinstance(init, BlockPointer) or isinstance(v, BlockPointer):
                if not (isinstance(init, BlockPointer) and init.same_kind(v)):
                    raise self.err(f"loop-carried value '{n}' changes from {init!r} to {v!r} inside the loop; "
                                   "a carried block pointer keeps its element type and block shape", node)
                outs += v.fields()
                continue
            if is_number(v) and init.shape == ():
                try:
                    v = self.sem.constant(v, init.dtype)   # `acc = 0` inside the loop keeps acc's type
                except SemanticError:                      # `acc = 2.5` with an i32 acc
                    raise self.err(f"loop-carried value '{n}' changes type from {init.type} to the "
                                   f"constant {v!r} inside the loop; start it as {v!r}'s type", node) from None
            if not isinstance(v, tensor) or v.type != init.type:
                got = v.type if isinstance(v, tensor) else repr(v)
                raise self.err(f"loop-carried value '{n}' changes type from {init.type} to {got} "
                               f"inside the loop; convert it with .to() so both agree", node)
            outs.append(v)
        self.b.block = saved
        self._yield(body, outs, node)

    # ---- while ----------------------------------------------------------------
    def visit_While(self, node):
        """`while cond:` with a scalar runtime condition (as in Triton): an IR `while` whose
        first region evaluates `cond` from the carried names, the second runs the body."""
        if node.orelse:
            raise self.err("`while ... else` is not supported", node)
        if self.helper and self._has_return(node):
            raise self.err("a helper kernel may return only at its top level", node)
        carried = [n for n in assigned_names(node.body) if n in self.symbols]
        inits = self._carried_inits(carried, node)
        before = dict(self.symbols)
        cond_block, body = Block(), Block()
        for block in (cond_block, body):
            self._bind_carried_args(block, carried, inits)
            if block is cond_block:
                saved, self.b.block = self.b.block, cond_block
                try:
                    self.b.loc = self.src.loc(node.test)
                    cond = unwrap(self.eval(node.test))
                    if not isinstance(cond, tensor):
                        if cond:
                            raise self.err("this `while` condition is always true and kernels have no "
                                           "`break`: the loop would never end", node.test)
                        self.symbols = before
                        return           # never runs: nothing to emit
                    try:
                        cond = self.sem.to_cond(cond)
                    except SemanticError as e:
                        raise self.err(f"`while` on a tensor: {e}", node.test) from None
                    self.b.create("yield", [cond.handle], [])
                finally:
                    self.b.block = saved
        if not self._lower_region(body, node.body):
            self._yield_carried(body, carried, inits, node)
        self.b.loc = self.src.loc(node)
        leaves, hints = self._flatten(carried, inits)
        op = self.b.create("while", [v.handle for v in leaves], [v.type for v in leaves],
                           regions=[cond_block, body], hints=hints)
        self.symbols = before
        self._bind_carried_results(op, carried, inits)

    def _range_args(self, fn, args, kwargs, node) -> list:
        """(start, end, step) of `range(...)`/`static_range(...)`, keywords included
        (`tl.range(0, 10, step=2)`); loop hints such as num_stages are accepted and ignored."""
        hints = {"num_stages", "loop_unroll_factor", "disallow_acc_multi_buffer", "flatten",
                 "warp_specialize", "disable_licm"}
        names = ("arg1", "arg2", "step")
        given = dict(zip(names, args))
        if len(args) > 3:
            raise self.err("range takes 1 to 3 positional arguments", node)
        for k, v in kwargs.items():
            if k in hints and fn is lang_builtins.range:
                continue
            key = {"start": "arg1", "end": "arg2", "stop": "arg2"}.get(k, k)
            if key not in names or key in given:
                raise self.err(f"unexpected or repeated range argument '{k}'", node)
            given[key] = v
        if "arg1" not in given:
            raise self.err("range needs an end", node)
        if "arg2" not in given:
            if "step" in given:
                return [0, given["arg1"], given["step"]]
            return [given["arg1"]]
        return [given["arg1"], given["arg2"]] + ([given["step"]] if "step" in given else [])

    # ---- expressions ------------------------------------------------------------
    def eval(self, node):
        self.b.loc = self.src.loc(node) if hasattr(node, "lineno") else self.b.loc
        method = getattr(self, "eval_" + type(node).__name__, None)
        if method is None:
            return self.generic_visit(node)
        try:
            return method(node)
        except CompilationError:
            raise
        except SemanticError as e:
            raise self.err(str(e), node) from None
        except (TypeError, ValueError, ZeroDivisionError, IndexError, AttributeError) as e:
            raise self.err(str(e), node) from None

    def eval_Constant(self, node):
        return node.value

    def eval_Name(self, node):
        return self.lookup(node.id, node)

    def lookup(self, name, node):
        if name in self.symbols:
            return self.symbols[name]
        if name in self.closure:
            return self.check_global(name, self.closure[name], node)
        if name in self.globals:
            return self.check_global(name, self.globals[name], node)
        if name in _PY_BUILTINS:
            if _PY_BUILTINS[name] is None:
                raise self.err(f"`{name}` is not supported in kernels", node)
            return _PY_BUILTINS[name]
        raise self.err(f"name '{name}' is not defined", node)

    def check_global(self, name, value, node):
        if isinstance(value, constexpr):
            return value.value
        if isinstance(value, (pytypes.ModuleType, KernelFunction, T.DType, type)) or value is None:
            return value
        if callable(value) and getattr(value, "__module__", "").startswith("spvjit.language"):
            return value
        raise self.err(f"cannot read global '{name}' ({type(value).__name__}) inside a kernel: only "
                       f"sl.constexpr globals, modules and kernels are visible; write "
                       f"`{name} = sl.constexpr(...)` or pass it as an argument", node)

    def eval_Attribute(self, node):
        base = self.eval(node.value)
        if isinstance(base, pytypes.ModuleType):
            attr = getattr(base, node.attr, _MISSING)
            if attr is _MISSING:
                raise self.err(f"module '{base.__name__}' has no attribute '{node.attr}'", node)
            return self.check_global(f"{base.__name__}.{node.attr}", attr, node) \
                if not is_number(attr) else attr
        if isinstance(base, tensor) and (node.attr.startswith("_") or not hasattr(tensor, node.attr)):
            raise self.err(f"tensors have no attribute '{node.attr}'", node)
        return getattr(base, node.attr)

    def eval_Tuple(self, node):
        return tuple(self.eval(e) for e in node.elts)

    eval_List = eval_Tuple

    def eval_Slice(self, node):
        parts = [None if p is None else self.eval(p) for p in (node.lower, node.upper, node.step)]
        return slice(*parts)

    def eval_Subscript(self, node):
        base = self.eval(node.value)
        index = self.eval(node.slice)
        if isinstance(base, tensor):
            return self.sem.subscript(base, index)
        return base[unwrap(index)]

    def eval_BinOp(self, node):
        return self.binop(type(node.op), self.eval(node.left), self.eval(node.right), node)

    def binop(self, op, a, b, node):
        if op not in _BINOPS:
            raise self.err(f"operator {op.__name__} is not supported", node)
        ua, ub = unwrap(a), unwrap(b)
        if not isinstance(ua, tensor) and not isinstance(ub, tensor):
            return _PYOPS[op](ua, ub)
        return self.sem.binary(_BINOPS[op], ua, ub)

    def eval_UnaryOp(self, node):
        v = unwrap(self.eval(node.operand))
        op = type(node.op)
        if not isinstance(v, tensor):
            return {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_,
                    ast.Invert: operator.invert}[op](v)
        if op is ast.USub:
            return self.sem.unary("neg", v)
        if op is ast.UAdd:
            return v
        if op is ast.Invert:
            return self.sem.unary("not", v)
        return self.sem.compare("eq", self.sem.to_cond(v) if v.shape == () else v, 0) \
            if not v.dtype.is_bool else self.sem.unary("not", v)

    def eval_Compare(self, node):
        if len(node.ops) != 1:
            raise self.err("chained comparisons are not supported; combine with & or `and`", node)
        a, b = unwrap(self.eval(node.left)), unwrap(self.eval(node.comparators[0]))
        op = type(node.ops[0])
        if not isinstance(a, tensor) and not isinstance(b, tensor):
            if op not in _PYCMP:
                raise self.err(f"operator {op.__name__} is not supported", node)
            return _PYCMP[op](a, b)
        if op not in _CMPOPS:
            raise self.err(f"operator {op.__name__} is not supported on tensors", node)
        return self.sem.compare(_CMPOPS[op], a, b)

    def eval_BoolOp(self, node):
        is_and = isinstance(node.op, ast.And)
        vals = []
        for v in node.values:
            val = unwrap(self.eval(v))
            vals.append(val)
            # compile-time values short-circuit as in Python: `X is not None and X.shape[0] > 1`
            if not any(isinstance(x, tensor) for x in vals) and (not val if is_and else val):
                return val
        if not any(isinstance(v, tensor) for v in vals):
            out = vals[0]
            for v in vals[1:]:
                out = (out and v) if isinstance(node.op, ast.And) else (out or v)
            return out
        conds = [self.sem.to_cond(v) if isinstance(v, tensor) else bool(v) for v in vals]
        out = conds[0]
        for c in conds[1:]:
            out = self.sem.binary("and" if isinstance(node.op, ast.And) else "or", out, c)
        return out

    def eval_IfExp(self, node):
        cond = unwrap(self.eval(node.test))
        if not isinstance(cond, tensor):
            return self.eval(node.body if cond else node.orelse)
        return self.sem.where(cond, self.eval(node.body), self.eval(node.orelse))

    def eval_Call(self, node):
        fn = self.eval(node.func)
        args = [self.eval(a) for a in node.args]
        kwargs = {k.arg: self.eval(k.value) for k in node.keywords}
        if isinstance(fn, KernelFunction):
            return self.inline(fn, args, kwargs, node)
        if isinstance(fn, type) and issubclass(fn, (lang_builtins.range, lang_builtins.static_range)):
            raise self.err("range(...) can only be used as a `for` loop's iterable", node)
        if fn in (float, int, bool) and args and isinstance(unwrap(args[0]), tensor):
            raise self.err(f"{fn.__name__}() of a tensor; use .to(sl.{'float32' if fn is float else 'int32'})", node)
        # builtins that take a combine function (tl.reduce, tl.associative_scan) inline it here
        self.sem.jit_caller = lambda f, a: self.inline(f, a, {}, node)
        if fn in (builtins.min, builtins.max) and any(isinstance(unwrap(a), tensor) for a in args):
            # as in Triton: min/max of tensors mean element-wise minimum/maximum
            if len(args) < 2 or kwargs:
                raise self.err(f"{fn.__name__}() of tensors takes two or more positional values", node)
            out = args[0]
            for a in args[1:]:
                out = self.sem.binary("minimum" if fn is builtins.min else "maximum", out, a)
            return out
        return fn(*args, **kwargs)

    def inline(self, fn, args, kwargs, node):
        try:
            bound = fn.signature.bind(*args, **kwargs)
        except TypeError as e:
            raise self.err(f"calling {fn.__name__}: {e}", node)
        bound.apply_defaults()
        too_deep = (f"calling {fn.__name__}: helper calls nested more than {MAX_INLINE_DEPTH} deep "
                    "(helpers are inlined: recursion needs a depth known at compile time, as a constexpr)")
        if self.inline_depth >= MAX_INLINE_DEPTH:
            raise self.err(too_deep, node)
        callee = KernelCodegen(fn.source, self.sem, dict(bound.arguments), helper=True)
        callee.inline_depth = self.inline_depth + 1
        callee.root_block = self.b.block
        saved_loc = self.b.loc
        try:
            result = callee.run()
        except RecursionError:  # deep expressions inside the nesting: same cause, same report
            raise self.err(too_deep, node) from None
        self.b.loc = saved_loc
        return result


_MISSING = object()


def _closure_vars(fn) -> dict:
    code, cells = getattr(fn, "__code__", None), getattr(fn, "__closure__", None) or ()
    out = {}
    for name, cell in zip(getattr(code, "co_freevars", ()), cells):
        try:
            out[name] = cell.cell_contents
        except ValueError:       # a cell not yet bound when the kernel compiles
            pass
    return out
