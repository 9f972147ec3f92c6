"""`@spvjit.kernel`: specialization, compilation cache and launch.

A kernel compiles once per specialization: the dtypes of its tensor
arguments, the kinds of its scalar arguments, its constexpr values,
num_warps and the device.  `kernel[grid](*args)` launches it.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np

from . import compiler, knobs
from .errors import LaunchError
from .frontend import build_ir
from .frontend.kernel_function import KernelFunction
from .interpreter import run_interpreted
from .ir import types as T
from .ir.printer import print_kernel
from .language.core import constexpr
from .launch import check_grid, launch_on_device
from .launch_facts import specialize_for_launch
from .runtime import get_device


def _is_tensor(x) -> bool:
    return hasattr(x, "view_host") and hasattr(x, "dtype") and hasattr(x, "shape")


def _is_constexpr_annotation(ann) -> bool:
    if ann is constexpr:
        return True
    return isinstance(ann, str) and ann.split(".")[-1] == "constexpr"


def interpret_enabled() -> bool:
    return knobs.get("SPVJIT_INTERPRET")


@dataclass
class Specialization:
    kinds: dict[str, tuple]         # name -> ("ptr"|"scalar"|"one"|"constexpr", dtype or value)
    runtime: list[tuple[str, object]]   # (name, value) of non-constexpr args, in order
    num_warps: int
    divisibility: dict = None        # int args known divisible by 16 (lets loads vectorize)
    assume_nonneg: bool = False      # launch_facts: this launch's wanted scalars are >= 0

    def key(self) -> tuple:
        """What the compiled code depends on, by value: equal keys compile to the same code,
        in this process or (hashed with the source, see cache.disk_key) in the next one."""
        items = []
        for name, (kind, what) in self.kinds.items():
            if isinstance(what, KernelFunction):     # a kernel passed as an argument: its source
                what = ("kernel", what.__name__, what.cache_key)
            elif isinstance(what, T.DType):
                what = what.name
            else:
                try:
                    hash(what)
                except TypeError:
                    what = repr(what)
            items.append((name, kind, what))
        div = tuple(sorted((self.divisibility or {}).items()))
        return (tuple(items), self.num_warps, div) + ((("assume_nonneg",),) if self.assume_nonneg else ())


def _pow2_bucket(v: int) -> int:
    """Specialize int args on divisibility, as Triton does with 16, in buckets 64 > 16 > 4 > 1:
    K = 576 lets K >> 3 stay 8-aligned, so packed-weight rows still load as vec4."""
    for d in (64, 16, 4):
        if v % d == 0:
            return d
    return 1


_MAX_GRID = 2**31 - 1


class JITFunction(KernelFunction):
    def __init__(self, fn, interpret: bool = False, do_not_specialize=()):
        super().__init__(fn)
        self.signature = inspect.signature(fn)
        self.do_not_specialize = _names(self.signature, do_not_specialize, fn.__name__)
        self.constexpr_names = {n for n, p in self.signature.parameters.items()
                                if _is_constexpr_annotation(p.annotation)}
        self.force_interpret = interpret
        self._compiled: dict[tuple, object] = {}
        self._launch_facts: dict[tuple, object] = {}     # launch_facts.specialize_for_launch
        self.compile_seconds: list[float] = []

    def __repr__(self) -> str:
        return f"<spvjit.kernel {self.__name__}>"

    def __call__(self, *args, **kwargs):
        raise LaunchError(f"kernel {self.__name__} must be launched with a grid: {self.__name__}[grid](...)")

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.run(*args, grid=grid, **kwargs)

    # ---- specialization -------------------------------------------------------
    def specialize(self, args, kwargs) -> tuple[Specialization, dict]:
        params = self.signature.parameters
        num_warps = kwargs.pop("num_warps", 4) if "num_warps" not in params else 4
        for opt in ("num_stages", "maxnreg", "enable_fp_fusion", "launch_cooperative_grid"):
            if opt not in params:
                kwargs.pop(opt, None)   # accepted for Triton compatibility; no meaning here
        if "num_ctas" not in params and kwargs.pop("num_ctas", 1) != 1:
            raise LaunchError("num_ctas > 1 (CUDA thread-block clusters) is not supported; use num_ctas=1")
        if not isinstance(num_warps, int) or num_warps <= 0 or num_warps & (num_warps - 1):
            raise LaunchError(f"num_warps must be a positive power of two, got {num_warps!r}")
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as e:
            params = ", ".join(self.signature.parameters)
            raise LaunchError(f"{self.__name__}({params}): {e}") from None
        bound.apply_defaults()
        kinds, runtime = {}, []
        for name, value in bound.arguments.items():
            if name in self.constexpr_names:
                kinds[name] = ("constexpr", value.value if isinstance(value, constexpr) else value)
                continue
            kinds[name] = self._arg_kind(name, value)
            if kinds[name] == ("scalar", T.i32) and int(value) == 1 and name not in self.do_not_specialize:
                # Triton's other integer specialization: an argument equal to 1 (a unit stride)
                # compiles as the constant 1, so `offs * stride` stays contiguous and vectorizes
                kinds[name] = ("one", T.i32)
            if kinds[name][0] != "constexpr":
                runtime.append((name, value))
        divisibility = {n: _pow2_bucket(int(v)) for n, v in runtime
                        if kinds[n] == ("scalar", T.i32) and n not in self.do_not_specialize
                        and _pow2_bucket(int(v)) > 1}
        return Specialization(kinds, runtime, num_warps, divisibility), dict(bound.arguments)

    def _arg_kind(self, name, value) -> tuple:
        if _is_tensor(value):
            dt = getattr(value, "spvjit_dtype", None)
            try:
                dt = dt or T.dtype_from_numpy(value.dtype)
            except TypeError:
                raise LaunchError(f"argument '{name}' of {self.__name__}: tensors of dtype {value.dtype} are not supported") from None
            return ("ptr", dt)
        if isinstance(value, np.ndarray):
            raise LaunchError(f"argument '{name}' of {self.__name__} is a numpy array; "
                              "wrap it with spvjit.tensor(...) to put it on the device")
        if isinstance(value, (bool, np.bool_)) or value is None:
            return ("constexpr", None if value is None else bool(value))
        if isinstance(value, (int, np.integer)):
            # Triton's rule: int32 when it fits, uint64 from 2**63 on, int64 otherwise
            v = int(value)
            if -(1 << 31) <= v < (1 << 31):
                return ("scalar", T.i32)
            if (1 << 63) <= v < (1 << 64):
                return ("scalar", T.u64)
            if -(1 << 63) <= v < (1 << 63):
                return ("scalar", T.i64)
            raise LaunchError(f"argument '{name}' of {self.__name__} = {value} does not fit in 64 bits")
        if isinstance(value, (float, np.floating)):
            return ("scalar", T.f32)
        raise LaunchError(f"argument '{name}' of {self.__name__} has unsupported type "
                          f"{type(value).__name__}; pass tensors, ints, floats or constexprs")

    def ir_module(self, *args, **kwargs):
        spec, _ = self.specialize(list(args), dict(kwargs))
        return build_ir(self, spec.kinds)

    def ir(self, *args, **kwargs) -> str:
        """The tile IR (text) of this kernel for the given arguments."""
        return print_kernel(self.ir_module(*args, **kwargs))

    # ---- launch -----------------------------------------------------------------
    def run(self, *args, grid, **kwargs):
        spec, bound = self.specialize(list(args), dict(kwargs))
        grid = self._grid(grid, bound)
        if self.force_interpret or interpret_enabled():
            run_interpreted(compiler.compile(self, spec, compiler.INTERPRETER), spec.runtime, grid)
            return
        dev = get_device()
        spec = specialize_for_launch(self, spec, grid)
        launch_on_device(compiler.compile(self, spec, dev), spec, grid, dev, self.__name__)

    def _grid(self, grid, bound) -> tuple[int, int, int]:
        if callable(grid):
            grid = grid(dict(bound))
        g = check_grid(grid, self.__name__)
        if any(x < 0 for x in g):
            raise LaunchError(f"grid must have 1 to 3 non-negative sizes, got {g}")
        if any(x > _MAX_GRID for x in g):
            # program_id and num_programs are int32 inside kernels
            raise LaunchError(f"grid {g} of kernel {self.__name__} has a size over {_MAX_GRID} "
                              "(program ids are 32-bit signed integers)")
        return g + (1,) * (3 - len(g))


# Triton's @jit options that change nothing here: helpers are always inlined (noinline), there
# is no debug build.  do_not_specialize (names or positions) keeps those integer arguments off
# the value-1 and divisibility specializations, as in Triton.
_JIT_OPTIONS = {"noinline", "debug", "do_not_specialize", "do_not_specialize_on_alignment",
                "repr", "launch_metadata", "version"}


def _names(signature, which, kernel_name: str) -> frozenset:
    """do_not_specialize's entries (parameter names or positions) as names."""
    params = list(signature.parameters)
    out = set()
    for w in which or ():
        if isinstance(w, int) and not isinstance(w, bool) and -len(params) <= w < len(params):
            out.add(params[w])
        elif isinstance(w, str) and w in params:
            out.add(w)
        else:
            raise TypeError(f"@spvjit.jit(do_not_specialize=...) of {kernel_name}: {w!r} is not a "
                            f"parameter name or position of ({', '.join(params)})")
    return frozenset(out)


def kernel(fn=None, *, interpret: bool = False, **options):
    """Decorator: `@spvjit.kernel` (alias `spvjit.jit`); accepts Triton's jit options."""
    unknown = set(options) - _JIT_OPTIONS
    if unknown:
        raise TypeError(f"@spvjit.jit got unexpected option(s) {sorted(unknown)}; "
                        f"known: interpret, {', '.join(sorted(_JIT_OPTIONS))}")
    dns = options.get("do_not_specialize", ())
    if fn is None:
        return lambda f: JITFunction(f, interpret=interpret, do_not_specialize=dns)
    return JITFunction(fn, interpret=interpret, do_not_specialize=dns)


def interpret(k: JITFunction) -> JITFunction:
    """A copy of kernel `k` that always runs in the numpy interpreter."""
    return JITFunction(k.fn, interpret=True)
