"""Which dots become loops over k (block_loops.py lowers them), and how many k steps a trip takes.

Decided before lowering, from the IR alone: the shape rule (above Target.dot_unroll_limit
multiply-adds per lane), the operand-aware window below it on CPU drivers (dots whose operands
the loop reads itself, dot_operands.py), the wider window of dot-heavy kernels, and the layouts
that allow a loop (C's rows span whole vec4 blocks of every lane, or a block spans whole rows).
compiler.py plans it once (plan_dot_reads) so the shared scratch is sized for what is staged, and
loop_budget's counters (dot_forms.extra_visits) count the same loops.
"""
from __future__ import annotations

from . import dot_operands, subgroup

STEP_COPIES = (4, 2, 1)
     # copies of the k step per loop trip (the largest that divides K)


def dot_shape(op):
    """(M, N, K) of a 2-D dot, else None (batched dots)."""
    a_t, b_t = op.operands[0].type, op.operands[1].type
    if len(a_t.shape) != 2 or len(b_t.shape) != 2:
        return None
    (M, K), N = a_t.shape, b_t.shape[1]
    return M, N, K


MAX_BODY_MULADDS = 128
     # vec4 multiply-adds in one trip of a dot's loop (accumulator blocks x copies of the step)
     # up to which a CPU driver gets W copies; bigger bodies get 4 where A is staged or where
     # the kernel's looped dots are many (MAX_KERNEL_MULADDS).  Every copy of the step reads A
     # for each row: a staged A is M per-lane shared loads per 4 steps, each a loop over the
     # lanes on lavapipe 22.3, an A the loop reads is M vec4 texel fetches.  The forward of
     # tutorial 06 at 32x32 blocks, HEAD_DIM 64, compiled in 25 s of driver CPU with 8 copies
     # everywhere, 18 s with 4 on its P V (a limit of 256) and 12.7 s with 4 on its Q K^T too
     # (128; 14.2 s at 256 in the same alternating runs), with the same or better run time
     # (fewer accumulator copies carried around the loop per step, no fewer multiply-adds).
     # Where the loop reads A itself a lone dot keeps
     # W: the tutorial matmul's 64x64x32 ran 10-15% slower with 4 steps per trip (a helper's
     # measurement, docs/PERFORMANCE.md) for a small gain in compile time
MAX_KERNEL_MULADDS = 1024
     # the looped dots of a kernel together, at W copies, above which their big bodies get 4
     # copies also where the loop reads A: tutorial 06's dK/dV at 32x64 blocks (four dots,
     # 3072 at 8 copies) compiled in 47 s with 8 copies on its two dots that read A and 37 s
     # with 4; the tutorial matmul (one dot, 1024) is left as it was


def copies(K: int, w: int, blocks: int = 0, small_body: bool = False) -> int:
    """Copies of the k step per trip: W where it divides K (then each lane loads one of the W
    A elements of a row that the trip needs, and subgroup broadcasts hand them out), else the
    largest of STEP_COPIES that divides K.  With `small_body` W only while `blocks` (the
    accumulator's vec4 register blocks) times W stays within MAX_BODY_MULADDS."""
    if w > 1 and K % w == 0 and not (small_body and blocks * w > MAX_BODY_MULADDS):
        return w
    return next(u for u in STEP_COPIES if K % u == 0)


def dot_copies(op, w: int, target, reads: dot_operands.Analysis) -> int:
    """copies() for `op` (a dot lowered as a loop over k) on `target`: small bodies on CPU
    drivers where A is staged (the loop does not read it from memory itself) or where the
    kernel's looped dots are many (`reads`: plan_dot_reads, which knows both)."""
    M, N, K = dot_shape(op)
    small = getattr(target, "cpu", False) and (reads.operand_load(op, 0) is None or reads.crowded)
    return copies(K, w, M * N // (4 * w), small)


def _crowded(kernel, looped, w: int) -> bool:
    """The looped dots' bodies at W copies together exceed MAX_KERNEL_MULADDS."""
    total = 0
    for op in kernel.walk():
        if id(op) in looped:
            M, N, _ = dot_shape(op)
            total += M * N // (4 * w) * w
    return total > MAX_KERNEL_MULADDS


def loops_dot(op, w: int, target, vectorize: bool = True, repeats: int = 1) -> bool:
    """Whether `op` (a dot) is lowered as a loop over k by its shape alone: more multiply-adds
    per lane than Target.dot_unroll_limit (`repeats`: slices, see slice_repeats), and layouts
    that allow it (see looped_dots for the operand-aware rule below the limit)."""
    if not _loopable(op, w, vectorize):
        return False
    M, N, K = dot_shape(op)
    limit = getattr(target, "dot_unroll_limit", None)
    return limit is not None and M * N * K * repeats > limit * w


def slice_repeats(kernel) -> dict:
    """id(dot) -> how many slices of one program it computes: the product of the `slices` of
    the strip-mine loops around it (chunking.py), 1 elsewhere.  The rules below size a slice's
    dot as the whole program's: the cut exists to bound the registers a lane holds, and
    unrolling the slice's dots would bring back the live values it removed.  Tutorial 06's
    dK/dV at Triton's 32x128 blocks, cut into 16-row slices (four dots of 1024 multiply-adds
    per lane each), compiled on lavapipe 22.3 in 7.2-7.6 s with its dots looped and 18-21 s
    with them unrolled (docs/PERFORMANCE.md, "Big tiles in slices")."""
    out: dict = {}

    def visit(block, n: int) -> None:
        for op in block.ops:
            if op.name == "dot":
                out[id(op)] = n
            inner = n * op.attrs.get("slices", 1) if op.name == "for" else n
            for region in op.regions:
                visit(region, inner)

    visit(kernel.body, 1)
    return out


def _loopable(op, w: int, vectorize: bool) -> bool:
    """C's vec4 register blocks each lie in whole rows, 32-bit or narrower types: a row spans
    whole vec4 blocks of every lane (N % 4W == 0), or a block spans P = 4W/N whole rows (N a
    power of two below 4W; M and K multiples of P, so that C and B have the vec4 layout)."""
    mnk = dot_shape(op)
    if mnk is None or not vectorize:
        return False
    if any(v.type.elem.bits > 32 for v in op.operands):
        return False                  # 64-bit dots (f64 accumulation) keep the unrolled forms
    M, N, K = mnk
    if N % (4 * w) == 0:
        return True
    P = rows_per_block(N, w)
    return N % 4 == 0 and (4 * w) % N == 0 and M % P == 0 and K % P == 0


def rows_per_block(N: int, w: int) -> int:
    """P: the rows of C (and of B) that one vec4 register block holds across the lanes."""
    return max(1, 4 * w // N)


MIN_TRIPS_BELOW_LIMIT = 4
     # trips of the k loop the operand-aware rule asks for: 32x32x32 (4 trips) ran 1.5-2.3x
     # faster as a loop, while 32x128x16 (2 trips) ran 0.8-0.9x in f32 and 16x512x8 (1 trip)
     # measured faster unrolled


MIN_TRIPS_DOT_HEAVY = 2
     # the same in a dot-heavy kernel (dot_heavy), whose window also starts at a quarter of
     # the limit itself and takes a staged A: tutorial 06 at HEAD_DIM 16 (K = 16: 2 trips of 8
     # steps).  Its backward at Triton's own blocks (four dots of 8192 multiply-adds per lane)
     # took lavapipe 22.3 489 s and 10.8 GB to compile dK/dV unrolled, 62-70 s looped; at
     # 32x32 blocks (four dots of 2048) its forward took 40.5 s unrolled, 7.9 s looped (and
     # ran faster: ratio to numpy 1.20 against 0.90 in one run)


def dot_heavy(kernel, w: int, target) -> bool:
    """The kernel has several dots which, unrolled, would make at least three quarters of
    Target.dot_unroll_limit multiply-adds per lane together: then the window below is wider.
    A lone dot keeps the measured rule (16x512x8 and 32x128x16 ran as fast or faster unrolled).
    Tutorial 06's dQ at 32x32 blocks, HEAD_DIM 16 (three dots of 2048: 6144) compiles in 10.7 s
    instead of 45-50 s looped, and the backward ran 38.9 against 47.6 ms; at half the limit the
    llama runner's prefill attention (two dots of 2048 at BQ=8, BT=32, D=64) looped too, and ran
    11% slower (53.9 against 48.3 ms for 512 rows of 9 heads)."""
    limit = getattr(target, "dot_unroll_limit", None)
    if limit is None:
        return False
    total, count = 0, 0
    repeats = slice_repeats(kernel)
    for op in kernel.walk():
        mnk = dot_shape(op) if op.name == "dot" else None
        if mnk is not None:
            M, N, K = mnk
            total += M * N * K * repeats[id(op)] // w
            count += 1
    return count > 1 and 4 * total >= 3 * limit


def _in_window(op, w: int, target, heavy: bool = False, repeats: int = 1) -> bool:
    """The operand-aware rule's size window: on CPU drivers (where it was measured: the
    per-lane memory accesses of the unrolled form's operands are loops over the lanes there),
    above a quarter of the limit, and at least MIN_TRIPS_BELOW_LIMIT trips of the loop (in a
    dot-heavy kernel from a quarter of the limit itself, and MIN_TRIPS_DOT_HEAVY trips)."""
    limit = getattr(target, "dot_unroll_limit", None)
    if not getattr(target, "cpu", False) or limit is None:
        return False
    M, N, K = dot_shape(op)
    work = M * N * K * repeats
    if heavy:
        return work >= (limit // 4) * w and K >= MIN_TRIPS_DOT_HEAVY * copies(K, w)
    return work > (limit // 4) * w and K >= MIN_TRIPS_BELOW_LIMIT * copies(K, w)


def looped_dots(kernel, w: int, target, vectorize: bool = True) -> frozenset:
    """ids of the dots lowered as a loop over k: those over the limit (loops_dot), and, from a
    quarter of it and with MIN_TRIPS_BELOW_LIMIT trips, those whose A and B are both loads the
    loop reads itself (dot_operands), or, at the limit itself, whose B is (A staged: attention
    forward's P V at 32x32 blocks and HEAD_DIM 64, 8192 multiply-adds per lane, compiled in 31 s
    instead of 96 s with the same speed against numpy, 0.90 vs 0.94 in two runs).
    The second rule looks at the operands because the loop's advantage is reading them one k
    step at a time: the tutorial matmul 32x32x32 (4096 multiply-adds per lane) compiled in
    2.8 s instead of 20.5 s and ran 7.6 instead of 5.5 GFLOP per CPU-second as a loop, while a
    loop whose operands had to be staged first pays a scalar loop over the lanes per staged
    register on lavapipe.  In a dot-heavy kernel (dot_heavy: attention's several dots) the
    window is wider and a staged A no longer keeps a dot unrolled (see MIN_TRIPS_DOT_HEAVY).
    loop_budget counts visits from this same set (dot_forms.extra_visits)."""
    looped = set()
    window = []
    heavy = dot_heavy(kernel, w, target)
    repeats = slice_repeats(kernel)
    for op in kernel.walk():
        if op.name != "dot" or not _loopable(op, w, vectorize):
            continue
        big = loops_dot(op, w, target, vectorize, repeats[id(op)])
        if big and not _narrow(op, w):
            looped.add(id(op))
        elif big or _in_window(op, w, target, heavy, repeats[id(op)]):   # big narrow: only with B read
            window.append(op)
    if window:
        ids = {id(op) for op in window}
        an = dot_operands.Analysis(kernel, lambda op: id(op) in ids, True)
        limit = target.dot_unroll_limit
        for op in window:
            if an.operand_load(op, 1) is None:
                continue
            M, N, K = dot_shape(op)
            if an.operand_load(op, 0) is not None or M * N * K * repeats[id(op)] >= limit * w or heavy:
                looped.add(id(op))
    return frozenset(looped)


def trips_visits(op, w: int, target, reads: dot_operands.Analysis) -> int:
    """Loop-header visits of `op` lowered as a loop over k, at most: K/U trips, plus one for
    a final check that the rotated loop (block_loops.phi_loop) no longer makes, kept as
    a margin (`reads`: plan_dot_reads, which dot_copies asks)."""
    return dot_shape(op)[2] // dot_copies(op, w, target, reads) + 1


def plan_dot_reads(kernel, w: int, target, coop_dots=(), vectorize: bool = True) -> dot_operands.Analysis:
    """Which dots are loops over k (not on cooperative matrices) and which loads they read
    themselves; decided before lowering, so the shared scratch can be sized for what is staged."""
    looped = set(looped_dots(kernel, w, target, vectorize) - frozenset(coop_dots))
    sg = subgroup.available(target, w)
    broadcast_ok = bool(sg.get("whole") and sg.get("broadcast"))
    while True:
        an = dot_operands.Analysis(kernel, lambda op, ids=frozenset(looped): id(op) in ids, broadcast_ok)
        # a narrow dot reads B only from memory (its lanes do not hold the B rows they need);
        # dropping one can unfuse a load another shared, so until nothing changes
        drop = {id(op) for op in kernel.walk() if id(op) in looped and _narrow(op, w)
                and an.operand_read(op, 1) is None}
        if not drop:
            break
        looped -= drop
    an.crowded = _crowded(kernel, looped, w)      # for dot_copies
    return an


def _narrow(op, w: int) -> bool:
    """C's rows are narrower than the lanes' vec4 blocks (N < 4W, see _loopable)."""
    return dot_shape(op)[1] < 4 * w
