"""Frontend: a kernel's Python source plus a specialization -> tile IR."""
from __future__ import annotations

from ..ir import types as T
from ..ir.core import Block, Builder, KernelIR, Param
from ..language.core import tensor
from .codegen import KernelCodegen
from .errors import CompilationError, SemanticError
from .semantic import active
from .semantic_ops import KernelSemantic


def build_ir(jitfn, arg_kinds: dict[str, tuple]) -> KernelIR:
    """arg_kinds: name -> ("ptr", DType) | ("scalar", DType) | ("one", i32) | ("constexpr", value),
    in signature order.  A "one" argument (an int equal to 1 at launch) stays a parameter, so
    the launch packs it as before, but the kernel body sees the constant 1 in its place."""
    src = jitfn.source
    body = Block()
    builder = Builder(body)
    sem = KernelSemantic(builder)
    args, params, consts = {}, [], {}
    for name, (kind, what) in arg_kinds.items():
        if kind == "constexpr":
            args[name] = what
            consts[name] = what
            continue
        elem = T.PointerType(what) if kind == "ptr" else what
        v = body.add_arg(T.TileType((), elem), name)
        v.owner = None
        params.append(Param(name, v))
        args[name] = tensor(v) if kind != "one" else sem.constant(1, what)
    body.args.clear()   # parameters live on the kernel, not on the body block
    with active(sem):
        KernelCodegen(src, sem, args).run()
    if body.terminator is None or body.terminator.name != "return":
        builder.loc = None
        builder.create("return", [], [])
    return KernelIR(jitfn.__name__, params, body, consts)


__all__ = ["build_ir", "CompilationError", "SemanticError"]
