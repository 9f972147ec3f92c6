"""Parser of the tile IR's textual form: `parse(text) -> KernelIR`.

It reads exactly what `spvjit.ir.printer.print_kernel` writes (with or
without `loc(...)`), so `print_kernel(parse(text)) == text` for printed text.
Value names become hints; purely numeric names (`%12`) become no hint, so the
printer renumbers them the same way.  Names are unique in a module, as the
printer makes them.

Every op is type-checked with `check_op` while it is built, so errors point
at the offending line: undefined or out-of-scope values, redefinitions,
unknown ops, wrong operand counts and type-rule violations all raise
`IRParseError` with line:column and the line's text.
"""
from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from math import prod

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from .core import Block, KernelIR, Loc, Operation, Param, Value
from .ops import OPS, check_op
from .types import DTYPES, MAX_TILE_NUMEL, PointerType, TileType
from .verifier import IRVerificationError, verify

class IRParseError(ValueError):
    """Malformed or ill-typed IR text; `line` and `column` are 1-based."""

    def __init__(self, message: str, line: int, column: int, source_line: str = ""):
        self.message, self.line, self.column, self.source_line = message, line, column, source_line
        text = f"{line}:{column}: {message}"
        if source_line:
            text += f"\n  {source_line}\n  {' ' * (max(column, 1) - 1)}^"
        super().__init__(text)


@lru_cache(maxsize=1)
def _lark() -> Lark:
    grammar = resources.files(__package__).joinpath("grammar.lark").read_text()
    # LALR with the contextual lexer: `f32` is a TYPE after ':' and a NAME elsewhere
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def parse(text: str) -> KernelIR:
    """Parse one kernel; raises IRParseError on any syntax, scope or type error."""
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as e:
        raise _syntax_error(e, text) from None
    return _ModuleBuilder(text).build(tree.children[0])


def _syntax_error(e, text: str) -> IRParseError:
    lines = text.splitlines()
    end = (len(lines), len(lines[-1]) + 1) if lines else (1, 1)
    line, column = getattr(e, "line", None), getattr(e, "column", None)
    if isinstance(e, UnexpectedEOF) or line is None or line < 1:
        (line, column), msg = end, "unexpected end of input"
    elif isinstance(e, UnexpectedCharacters):
        msg = f"unexpected character {text[e.pos_in_stream]!r}"
    elif isinstance(e, UnexpectedToken):
        tok = e.token
        what = "end of line" if tok.type == "_NL" else "end of input" if tok.type == "$END" else repr(str(tok))
        expected = ", ".join(sorted(_describe(t) for t in e.accepts or e.expected))
        msg = f"syntax error: unexpected {what}" + (f"; expected {expected}" if expected else "")
        if tok.type == "$END":
            line, column = end
    else:
        msg = f"syntax error: {e}"
    src = lines[line - 1] if 0 < line <= len(lines) else ""
    return IRParseError(msg, line, column, src)


_TERMINAL_WORDS = {"VALUE": "a %value", "NAME": "a name", "TYPE": "a type", "NUMBER": "a number",
                   "STRING": "a string", "INT": "an integer", "SYMBOL": "@name", "_NL": "end of line"}


def _describe(terminal: str) -> str:
    if terminal in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[terminal]
    pattern = _lark().get_terminal(terminal).pattern
    return repr(pattern.value) if pattern.type == "str" else terminal


def parse_type(text: str) -> TileType:
    """`f32`, `ptr<f16>`, `tensor<16x16xf32>`, `tensor<8xptr<i32>>` -> TileType."""
    shape: tuple[int, ...] = ()
    if text.startswith("tensor<"):
        *dims, text = text[len("tensor<"):-1].split("x")   # no element type contains an 'x'
        shape = tuple(int(d) for d in dims)
        if any(d <= 0 for d in shape):
            raise ValueError("tensor dimensions must be positive")
        if prod(shape) > MAX_TILE_NUMEL:
            raise ValueError(f"a tile of shape {list(shape)} is over the {MAX_TILE_NUMEL}-element limit")
    if text.startswith(("ptr<", "gptr<")):
        inner = text[text.index("<") + 1:-1]
        if inner not in DTYPES:
            raise ValueError(f"unknown element type '{inner}'")
        return TileType(shape, PointerType(DTYPES[inner], global_address=text.startswith("g")))
    if text not in DTYPES:
        raise ValueError(f"unknown element type '{text}'")
    return TileType(shape, DTYPES[text])


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


def _string(tok: Token) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), str(tok)[1:-1])


def _number(tok: Token):
    s = str(tok)
    return int(s) if re.fullmatch(r"[-+]?\d+", s) else float(s)


def _hint(name: str) -> str | None:
    # numbered values carry no hint: the printer gives them fresh numbers in the same order
    return None if name.isascii() and name.isdigit() else name


class _ModuleBuilder:
    def __init__(self, text: str):
        self.lines = text.splitlines()
        self.scopes: list[dict[str, Value]] = []
        self.defined: set[str] = set()    # every name so far; the printer never reuses one

    def error(self, msg: str, where) -> IRParseError:
        pos = getattr(where, "meta", where)    # a Tree's position, or a Token's own
        line, col = pos.line, pos.column
        src = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        return IRParseError(msg, line, col, src)

    # ---- names ---------------------------------------------------------------
    def declare(self, tok: Token) -> None:
        name = str(tok)[1:]
        if name in self.defined:
            raise self.error(f"value %{name} is defined twice", tok)
        self.defined.add(name)

    def bind(self, tok: Token, value: Value) -> None:
        self.scopes[-1][str(tok)[1:]] = value

    def lookup(self, tok: Token) -> Value:
        name = str(tok)[1:]
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        if name in self.defined:
            raise self.error(f"value %{name} is not in scope here", tok)
        raise self.error(f"undefined value %{name}", tok)

    def type_of(self, tok: Token) -> TileType:
        try:
            return parse_type(str(tok))
        except ValueError as e:
            raise self.error(f"bad type '{tok}': {e}", tok) from None

    def new_arg(self, param: Tree) -> tuple[Token, Value]:
        name_tok, type_tok = param.children
        self.declare(name_tok)
        value = Value(self.type_of(type_tok), _hint(str(name_tok)[1:]))
        self.bind(name_tok, value)
        return name_tok, value

    # ---- structure -------------------------------------------------------------
    def build(self, kernel: Tree) -> KernelIR:
        sym, params, consts, ops = kernel.children
        self.scopes.append({})
        plist = []
        for p in _items(params):
            tok, value = self.new_arg(p)
            plist.append(Param(str(tok)[1:], value))
        constexprs = self.attrs(consts.children[0]) if consts is not None else {}
        body = Block()
        self.fill_block(body, ops, top=True)
        ir = KernelIR(str(sym)[1:], plist, body, constexprs)
        try:
            verify(ir)   # a second line of defence; every rule was already checked per op
        except IRVerificationError as e:
            raise self.error(str(e), kernel) from None
        return ir

    def fill_block(self, block: Block, ops: Tree, top: bool = False) -> None:
        trees = ops.children
        for i, tree in enumerate(trees):
            op = self.op(tree)
            if op.name == "yield" and top:
                raise self.error("'yield' outside a region", tree)
            if op.name in ("yield", "return") and i != len(trees) - 1:
                raise self.error(f"'{op.name}' must be the last op of its block", tree)
            block.ops.append(op)

    def attrs(self, tree: Tree) -> dict:
        out = {}
        for attr in _items(tree):
            key, val = attr.children
            if str(key) in out:
                raise self.error(f"attribute '{key}' given twice", key)
            kind = val.data
            out[str(key)] = (_number(val.children[0]) if kind == "number" else
                             _string(val.children[0]) if kind == "string" else kind == "true")
        return out

    def op(self, tree: Tree) -> Operation:
        results, name_tok, operands, attrs, types, loc, regions = tree.children
        name = str(name_tok)
        if name not in OPS:
            raise self.error(f"unknown op '{name}'", name_tok)
        operand_values = [self.lookup(t) for t in _items(operands)]
        result_toks = _items(results)
        result_types = [self.type_of(t) for t in _items(types)]
        if len(result_toks) != len(result_types):
            raise self.error(f"'{name}' names {len(result_toks)} results but gives "
                             f"{len(result_types)} result types", tree)
        attr_dict = self.attrs(attrs) if attrs is not None else {}
        where = None
        if loc is not None:
            file_tok, line_tok, col_tok = loc.children
            where = Loc(_string(file_tok), int(line_tok), int(col_tok) if col_tok is not None else 0)
        for tok in result_toks:
            self.declare(tok)      # its regions must not see it, but may not reuse the name either
        blocks = [self.region(r) for r in (regions.children if regions is not None else [])]
        op = Operation(name, operand_values, result_types, attr_dict, blocks, where,
                       [_hint(str(t)[1:]) for t in result_toks])
        try:
            err = check_op(op)
        except (TypeError, ValueError, KeyError, IndexError) as e:
            err = f"bad attributes for '{name}': {e}"
        if err:
            raise self.error(err, tree)
        for tok, value in zip(result_toks, op.results):
            self.bind(tok, value)
        return op

    def region(self, tree: Tree) -> Block:
        block_args, ops = tree.children
        self.scopes.append({})
        block = Block()
        for p in _items(block_args.children[0]) if block_args is not None else []:
            _, value = self.new_arg(p)
            block.args.append(value)
            value.owner = block
        self.fill_block(block, ops)
        self.scopes.pop()
        return block


def _items(tree: Tree | None) -> list:
    """Children of an optional list rule, without lark's None placeholders."""
    return [c for c in tree.children if c is not None] if tree is not None else []
