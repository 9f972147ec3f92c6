"""`@spvjit.autotune`: benchmark configs on the first launch of each key, keep the best.

As in Triton: `key` names arguments whose values (with the element types of all
tensor arguments) select a tuning result, and `best_config` is the config last used;
`prune_configs_by={"early_config_prune": fn, "perf_model": fn, "top_k": n}`
trims the candidates; `reset_to_zero` names tensors zeroed before every
benchmark run (kernels that accumulate with atomics).  Configs the device
cannot run (too much shared memory, too many invocations, a failed compile)
are skipped, not fatal.  SPVJIT_PRINT_AUTOTUNING=1 prints the choice.
"""
from __future__ import annotations

import sys

from .. import knobs, testing
from ..errors import CompilationError, DeviceError, LaunchError
from ..jit import JITFunction
from ..runtime import get_device
from . import store
from .config import Config


class Autotuner:
    def __init__(self, fn: JITFunction, configs, key, prune_configs_by=None, reset_to_zero=None,
                 warmup: int = 2, rep: int = 5, pre_hook=None, post_hook=None):
        if not isinstance(fn, JITFunction):
            raise TypeError("@spvjit.autotune must be stacked on a @spvjit.kernel function")
        if not configs:
            raise ValueError(f"autotune of {fn.__name__}: configs must not be empty")
        params = fn.signature.parameters
        for k in list(key) + list(reset_to_zero or []):
            if k not in params:
                raise ValueError(f"autotune of {fn.__name__}: '{k}' is not a parameter of the kernel")
        self.fn = fn
        self.__name__ = fn.__name__
        self.configs = list(configs)
        self.key = list(key)
        self.prune = prune_configs_by or {}
        self.reset_to_zero = list(reset_to_zero or [])
        self.warmup, self.rep = warmup, rep
        self.cache: dict[str, Config] = {}
        self.timings: dict[str, dict] = {}
        self._store_name = None
        self.best_config: Config | None = None      # the config of the latest launch, as in Triton
        self.pre_hook, self.post_hook = pre_hook, post_hook   # Triton's autotune(pre_hook=, post_hook=)

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.run(*args, grid=grid, **kwargs)

    def _key(self, bound) -> str:
        vals = []
        for k in self.key:
            v = bound[k]
            vals.append(f"{k}={v.dtype}{tuple(v.shape)}" if hasattr(v, "shape") else f"{k}={v!r}")
        # as in Triton, the element types of all tensor arguments are part of the key:
        # the best blocks for f16 and f32 operands differ
        dtypes = [str(getattr(v, "spvjit_dtype", None) or v.dtype) for v in bound.values() if hasattr(v, "shape")]
        return ",".join(vals + ([f"dtypes={'/'.join(dtypes)}"] if dtypes else []))

    def _launch(self, cfg: Config, grid, args, kwargs, tuning: bool = False):
        clash = set(cfg.kwargs) & set(kwargs)
        if clash:
            raise LaunchError(f"{self.__name__}: {sorted(clash)} set both by the caller and by the autotune config")
        if cfg.pre_hook:
            # as Triton: the hook sees every argument by name, the config's values included
            named = self.fn.signature.bind_partial(*args, **kwargs).arguments
            cfg.pre_hook({**named, **cfg.all_kwargs()})
        if tuning and self.pre_hook:
            self.pre_hook(self.fn.signature.bind_partial(*args, **kwargs).arguments)
        try:
            self.fn.run(*args, grid=grid, **kwargs, **cfg.all_kwargs())
        except Exception as e:
            if tuning and self.post_hook:
                self.post_hook(self.fn.signature.bind_partial(*args, **kwargs).arguments, e)
            raise
        if tuning and self.post_hook:
            self.post_hook(self.fn.signature.bind_partial(*args, **kwargs).arguments, None)

    def _candidates(self, bound, kwargs) -> list[Config]:
        configs = self.configs
        early = self.prune.get("early_config_prune")
        if early:
            # Triton calls early_config_prune(configs, named_args, **kwargs)
            named = {k: v for k, v in bound.items() if k not in kwargs}
            configs = list(early(configs, named, **kwargs))
        model, top_k = self.prune.get("perf_model"), self.prune.get("top_k")
        if model and top_k:
            ranked = sorted(configs, key=lambda c: model(**bound, **c.all_kwargs()))
            configs = ranked[: int(top_k * len(ranked)) if isinstance(top_k, float) and top_k <= 1 else top_k]
        return configs

    def run(self, *args, grid, **kwargs):
        bound = self.fn.signature.bind_partial(*args, **kwargs).arguments
        key = self._key(bound)
        cfg = self.cache.get(key)
        if cfg is None:
            caps = get_device().caps
            if self._store_name is None:
                self._store_name = store.entry_name(self.fn, caps)
            saved = store.load(self._store_name).get(key)
            if saved is not None:
                try:
                    cfg = Config.from_json(saved["config"])
                except (KeyError, TypeError):
                    cfg = None
                # the stored result names one of this tuner's configs: use that object, whose
                # pre_hook JSON cannot hold; a config no longer offered means tuning again
                cfg = next((c for c in self.configs if c == cfg), None)
            if cfg is None:
                cfg = self._tune(key, bound, grid, args, kwargs)
            self.cache[key] = cfg
        self.best_config = cfg
        self._launch(cfg, grid, args, kwargs)

    def _tune(self, key, bound, grid, args, kwargs) -> Config:
        timings = {}
        zero = [bound[n] for n in self.reset_to_zero if n in bound]

        def once(cfg):
            for t in zero:
                t.copy_from(0)
            self._launch(cfg, grid, args, kwargs, tuning=True)

        errors = {}
        for cfg in self._candidates(bound, kwargs):
            try:
                timings[cfg] = testing.do_bench(lambda: once(cfg), warmup=self.warmup, rep=self.rep)
            except (CompilationError, DeviceError) as e:
                timings[cfg] = None     # the device cannot run this config: skip it
                errors[cfg] = e
                if knobs.get("SPVJIT_PRINT_AUTOTUNING"):
                    print(f"autotune {self.__name__} [{key}]: skipped {cfg}: {str(e).splitlines()[0]}",
                          file=sys.stderr)
        ok = {c: t for c, t in timings.items() if t is not None}
        if not ok:
            if len(errors) == len(timings) and len({str(e) for e in errors.values()}) == 1:
                raise next(iter(errors.values()))   # the same error for every config: it is the kernel's
            detail = "; ".join(f"[{c}] {str(e).splitlines()[0]}" for c, e in errors.items())
            raise CompilationError(f"autotune of {self.__name__}: no config runs on this device for {key}: "
                                   f"{detail}")
        best = min(ok, key=ok.get)
        self.timings[key] = {repr(c): t for c, t in timings.items()}
        for t in zero:
            t.copy_from(0)
        data = store.load(self._store_name)
        data[key] = {"config": best.to_json(), "ms": ok[best],
                     "timings": {repr(c): t for c, t in timings.items()}}
        store.save(self._store_name, data)
        if knobs.get("SPVJIT_PRINT_AUTOTUNING"):
            table = ", ".join(f"[{c}] {'-' if t is None else f'{t:.3f} ms'}" for c, t in timings.items())
            print(f"autotune {self.__name__} [{key}]: best {best} ({ok[best]:.3f} ms); {table}", file=sys.stderr)
        return best


def autotune(configs, key, prune_configs_by=None, reset_to_zero=None, restore_value=None,
             warmup: int = 2, rep: int = 5, pre_hook=None, post_hook=None, use_cuda_graph=False,
             do_bench=None, cache_results=False):
    """Decorator: `@spvjit.autotune(configs=[spvjit.Config({...}, num_warps=4)], key=["n"])`.
    Triton's use_cuda_graph and cache_results are accepted (results are always cached on disk)."""
    if restore_value:
        raise NotImplementedError("autotune(restore_value=...) is not supported; use reset_to_zero")
    if do_bench is not None:
        raise NotImplementedError("autotune(do_bench=...) is not supported; spvjit.testing.do_bench is used")
    return lambda fn: Autotuner(fn, configs, key, prune_configs_by, reset_to_zero,
                                2 if warmup is None else warmup, 5 if rep is None else rep, pre_hook, post_hook)
