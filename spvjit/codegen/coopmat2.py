"""VK_NV_cooperative_matrix2 for `dot`: matrices of flexible dimensions.

VK_KHR_cooperative_matrix allows only the M x N x K shapes a device lists (lavapipe: 8x8x8),
so a 64x64x32 dot is 64 tiles x 4 K steps = 256 OpCooperativeMatrixMulAddKHR (plus an A
and a B load each) spread over the subgroups.  Where the device reports
VK_NV_cooperative_matrix2's `cooperativeMatrixFlexibleDimensions`, a subgroup-scope matrix may
have any M, N, K that are multiples of a listed configuration's granularities, up to
`cooperativeMatrixFlexibleDimensionsMaxDimension`; the SPIR-V is the same KHR instructions on
bigger OpTypeCooperativeMatrixKHR types, so everything the KHR path does (loop-carried
accumulators, epilogues, direct loads and stores) carries over unchanged.  The shape is chosen
so that each subgroup issues as few MulAdds as possible (ideally one per dot: one tile per
subgroup, K in one step), then as few loaded elements as possible (square-ish tiles), within a
budget of registers per invocation for the A, B and accumulator matrices together.

What lavapipe 26.1 reports (and what decided this path): flexible dimensions, reductions,
conversions and per-element operations, 8x8x8 granules for the same four type combinations as
its KHR list, max dimension 1024, subgroup scope only; no workgroup scope, no tensor addressing,
no block loads.  So tensor-addressing loads with clamping (OpCooperativeMatrixLoadTensorNV) cannot
run on any device here and are not emitted.

SPVJIT_DISABLE_COOPMAT=1 turns off this path with the KHR one; SPVJIT_DISABLE_COOPMAT2=1 only this
one (the KHR configurations are then used as on a device without the extension).
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import knobs
from ..runtime.capabilities import CoopMatConfig

# 32-bit registers per invocation that the A, B and accumulator matrices of one MulAdd may take
# together (each holds rows*cols/subgroup-size components): NVIDIA allows 255 per thread, and
# the kernel needs the rest; beyond this the matrices would spill.  For 32 lanes and an f32
# accumulator that is e.g. 32x64x32 (64 + 16 + 32 registers); for lavapipe's 8 lanes, 16x32x16.
REGISTER_BUDGET = 128
_BYTES = {"f16": 2, "bf16": 2, "i8": 1, "u8": 1, "f32": 4, "i32": 4, "u32": 4}


def registers(m: int, n: int, k: int, in_name: str, c_name: str, sg: int) -> int:
    """32-bit registers per invocation for an m x k A, a k x n B and an m x n accumulator."""
    total = (m * k + k * n) * _BYTES[in_name] + m * n * _BYTES[c_name]
    return -(-total // (4 * sg))


@dataclass(frozen=True)
class FlexibleTile(CoopMatConfig):
    """A matrix shape made from a flexible-dimensions configuration (not in the KHR list)."""


def flexible_configs(caps) -> tuple:
    """The device's usable flexible-dimensions configurations (subgroup scope), or ()."""
    cm2 = getattr(caps, "cooperative_matrix2", None)
    if cm2 is None or not cm2.has("flexible_dimensions") or knobs.get("SPVJIT_DISABLE_COOPMAT2"):
        return ()
    return tuple(f for f in cm2.flexible if f.scope == "subgroup" and not f.saturating)


def _multiples(extent: int, granule: int, limit: int):
    """Tile sizes that are multiples of granule, divide extent and stay <= limit."""
    return [s for s in range(granule, min(extent, limit) + 1, granule) if extent % s == 0]


def find_flexible(caps, w: int, M: int, N: int, K: int, in_name: str, c_name: str):
    """The FlexibleTile for an M x N x K dot with w invocations, or None."""
    flex = flexible_configs(caps)
    if not flex:
        return None
    sg = caps.subgroup_size
    n_sub = w // sg
    limit = caps.cooperative_matrix2.flexible_max_dimension
    if in_name not in _BYTES or c_name not in _BYTES:
        return None
    best, best_score = None, None
    for f in flex:
        if (f.a_type, f.b_type) != (in_name, in_name) or f.c_type != c_name or f.result_type != c_name:
            continue
        for m in _multiples(M, f.m_granularity, limit):
            for n in _multiples(N, f.n_granularity, limit):
                tiles = (M // m) * (N // n)
                if tiles % n_sub:
                    continue              # every subgroup owns the same number of tiles
                for k in _multiples(K, f.k_granularity, limit):
                    if registers(m, n, k, in_name, c_name, sg) > REGISTER_BUDGET:
                        continue
                    per_subgroup = tiles // n_sub
                    score = (per_subgroup * (K // k),             # MulAdds per subgroup
                             per_subgroup * K * (m + n),          # A and B elements it loads
                             -m)
                    if best_score is None or score < best_score:
                        best_score = score
                        best = FlexibleTile(m, n, k, in_name, in_name, c_name, c_name, False, "subgroup")
    return best


def legal_types(caps, cfg) -> set[str]:
    """Accumulator component types an m x n flexible matrix may have (for epilogues)."""
    if not isinstance(cfg, FlexibleTile):
        return set()
    limit = caps.cooperative_matrix2.flexible_max_dimension
    out = set()
    for f in flexible_configs(caps):
        if cfg.m % f.m_granularity == 0 and cfg.n % f.n_granularity == 0 and max(cfg.m, cfg.n) <= limit:
            out |= {f.c_type, f.result_type}
    return out


def describe(cfg) -> str:
    """How a dot's matrices were chosen, for lowering notes."""
    if isinstance(cfg, FlexibleTile):
        return f"{cfg.m}x{cfg.n}x{cfg.k} flexible (VK_NV_cooperative_matrix2)"
    return f"{cfg.m}x{cfg.n}x{cfg.k}"
