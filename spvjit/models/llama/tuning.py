"""Block sizes per kernel and shape, measured by ``spvjit tune`` and used by DeviceLlama.

A *site* is one kernel at one shape, as the forward pass launches it: ``matvec Q4_1
960x576 norm`` (the fused qkv projection of SmolLM2 while decoding), ``argmax n=49152``.
Its *config* is the dict of block-size constexprs the launcher passes (``{"BR": 16,
"BU": 8}``). :class:`TuningTable` keeps the measured best config per site in one JSON
file per device under ``SPVJIT_CACHE_DIR/tuning/``; an entry also records a hash of its
kernel's source closure, launcher and default config and of the compiler, and is
ignored (and tuned again) once any of them changes. ``SPVJIT_DISABLE_TUNING=1`` makes
DeviceLlama ignore the table; ``SPVJIT_PRINT_AUTOTUNING=1`` prints each tuned config
as a forward pass first uses it.

:class:`TunedKernels` stands in for the ``kernels`` module inside DeviceLlama's forward
pass: the same launchers, with the table's block sizes where it has an entry, and an
optional trace of the calls (``spvjit tune`` replays those calls with candidate configs).

Launchers take overrides as ``blocks=`` (matvec, attention_*) or ``block=`` (argmax,
dequant_rows). A matvec/matmul launcher without ``blocks=`` gets its module constant
(MATVEC / MATMUL) updated for the duration of one launch instead (launches run on this
thread; a recorded dispatch keeps its specialization).
"""

from __future__ import annotations

import hashlib
import inspect
import re
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import spvjit
import spvjit.cache
import spvjit.knobs
from spvjit import CompilationError, JITFunction, LaunchError
from spvjit.runtime import DeviceError

from . import kernels as K

FORMAT = 2
LINEAR = ("matvec", "matmul")

KERNELS = ("matvec", "matmul", "attention_rows", "attention_prefill", "dequant_rows", "argmax")
# the module constants of kernels' defaults, by prefix (matvec: MATVEC and MATVEC_TILED)
CONSTANTS = {"matvec": "MATVEC", "matmul": "MATMUL", "attention_rows": "ATTN_ROWS",
             "attention_prefill": "ATTN_BLOCKS"}


def _pow2(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


def _param_default(fn, name: str, fallback: int) -> int:
    try:
        p = inspect.signature(fn).parameters[name]
        return p.default if isinstance(p.default, int) else fallback
    except (KeyError, TypeError, ValueError):
        return fallback


# -- sites: which kernel and shape a launcher call is ------------------------------------

@dataclass
class Call:
    """One launcher call of the forward pass (``launcher`` names a function of ``kernels``)."""
    launcher: str
    kernel: str                 # the tuned kernel: matvec, matmul, attention_rows, ...
    shape: str
    args: tuple
    kwargs: dict

    @property
    def key(self) -> str:
        return f"{self.kernel} {self.shape}"


@lru_cache(maxsize=None)
def _signature(fn) -> inspect.Signature:
    return inspect.signature(fn)


def _bind(fn, args, kwargs) -> dict:
    sig = _signature(fn)
    ba = sig.bind(*args, **kwargs)
    ba.apply_defaults()
    out = dict(ba.arguments)
    for name, p in sig.parameters.items():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            out.update(out.pop(name, {}))
    return out


def _linear_shape(a: dict) -> str:
    w = a["w"]
    pre = "norm" if a.get("norm") is not None else "swiglu" if a.get("swiglu") else "none"
    if a.get("acc"):
        pre = "acc" if pre == "none" else pre + "+acc"
    return f"{w.qtype} {w.rows}x{w.cols} {pre}"


LAUNCHERS = ("linear", "matvec", "matmul", "attention", "attention_rows", "attention_prefill",
             "dequant_rows", "argmax")   # the launchers of kernels with block sizes to tune


def classify(launcher: str, args: tuple, kwargs: dict) -> tuple[str, str]:
    """(kernel, shape) of a call of one of LAUNCHERS."""
    a = _bind(getattr(K, launcher), args, kwargs)
    if launcher in ("linear", "matvec", "matmul"):
        kernel = launcher if launcher != "linear" else ("matvec" if a["m"] == 1 else "matmul")
        return kernel, _linear_shape(a)
    if launcher.startswith("attention"):
        kernel = launcher
        if launcher == "attention":
            kernel = "attention_prefill" if a["n"] >= K.ATTN_BLOCKS_MIN_ROWS else "attention_rows"
        return kernel, f"{a['n_head']}x{a['head_dim']} kv{a['n_kv']}"
    if launcher == "dequant_rows":
        w = a["w"]
        return "dequant_rows", f"{w.qtype} {w.rows}x{w.cols}"
    return "argmax", f"n={a['n']}"


def default_config(call: Call) -> dict:
    """The block sizes the launcher uses when nothing overrides them."""
    k = call.kernel
    if k == "matvec":
        # the device's layout: MATVEC / MATVEC_TILED on CPU drivers (kernels/layouts.py)
        return dict(K.matvec_layout(_bind(getattr(K, call.launcher), call.args, call.kwargs)["w"]).blocks)
    if k in LINEAR:
        # MATMUL, or MATMUL_TILED for the row-tiled types
        const = CONSTANTS[k]
        if K.device_quant(call.shape.split(" ", 1)[0]).tiled:
            const += "_TILED"
        return dict(getattr(K, const))
    if k == "attention_rows":
        return dict(K.ATTN_ROWS)
    if k == "attention_prefill":
        return dict(K.ATTN_BLOCKS)
    a = _bind(getattr(K, call.launcher), call.args, call.kwargs)
    if k == "dequant_rows":
        return effective(call, {"BU": a.get("block", 64)})
    return effective(call, {"BLOCK": _param_default(K.argmax, "block", 1024)})


def effective(call: Call, cfg: dict) -> dict:
    """``cfg`` as the launcher will use it, where this module knows how it clamps: a
    block of argmax or dequant_rows larger than the (power-of-two rounded) row is the
    row."""
    if call.kernel not in ("argmax", "dequant_rows"):
        return cfg
    a = _bind(getattr(K, call.launcher), call.args, call.kwargs)
    if call.kernel == "argmax":
        return {"BLOCK": min(cfg["BLOCK"], _pow2(a["n"]))}
    return {"BU": min(cfg["BU"], _pow2(a["w"].cols // K.unit_elems(a["w"].qtype)))}


# -- launching with block sizes ----------------------------------------------------------

@contextmanager
def _override(consts: dict, blocks: dict):
    saved = dict(consts)
    consts.update(blocks)
    try:
        yield
    finally:
        consts.clear()
        consts.update(saved)


def launch(call: Call, blocks: dict | None) -> None:
    """Run ``call`` (record it into the current batch or graph) with ``blocks`` as its
    block sizes; None: the launcher's defaults."""
    fn = getattr(K, call.launcher)
    if not blocks:
        fn(*call.args, **call.kwargs)
        return
    k = call.kernel
    if k in LINEAR:
        # linear() hands its keyword arguments on to matvec() / matmul()
        if "blocks" in _signature(getattr(K, k)).parameters:
            fn(*call.args, **call.kwargs, blocks=blocks)
        else:
            with _override(K.MATVEC if k == "matvec" else K.MATMUL, blocks):
                fn(*call.args, **call.kwargs)
    elif k in ("attention_rows", "attention_prefill"):
        getattr(K, k)(*call.args, **call.kwargs, blocks=blocks)   # same arguments as attention()
    elif k == "dequant_rows":
        fn(*call.args, **{**call.kwargs, "block": blocks["BU"]})
    else:
        fn(*call.args, **{**call.kwargs, "block": blocks["BLOCK"]})


class TunedKernels:
    """The ``kernels`` module as DeviceLlama's forward pass sees it: launchers with a
    site to tune take their block sizes from ``table`` (when it has the site). With a
    ``trace`` list, every launcher call is appended to it (the others as Calls whose
    kernel is the launcher's name and shape ""); ``run=False`` only traces."""
    def __init__(self, table: "TuningTable | None" = None, trace: list | None = None, run: bool = True):
        self.table = table
        self.trace = trace
        self.run = run

    def __getattr__(self, name):
        fn = getattr(K, name)
        if name not in LAUNCHERS:
            if self.trace is None or not callable(fn) or isinstance(fn, type):
                return fn

            def other(*args, **kwargs):
                self.trace.append(Call(name, name, "", args, kwargs))
                if self.run:
                    fn(*args, **kwargs)
            return other

        def launcher(*args, **kwargs):
            call = Call(name, *classify(name, args, kwargs), args, kwargs)
            if self.trace is not None:
                self.trace.append(call)
            if not self.run:
                return
            blocks = self.table.lookup(call) if self.table is not None else None
            if blocks is None:
                launch(call, None)
                return
            try:
                launch(call, blocks)
            except (CompilationError, LaunchError, KeyError, TypeError) as e:
                # an entry the launcher no longer takes (compiling fails before anything
                # is recorded): forget it, use the defaults
                self.table.reject(call.key, e)
                launch(call, None)
        return launcher


# -- the table on disk -------------------------------------------------------------------

def dispatch_sites(calls: list, labels: list) -> list | None:
    """Site keys ("matvec Q4_1 960x576 norm", "rope_kv") of the dispatches ``labels``
    (kernel names, as spvjit batches record them) that the traced ``calls`` made, or None
    when they do not line up one dispatch per call."""
    if len(calls) != len(labels):
        return None
    keys = []
    for call, label in zip(calls, labels):
        if not label.startswith(call.kernel):    # matvec -> matvec_kernel, matvec_tiled_kernel
            return None
        keys.append(call.key.strip())
    return keys


_source_hashes: dict[str, str] = {}


def source_hash(kernel: str) -> str:
    """What a tuned config of ``kernel`` is valid for: its kernel's source closure, its
    launcher(s), the default config and the compiler."""
    h = _source_hashes.get(kernel)
    if h is not None:
        return h
    d = hashlib.sha256(f"tuning {FORMAT} {kernel}\0".encode())
    for name in sorted(dir(K)):      # matvec: matvec_kernel, matvec_tiled_kernel, ...
        jit = getattr(K, name)
        if isinstance(jit, JITFunction) and name.startswith(kernel):
            d.update(jit.cache_key.encode() + b"\0")
    if kernel in LINEAR + ("dequant_rows",):   # the type helpers they are given as constexprs
        for dq in K.DEVICE_QUANTS.values():
            helpers = (dq.dequant,) + ((dq.tiled.unit, dq.tiled.matvec_block, dq.tiled.x_scale) if dq.tiled else ())
            for jit in helpers:
                d.update(jit.cache_key.encode() + b"\0")
    launchers = ("linear", kernel) if kernel in LINEAR else ("attention", kernel) if kernel.startswith("attention") else (kernel,)
    for name in launchers:
        try:
            d.update(inspect.getsource(getattr(K, name)).encode())
        except (AttributeError, OSError, TypeError):
            pass
    prefix = CONSTANTS.get(kernel)
    for name in sorted(dir(K)) if prefix else ():
        if name.startswith(prefix) and isinstance(getattr(K, name), dict):
            d.update(f"{name}={sorted(getattr(K, name).items())!r}".encode())
    d.update(spvjit.cache.compiler_fingerprint().encode())
    h = _source_hashes[kernel] = d.hexdigest()[:16]
    return h


def device_tag(caps) -> str:
    name = re.sub(r"[^A-Za-z0-9]+", "-", caps.name).strip("-")[:32] or "device"
    return f"{name}-{spvjit.cache.device_fingerprint(caps)[:12]}"


def config_str(cfg: dict | None) -> str:
    return "-" if not cfg else ",".join(f"{k}={v}" for k, v in cfg.items())


@dataclass
class TuningTable:
    """Tuned block sizes of one device: ``{site key: entry}`` read from and written to
    ``path``. ``lookup`` answers for launches (counting what it served in ``used``)."""
    path: Path
    entries: dict = field(default_factory=dict)
    used: set = field(default_factory=set)

    @classmethod
    def for_device(cls, caps=None, directory: Path | None = None) -> "TuningTable":
        if caps is None:
            caps = spvjit.get_device().caps
        store = spvjit.cache.Store("tuning", directory)
        table = cls(store.path(device_tag(caps)))
        table.entries = table._read()
        return table

    @staticmethod
    def disabled() -> bool:
        return spvjit.knobs.get("SPVJIT_DISABLE_TUNING")

    @property
    def _store(self):
        return spvjit.cache.Store("tuning", self.path.parent)

    def _read(self) -> dict:
        data = self._store.read(self.path.stem) or {}      # missing or damaged: as if never tuned
        if data.get("format") != FORMAT or not isinstance(data.get("entries"), dict):
            return {}
        return data["entries"]

    def valid(self, key: str) -> dict | None:
        """The entry for ``key`` if it was measured with today's kernel sources."""
        e = self.entries.get(key)
        if not isinstance(e, dict) or not isinstance(e.get("config"), dict):
            return None
        kernel = key.split(" ", 1)[0]
        if kernel not in KERNELS or e.get("source") != source_hash(kernel):
            return None
        return e

    def lookup(self, call: Call) -> dict | None:
        e = self.valid(call.key)
        if e is None:
            return None
        if call.key not in self.used and spvjit.knobs.get("SPVJIT_PRINT_AUTOTUNING"):
            print(f"tuned {call.key}: {config_str(e['config'])}", file=sys.stderr)
        self.used.add(call.key)
        return dict(e["config"])

    def reject(self, key: str, error: Exception) -> None:
        """Stop serving ``key`` in this process (its config failed to launch)."""
        self.entries.pop(key, None)
        self.used.discard(key)
        print(f"spvjit: ignoring the tuned config of {key}: {str(error).splitlines()[0] if str(error) else error!r}",
              file=sys.stderr)

    def put(self, key: str, entry: dict) -> None:
        self.entries[key] = {**entry, "source": source_hash(key.split(" ", 1)[0]), "tuned_at": time.time()}

    def save(self) -> None:
        """Write atomically, merged with entries another process wrote meanwhile."""
        merged = {**self._read(), **self.entries}
        self._store.write(self.path.stem, {"format": FORMAT, "entries": merged}, must_succeed=True)
        self.entries = merged


def model_table(enabled: bool = True) -> TuningTable | None:
    """The device's table for a DeviceLlama: None when disabled (SPVJIT_DISABLE_TUNING)."""
    if not enabled or TuningTable.disabled():
        return None
    return TuningTable.for_device()


# -- tuning ------------------------------------------------------------------------------

def axes(cfg: dict) -> list[str]:
    """The block sizes of a config that tuning varies: its int entries (>= 0)."""
    return [k for k, v in cfg.items() if isinstance(v, int) and not isinstance(v, bool) and v >= 0]


def candidates_around(call: Call, cfg: dict, axis: str, seen: set) -> list[dict]:
    """cfg with ``axis`` doubled and halved (at least 1), not yet tried. A 0 (by the
    launchers' convention: "pick for me", as matvec's program count P) tries 2 and 8."""
    out = []
    v = cfg.get(axis)
    if not isinstance(v, int) or isinstance(v, bool):
        return out
    for nv in ((v * 2, v // 2) if v else (2, 8)):
        if nv >= 1:
            c = effective(call, {**cfg, axis: nv})
            if config_str(c) not in seen and c not in out:
                out.append(c)
    return out


def _sample(call: Call, blocks: dict, inner: int) -> float:
    with spvjit.batch(timestamps=True) as b:
        for _ in range(inner):
            launch(call, blocks)
    return sum(b.elapsed_ns) / len(b.elapsed_ns) / 1e6


def time_config(call: Call, blocks: dict, rounds: int = 5, inner: int = 3) -> tuple[float, float]:
    """GPU milliseconds of one launch of ``call`` with ``blocks``: the median over
    ``rounds`` batches of ``inner`` launches each (one launch each for kernels of more
    than 2 ms), after one untimed batch (compiling); and the seconds that batch took."""
    t0 = time.perf_counter()
    with spvjit.batch():
        launch(call, blocks)
    first_s = time.perf_counter() - t0
    first = _sample(call, blocks, 1)
    if first > 2.0:
        inner = 1
    return statistics.median([first] + [_sample(call, blocks, inner) for _ in range(rounds - 1)]), first_s


def confirm(call: Call, a: dict, b: dict, rounds: int = 7, inner: int = 3) -> tuple[float, float, int]:
    """Configs a and b timed in alternation (both compiled), so that a busy machine slows
    both alike: their median milliseconds and in how many of the ``rounds`` b was faster.
    The check before b replaces a."""
    if _sample(call, a, 1) > 2.0:
        inner = 1
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(_sample(call, a, inner))
        tb.append(_sample(call, b, inner))
    return statistics.median(ta), statistics.median(tb), sum(y < x for x, y in zip(ta, tb))


def tune_call(call: Call, max_configs: int | None = None, rounds: int = 5, progress=None,
              min_gain: float = 0.05, budget_s: float | None = None) -> dict:
    """Coordinate search from the default config: along each axis try x2 and /2 of the
    best so far, moving when it wins by more than ``min_gain``; at most ``max_configs``
    configs (default: 1 + 2 per block size, so each is tried both ways once), each block
    size within 1/4 to 4 times its default, and no new config after ``budget_s`` seconds
    (lavapipe compiles some variants for minutes). Configs that fail to compile or launch are skipped. The winner then runs in
    alternation with the default (7 rounds) and replaces it only if it wins by
    ``min_gain`` in the median and in at least 6 of the rounds: noise, and configs the
    launcher maps to the same kernel, leave the default in place. Returns the table entry."""
    t_start = time.perf_counter()
    default = default_config(call)
    max_configs = max_configs or 1 + 2 * len(axes(default))
    timings: dict[str, float | None] = {}
    first_s: dict[str, float] = {}
    errors: dict[str, str] = {}

    def measure(cfg: dict) -> float | None:
        s = config_str(cfg)
        if s not in timings:
            if len(timings) >= max_configs or (budget_s is not None and timings
                                               and time.perf_counter() - t_start > budget_s):
                return None
            t0 = time.perf_counter()
            try:
                timings[s], first_s[s] = time_config(call, cfg, rounds)
            except (CompilationError, LaunchError, DeviceError, ValueError, KeyError, TypeError) as e:
                timings[s] = None
                first_s[s] = time.perf_counter() - t0
                errors[s] = str(e).splitlines()[0] if str(e) else type(e).__name__
            if progress is not None:
                progress(call, cfg, timings[s])
        return timings[s]

    best, best_t = default, measure(default)
    def more() -> bool:
        return len(timings) < max_configs and (budget_s is None or time.perf_counter() - t_start <= budget_s)

    for axis in axes(default):
        moved = True
        while moved and more():
            moved = False
            for cand in candidates_around(call, best, axis, set(timings)):
                if default[axis] and not default[axis] / 4 <= cand[axis] <= default[axis] * 4:
                    continue    # bigger tiles compile for minutes on lavapipe; smaller ones lose
                t = measure(cand)
                if t is not None and (best_t is None or t < best_t * (1 - min_gain)):
                    best, best_t, moved = cand, t, True
            # after a move, keep going the same way along this axis
    default_t = timings.get(config_str(default))
    if best_t is None:
        best = None
    elif best is not default and default_t is not None:
        default_t, best_t, wins = confirm(call, default, best, max(7, rounds))
        if best_t >= default_t * (1 - min_gain) or wins < max(7, rounds) - 1:
            best, best_t = default, default_t
    return {"config": best, "ms": best_t, "default": default, "default_ms": default_t,
            "timings": timings, "errors": errors, "first_launch_s": {k: round(v, 2) for k, v in first_s.items()},
            "seconds": round(time.perf_counter() - t_start, 2)}


def planned_configs(call: Call, max_configs: int | None = None) -> int:
    """The configs tune_call tries at most (for progress bars)."""
    return max_configs or 1 + 2 * len(axes(default_config(call)))
