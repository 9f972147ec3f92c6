"""Tile IR + device capabilities -> a SPIR-V compute module and its launch layout."""
from __future__ import annotations

from dataclasses import dataclass

from .. import knobs
from ..ir.core import KernelIR
from ..ir.ops import OP_INFO, ops_of
from . import axis_info, coopmat, debug_print, dot_forms, dot_loop_plan, global_pointers, loop_budget, subgroup
from .atomics import mark_native_atomics
from .chunking import chunk_big_tiles, max_numel
from .emitter import Emitter
from .layout import choose_workgroup, regs
from .lower import LoweringError, Lowerer, LV
from .memory import PUSH_HEADER_WORDS, Binding, Memory, PushMember
from .spirv.builder import ModuleBuilder
from .target import Target

# ops whose lowering stages a tile in shared memory (ir/ops.py's table)
_STAGING = frozenset(n for n, info in OP_INFO.items() if info.scratch)
_SHAPE_OPS = ops_of("shape")


@dataclass
class CompiledKernel:
    name: str
    spirv: bytes
    workgroup_size: int
    bindings: list[Binding]          # one storage buffer per pointer parameter, in order
    push_members: list[PushMember]   # runtime scalars after the 6-word launch header
    push_size: int
    scratch_bytes: int
    capabilities: frozenset[str]
    program_loop: bool = False       # each workgroup runs push word PROGRAMS_WORD programs in turn


def _scratch_words(kernel: KernelIR, w: int, coop_dots=(), dot_reads=None) -> int:
    """Words of the shared scratch; dots lowered on cooperative matrices have their own arrays.
    `dot_reads` (dot_operands.Analysis of the looped dots): a looped dot stages only an A its
    loop does not read (B goes to a Function array), and a trans its dots read needs nothing."""
    need = 0
    for op in kernel.walk():
        if op.name not in _STAGING or id(op) in coop_dots:
            continue
        if dot_reads is not None and id(op) in dot_reads.transposes:
            continue
        if op.name == "dot":
            a, b = op.operands[0].type, op.operands[1].type
            words = 2 if op.result.type.elem.bits == 64 else 1       # f64 operands: two words each
            if dot_reads is not None and dot_reads.looped(op):
                staged_a = dot_reads.operand_load(op, 0) is None
                need = max(need, words * regs(a.numel, w) * w if staged_a else 0)
                continue
            need = max(need, words * (regs(a.numel, w) + regs(b.numel, w)) * w)
        elif op.name in ("atomic_rmw", "atomic_cas"):
            need = max(need, w)
        elif op.name == "histogram":     # the bins, then the result read back from them
            t = op.operands[0].type
            need = max(need, op.attrs["num_bins"], regs(op.attrs["num_bins"], w) * w, regs(t.numel, w) * w)
        else:
            # a 64-bit value is two words; reductions keep value, index and high words per partial
            t = op.operands[0].type
            words = 2 if getattr(t.elem, "bits", 32) == 64 else 1
            need = max(need, words * (regs(t.numel, w) if t.shape else 1) * w, (words + 1) * w)
    return need


def _float_atomic_bindings(kernel: KernelIR, bindings) -> set[int]:
    """f32 (f64) atomics run on the bits of 32-bit (64-bit) words (codegen/atomics.py), so with
    any in the kernel every buffer of that float type is declared as u32 (u64) words (loads and
    stores bitcast, which is free)."""
    floats = {op.result.type.elem.name for op in kernel.walk()
              if op.name in ("atomic_rmw", "atomic_cas") and op.result.type.elem.name in ("f32", "f64")}
    return {bd.index for bd in bindings if bd.dtype.name in floats}


def _param_access(kernel: KernelIR, ptr_params) -> tuple[set[int] | None, set[int] | None]:
    """(written, read) pointer-parameter indices, each None when a pointer's origin is unknown."""
    roots: dict[int, int | None] = {id(p.value): i for i, p in enumerate(ptr_params)}
    written: set[int] = set()
    read: set[int] = set()

    def root(v):
        return roots.get(id(v))

    def walk(block):
        for op in block.ops:
            if op.name == "addptr" or op.name in _SHAPE_OPS:
                roots[id(op.result)] = root(op.operands[0])
            elif op.name == "select" and op.result.type.is_pointer:
                a, b = root(op.operands[1]), root(op.operands[2])
                roots[id(op.result)] = a if a == b else None
            elif op.name == "for":
                for arg, init, res in zip(op.regions[0].args[1:], op.operands[3:], op.results):
                    roots[id(arg)] = roots[id(res)] = root(init)
            elif op.name == "while":
                for i, (init, res) in enumerate(zip(op.operands, op.results)):
                    roots[id(res)] = root(init)
                    for region in op.regions:
                        roots[id(region.args[i])] = root(init)
            elif op.name == "if":
                for region in op.regions:
                    walk(region)
                    term = region.terminator
                    if term is not None and term.name == "yield":
                        for res, y in zip(op.results, term.operands):
                            roots.setdefault(id(res), root(y))
                continue
            if op.name in ("store", "atomic_rmw", "atomic_cas"):
                written.add(root(op.operands[0]))
            if op.name in ("load", "atomic_rmw", "atomic_cas"):
                read.add(root(op.operands[0]))
            for region in op.regions:
                walk(region)

    walk(kernel.body)
    # a pointer of unknown origin (None) could be any parameter
    return (None if None in written else written), (None if None in read else read)


def compile_kernel(kernel: KernelIR, caps, num_warps: int = 4, param_div: dict | None = None,
                   notes: dict | None = None, program_loop: bool = True,
                   assume_nonneg: bool = False) -> CompiledKernel:
    """`caps`: a DeviceCaps or a Target.  `notes`, when given a dict, collects the lowering
    choice of each op (SPVJIT_DUMP=lowered).  On a target with a loop_iteration_limit, the
    kernel is first rewritten in place (loop_budget.py: small loop bodies unrolled, exit
    checks and a hidden status buffer where the limit could cut a loop).  `program_loop=False`
    forbids running several programs per workgroup.  `assume_nonneg`: the launch checked that
    the scalars axis_info.nonneg_wanted names are >= 0 in every program (launch_facts.py)."""
    caps = Target.of(caps)
    # before loop unrolling copies any print; asserts are checked in debug builds, as in Triton
    debug_print.add_print_buffer(kernel, asserts=knobs.get("SPVJIT_DEBUG"))
    loop_limit = caps.loop_iteration_limit
    kernel, w = rewrite_for_target(kernel, caps, num_warps)
    extra = dot_forms.extra_visits(w, caps, kernel)      # the loops a dot's lowering adds
    if loop_limit is not None:
        visits = loop_budget.header_visits(kernel, extra=extra)
        if visits is None or visits + 1 > loop_limit:
            loop_budget.add_exit_checks(kernel)     # adds the hidden status buffer parameter
    args = (param_div, notes, program_loop, loop_limit)
    try:
        return _build_fitting(kernel, caps, w, args, extra, assume_nonneg)
    except _ScratchOverflow:
        # spread over several subgroups (layout.spread_over_warps) a tile's exchanges go through
        # shared memory, which one subgroup shuffles instead: a kernel that stages too much
        # spread keeps one subgroup, its big tiles cut into slices (chunking.py).  Only where
        # nothing before the lowering depended on W: spreading drivers have no loop limit.
        if not caps.cpu or w <= caps.subgroup_size or loop_limit is not None:
            raise
        if notes is not None:
            notes.clear()
        w = caps.subgroup_size
        kernel = chunk_big_tiles(kernel, w, caps)
        return _build_fitting(kernel, caps, w, args, dot_forms.extra_visits(w, caps, kernel), assume_nonneg)


def _build_fitting(kernel, caps, w, args, extra, assume_nonneg) -> CompiledKernel:
    """The kernel built at W lanes; without cooperative matrices where those overflow shared memory."""
    param_div, notes, program_loop, loop_limit = args
    try:
        return _build(kernel, caps, w, param_div, notes, program_loop, loop_limit, extra, True, assume_nonneg)
    except _CoopSharedOverflow as e:
        # Each coopmat dot fits shared memory on its own, but a kernel with several (the
        # attention backward's four at 32x64 blocks on Mesa 26.1: 35-44 KiB of 32) may not;
        # the same kernel without cooperative matrices fits, so it is built that way.
        if notes is not None:
            notes.clear()
        ck = _build(kernel, caps, w, param_div, notes, program_loop, loop_limit, extra, False, assume_nonneg)
        if notes is not None:
            why = f"not on cooperative matrices ({e.shared} bytes of shared memory with them)"
            for op in kernel.walk():
                if op.name == "dot":
                    notes[id(op)] = why + ("; " + notes[id(op)] if id(op) in notes else "")
        return ck


def rewrite_for_target(kernel: KernelIR, caps, num_warps: int) -> tuple[KernelIR, int]:
    """(the kernel rewritten in place for `caps`, W): native atomics marked (before the loop
    budget: those have no retry loop), the lanes chosen, big tiles cut into slices on one
    subgroup of a CPU driver (chunking.py), small loop bodies unrolled where the driver limits
    loop-header visits.  The launch's visit counter replays this on a disk-cache hit."""
    caps = Target.of(caps)
    mark_native_atomics(kernel, caps)
    w = choose_workgroup(max_numel(kernel), num_warps, caps)
    kernel = chunk_big_tiles(kernel, w, caps)
    if caps.loop_iteration_limit is not None:
        kernel = loop_budget.unroll_for_budget(kernel)
    return kernel, w


class _ScratchOverflow(LoweringError):
    """The shared scratch of the kernel's tiles exceeds the device's shared memory at this W."""


class _CoopSharedOverflow(LoweringError):
    """The cooperative-matrix arrays and the scratch together exceed the device's shared memory."""

    def __init__(self, message: str, shared: int):
        super().__init__(message)
        self.shared = shared


def _build(kernel, caps, w, param_div, notes, program_loop, loop_limit, extra, use_coopmat: bool,
           assume_nonneg: bool = False):
    """The SPIR-V module of `kernel` (already rewritten for the loop budget); reads the IR only."""
    b = ModuleBuilder(version=(1, 3))
    b.capability("Shader")
    b.memory_model("Logical", "GLSL450")
    em = Emitter(b)
    ptr_params = [p for p in kernel.params if p.value.type.is_pointer]
    scalar_params = [p for p in kernel.params if not p.value.type.is_pointer]
    bindings = [Binding(i, p.name, p.value.type.elem.pointee, p.value.type.elem.pointee)
                for i, p in enumerate(ptr_params)]
    push, push_size = push_layout(scalar_params)
    written, read = _param_access(kernel, ptr_params)
    if written is not None:
        # retry loops of atomics write the status buffer from the lowering, not through IR stores
        written |= {bd.index for bd in bindings if bd.name == loop_budget.STATUS_PARAM}
    for bd in bindings:
        bd.read_only = written is not None and bd.index not in written
        bd.write_only = read is not None and bd.index not in read
    for bd in bindings:
        if bd.name == debug_print.PRINT_PARAM:   # written through atomics the IR does not show
            bd.read_only = bd.write_only = False
            written = None if written is None else written | {bd.index}
    axis = axis_info.analyze(kernel, param_div or {}, assume_nonneg)
    coop_plan = coopmat.Plan(kernel, caps if use_coopmat else None, w, axis)
    cpu = caps.cpu
    if cpu:
        # lavapipe reads per-lane addresses 2-3x faster through texel buffers than storage buffers
        # (but cooperative-matrix loads need a pointer into a storage buffer)
        limit = caps.max_texel_buffer_elements
        for bd in bindings:
            # texel formats stop at 32 bits: 64-bit tensors stay storage buffers
            if written is not None and bd.index not in written and limit and bd.dtype.bits <= 32 and \
                    id(ptr_params[bd.index].value) not in coop_plan.storage_params:
                bd.texel = True
    mem = Memory(em, bindings, push)
    mem.wide_stores = cpu and caps.int64
    mem.declare(_float_atomic_bindings(kernel, bindings))
    dot_reads = dot_loop_plan.plan_dot_reads(kernel, w, caps, coop_plan.dots)
    scratch = _scratch_words(kernel, w, coop_plan.dots, dot_reads)
    max_shared = caps.max_shared_memory
    if scratch * 4 > max_shared:
        raise _ScratchOverflow(f"kernel {kernel.name} needs {scratch * 4} bytes of shared memory for its "
                            f"tiles with {w} invocations; the device has {max_shared}; use smaller blocks")
    mem.declare_scratch(scratch)

    fn = b.begin_function(b.type_void(), b.type_function(b.type_void(), []))
    b.label()
    lane = mem.load_entry_values()
    mem.hoist_texel_handles()
    lw = Lowerer(em, kernel, w, mem, lane, subgroup.available(caps, w))
    lw.axis = axis
    lw.caps = caps
    lw.coop_plan = coop_plan
    lw.dot_reads = dot_reads
    lw.notes = notes
    for p in ptr_params:
        lw.env[id(p.value)] = LV([em.ci(0)], True, ptr_params.index(p))
    for i, p in enumerate(scalar_params):
        lw.env[id(p.value)] = LV([mem.scalar_arg(i)], True)
    # Scratch is safe to reuse across the loop's programs: the loop and its bounds check are
    # uniform over the workgroup, and every scratch exchange begins with a barrier.
    program_loop = program_loop and cpu and _returns_only_at_end(kernel) and _fits_budget(kernel, loop_limit, extra)
    if program_loop:
        _lower_program_loop(lw, mem, kernel)
    else:
        lw.lower_block(kernel.body)
    if not em.terminated:
        b.emit("OpReturn", None)
    if lw.global_addresses:
        global_pointers.finish_module(b)
    shared = scratch * 4 + getattr(mem, "coop_shared_bytes", 0)
    if shared > max_shared:
        raise _CoopSharedOverflow(f"kernel {kernel.name} needs {shared} bytes of shared memory "
                                  f"(cooperative-matrix staging included); the device has {max_shared}; "
                                  "use smaller blocks", shared)
    b.end_function()
    b.entry_point("GLCompute", fn, "main")
    b.execution_mode(fn, "LocalSize", w, 1, 1)
    if lw.rte_float16:      # f32 -> f16 conversions round to nearest even (Lowerer.f32_to_f16)
        em.capability("RoundingModeRTE")
        b.extension("SPV_KHR_float_controls")
        b.execution_mode(fn, "RoundingModeRTE", 16)
    b.name(fn, kernel.name)
    return CompiledKernel(kernel.name, b.assemble(), w, bindings, push,
                          push_size, scratch * 4, frozenset(em.caps_used), program_loop)


def push_layout(scalar_params) -> tuple[list[PushMember], int]:
    """Scalar arguments after the launch header, each at an offset aligned to its own size
    (a 64-bit argument takes two words on an 8-byte boundary, as Vulkan's push-constant
    layout requires); returns the members and the block's size in bytes."""
    push, offset = [], 4 * PUSH_HEADER_WORDS
    for p in scalar_params:
        dt = p.value.type.elem
        if dt.bits not in (32, 64):
            raise LoweringError(f"scalar argument '{p.name}' must be 32- or 64-bit, got {dt}")
        size = dt.bits // 8
        offset = -(-offset // size) * size
        push.append(PushMember(p.name, dt, offset))
        offset += size
    return push, offset


def _fits_budget(kernel: KernelIR, loop_limit: int | None, extra=None) -> bool:
    """Whether the program loop may run on a loop-limited driver: the budget is per invocation,
    so a workgroup's programs share it.  Constant trip counts must fit SPVJIT_PROGRAMS_PER_WORKGROUP
    times; trip counts that follow from the scalar arguments let the launcher choose how many
    programs fit (launch.budget_programs); any other loop (bounds from program ids or loaded
    values) means one program per workgroup."""
    if loop_limit is None:
        return True
    visits = loop_budget.header_visits(kernel, extra=extra)
    if visits is not None:
        return knobs.get("SPVJIT_PROGRAMS_PER_WORKGROUP") * (visits + 1) + 1 <= loop_limit
    # trip counts from scalar arguments: the launcher caps the programs per workgroup from them
    return loop_budget.depends_only_on_args(kernel)


def _body_before_final_return(kernel: KernelIR) -> list:
    ops = kernel.body.ops
    return ops[:-1] if ops and ops[-1].name == "return" else ops


def _returns_only_at_end(kernel: KernelIR) -> bool:
    """No `return` but the body's last op (an early return would end the whole program loop)."""
    final = kernel.body.ops[-1] if kernel.body.ops else None
    return all(op is final for op in kernel.walk() if op.name == "return")


def _lower_program_loop(lw, mem, kernel: KernelIR):
    """CPU drivers (lavapipe) pay a fixed cost per workgroup that rivals a small program's
    work, so there each workgroup runs several programs in turn: the launcher picks how
    many per launch (push word PROGRAMS_WORD) from the grid and the host's threads.
    Programs share no state: each iteration is the kernel body for one program id."""
    em = lw.em
    body_ops = _body_before_final_return(kernel)

    def one_program(slot):
        mem.program_slot = slot
        with lw.scope():
            live = em.ilt(mem.program_id(0), mem.num_programs(0))
            with em.if_then(live), lw.scope():
                lw.lower_ops(body_ops)
        mem.program_slot = None

    count = em.op("OpBitcast", em.i32, mem.programs_per_workgroup())
    with lw.scope():
        em.counted_loop(count, one_program)
