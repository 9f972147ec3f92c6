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
    """arg_kinds: name -> ("ptr", DType) | ("scalar", DType) | ("constexpr", value), in signature order."""
    src = jitfn.source
    body = Block()
    builder = Builder(body)
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
        args[name] = tensor(v)
    body.args.clear()   # parameters live on the kernel, not on the body block
    sem = KernelSemantic(builder)
    with active(sem):
        KernelCodegen(src, sem, args).run()
    if body.terminator is None or body.terminator.name != "return":
        builder.loc = None
        builder.create("return", [], [])
    return KernelIR(jitfn.__name__, params, body, consts)


__all__ = ["build_ir", "CompilationError", "SemanticError"]
