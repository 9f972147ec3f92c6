"""Triton tutorial 08: grouped GEMM.  A fixed number of persistent programs (NUM_SM) walk
the tiles of several differently shaped GEMMs; each GEMM's A, B and C are reached through
device addresses (`data_ptr()`s in int64 tensors, turned back into pointers with
`.to(tl.pointer_type(tl.float16))`), its sizes and leading dimensions read from tensors.
Written in Triton's language from the algorithm (not Triton's text): `grouped_matmul_kernel`
is the tutorial's form (no masks: every size a multiple of the block, as in Triton's own
test), `grouped_matmul_kernel_masked` adds the edge masks so sizes need not be.  Host glue
is numpy instead of torch.  Each runs on the device and in the interpreter against numpy.
"""
import numpy as np
import pytest

import spvjit as triton
import spvjit.language as tl

MODES = ["device", "interpreter"]


def launch(kernel, mode):
    return triton.interpret(kernel) if mode == "interpreter" else kernel


@triton.jit
def grouped_matmul_kernel(group_a_ptrs, group_b_ptrs, group_c_ptrs, group_gemm_sizes, g_lds, group_size,
                          NUM_SM: tl.constexpr, BLOCK_SIZE_M: tl.constexpr, BLOCK_SIZE_N: tl.constexpr,
                          BLOCK_SIZE_K: tl.constexpr):
    tile_idx = tl.program_id(0)
    last_problem_end = 0
    for g in range(group_size):
        # this GEMM's sizes, and how many C tiles it has
        gm = tl.load(group_gemm_sizes + g * 3)
        gn = tl.load(group_gemm_sizes + g * 3 + 1)
        gk = tl.load(group_gemm_sizes + g * 3 + 2)
        num_m_tiles = tl.cdiv(gm, BLOCK_SIZE_M)
        num_n_tiles = tl.cdiv(gn, BLOCK_SIZE_N)
        num_tiles = num_m_tiles * num_n_tiles
        # this program's tiles of this GEMM, NUM_SM apart
        while tile_idx >= last_problem_end and tile_idx < last_problem_end + num_tiles:
            k = gk
            lda = tl.load(g_lds + g * 3)
            ldb = tl.load(g_lds + g * 3 + 1)
            ldc = tl.load(g_lds + g * 3 + 2)
            a_ptr = tl.load(group_a_ptrs + g).to(tl.pointer_type(tl.float16))
            b_ptr = tl.load(group_b_ptrs + g).to(tl.pointer_type(tl.float16))
            c_ptr = tl.load(group_c_ptrs + g).to(tl.pointer_type(tl.float16))
            tile_idx_in_gemm = tile_idx - last_problem_end
            tile_m_idx = tile_idx_in_gemm // num_n_tiles
            tile_n_idx = tile_idx_in_gemm % num_n_tiles
            offs_am = tile_m_idx * BLOCK_SIZE_M + tl.arange(0, BLOCK_SIZE_M)
            offs_bn = tile_n_idx * BLOCK_SIZE_N + tl.arange(0, BLOCK_SIZE_N)
            offs_k = tl.arange(0, BLOCK_SIZE_K)
            a_ptrs = a_ptr + offs_am[:, None] * lda + offs_k[None, :]
            b_ptrs = b_ptr + offs_k[:, None] * ldb + offs_bn[None, :]
            accumulator = tl.zeros((BLOCK_SIZE_M, BLOCK_SIZE_N), dtype=tl.float32)
            for kk in range(0, tl.cdiv(k, BLOCK_SIZE_K)):
                tl.multiple_of(a_ptrs, [16, 16])      # alignment hints, as the tutorial gives them
                tl.multiple_of(b_ptrs, [16, 16])
                a = tl.load(a_ptrs)
                b = tl.load(b_ptrs)
                accumulator += tl.dot(a, b)
                a_ptrs += BLOCK_SIZE_K
                b_ptrs += BLOCK_SIZE_K * ldb
            c = accumulator.to(tl.float16)
            offs_cm = tile_m_idx * BLOCK_SIZE_M + tl.arange(0, BLOCK_SIZE_M)
            offs_cn = tile_n_idx * BLOCK_SIZE_N + tl.arange(0, BLOCK_SIZE_N)
            c_ptrs = c_ptr + ldc * offs_cm[:, None] + offs_cn[None, :]
            tl.store(c_ptrs, c)
            tile_idx += NUM_SM
        last_problem_end = last_problem_end + num_tiles


@triton.jit
def grouped_matmul_kernel_masked(group_a_ptrs, group_b_ptrs, group_c_ptrs, group_gemm_sizes, g_lds,
                                 group_size, NUM_SM: tl.constexpr, BLOCK_SIZE_M: tl.constexpr,
                                 BLOCK_SIZE_N: tl.constexpr, BLOCK_SIZE_K: tl.constexpr):
    tile_idx = tl.program_id(0)
    last_problem_end = 0
    for g in range(group_size):
        gm = tl.load(group_gemm_sizes + g * 3)
        gn = tl.load(group_gemm_sizes + g * 3 + 1)
        gk = tl.load(group_gemm_sizes + g * 3 + 2)
        num_m_tiles = tl.cdiv(gm, BLOCK_SIZE_M)
        num_n_tiles = tl.cdiv(gn, BLOCK_SIZE_N)
        num_tiles = num_m_tiles * num_n_tiles
        while tile_idx >= last_problem_end and tile_idx < last_problem_end + num_tiles:
            lda = tl.load(g_lds + g * 3)
            ldb = tl.load(g_lds + g * 3 + 1)
            ldc = tl.load(g_lds + g * 3 + 2)
            a_ptr = tl.load(group_a_ptrs + g).to(tl.pointer_type(tl.float16))
            b_ptr = tl.load(group_b_ptrs + g).to(tl.pointer_type(tl.float16))
            c_ptr = tl.load(group_c_ptrs + g).to(tl.pointer_type(tl.float16))
            tile_idx_in_gemm = tile_idx - last_problem_end
            tile_m_idx = tile_idx_in_gemm // num_n_tiles
            tile_n_idx = tile_idx_in_gemm % num_n_tiles
            offs_am = tile_m_idx * BLOCK_SIZE_M + tl.arange(0, BLOCK_SIZE_M)
            offs_bn = tile_n_idx * BLOCK_SIZE_N + tl.arange(0, BLOCK_SIZE_N)
            offs_k = tl.arange(0, BLOCK_SIZE_K)
            a_ptrs = a_ptr + offs_am[:, None] * lda + offs_k[None, :]
            b_ptrs = b_ptr + offs_k[:, None] * ldb + offs_bn[None, :]
            accumulator = tl.zeros((BLOCK_SIZE_M, BLOCK_SIZE_N), dtype=tl.float32)
            for kk in range(0, tl.cdiv(gk, BLOCK_SIZE_K)):
                k_left = gk - kk * BLOCK_SIZE_K
                a = tl.load(a_ptrs, mask=(offs_am[:, None] < gm) & (offs_k[None, :] < k_left), other=0.0)
                b = tl.load(b_ptrs, mask=(offs_k[:, None] < k_left) & (offs_bn[None, :] < gn), other=0.0)
                accumulator = tl.dot(a, b, accumulator)
                a_ptrs += BLOCK_SIZE_K
                b_ptrs += BLOCK_SIZE_K * ldb
            c = accumulator.to(tl.float16)
            c_ptrs = c_ptr + ldc * offs_am[:, None] + offs_bn[None, :]
            tl.store(c_ptrs, c, mask=(offs_am[:, None] < gm) & (offs_bn[None, :] < gn))
            tile_idx += NUM_SM
        last_problem_end = last_problem_end + num_tiles


def group_gemm_fn(kernel, mode, group_A, group_B, num_sm, blocks):
    """The tutorial's host side: one C per GEMM, and the address, size and leading-dimension
    tables the kernel reads.  Every tensor whose address is in a table stays referenced here
    until the launch has finished (the user keeps addressed tensors alive, as in Triton)."""
    group_C, tables = group_gemm_tables(group_A, group_B)
    group_gemm_launch(kernel, mode, tables, num_sm, blocks)
    return [C.numpy() for C in group_C]


def group_gemm_launch(kernel, mode, tables, num_sm, blocks):
    bm, bn, bk = blocks
    launch(kernel, mode)[(num_sm,)](*tables, NUM_SM=num_sm, BLOCK_SIZE_M=bm, BLOCK_SIZE_N=bn, BLOCK_SIZE_K=bk)


def group_gemm_tables(group_A, group_B):
    """(the C tensors, the kernel's table arguments) for GEMMs C_i = A_i @ B_i."""
    group_C = []
    for A, B in zip(group_A, group_B):
        assert A.shape[1] == B.shape[0]
        group_C.append(triton.empty((A.shape[0], B.shape[1]), np.float16))
    sizes = [(A.shape[0], B.shape[1], A.shape[1]) for A, B in zip(group_A, group_B)]
    lds = [(A.stride(0), B.stride(0), C.stride(0)) for A, B, C in zip(group_A, group_B, group_C)]
    d_a_ptrs = triton.tensor(np.array([A.data_ptr() for A in group_A], np.int64))
    d_b_ptrs = triton.tensor(np.array([B.data_ptr() for B in group_B], np.int64))
    d_c_ptrs = triton.tensor(np.array([C.data_ptr() for C in group_C], np.int64))
    d_g_sizes = triton.tensor(np.array(sizes, np.int32))
    d_g_lds = triton.tensor(np.array(lds, np.int32))
    return group_C, (d_a_ptrs, d_b_ptrs, d_c_ptrs, d_g_sizes, d_g_lds, len(group_A))


def _operands(shapes, rng, integers: bool):
    group_A, group_B = [], []
    for m, n, k in shapes:
        if integers:
            a, b = rng.integers(-3, 4, (m, k)), rng.integers(-3, 4, (k, n))
        else:
            a, b = rng.uniform(-1, 1, (m, k)), rng.uniform(-1, 1, (k, n))
        group_A.append(triton.tensor(a.astype(np.float16)))
        group_B.append(triton.tensor(b.astype(np.float16)))
    return group_A, group_B


@pytest.mark.parametrize("mode", MODES)
def test_grouped_gemm_tutorial(mode, request):
    """The tutorial's kernel on sizes that are multiples of the block (as Triton's test uses),
    each GEMM a different shape, more tiles than programs."""
    if mode == "device":
        request.getfixturevalue("needs_device")
    rng = np.random.default_rng(8)
    shapes = [(64, 32, 48), (32, 48, 16), (16, 16, 64), (48, 16, 32)]
    group_A, group_B = _operands(shapes, rng, integers=False)
    got = group_gemm_fn(grouped_matmul_kernel, mode, group_A, group_B, num_sm=4, blocks=(16, 16, 16))
    for A, B, C in zip(group_A, group_B, got):
        want = (A.numpy().astype(np.float32) @ B.numpy().astype(np.float32)).astype(np.float16)
        # f32 accumulation in another order moves the sum by a few f32 ulps (K <= 64, |terms| <= 1),
        # which can flip the final f16 rounding by one f16 ulp (2**-10 relative, 2**-24 absolute
        # below the normal range): allow one ulp
        np.testing.assert_allclose(C.astype(np.float32), want.astype(np.float32), rtol=2 ** -10, atol=2 ** -14)


@pytest.mark.parametrize("mode", MODES)
def test_grouped_gemm_ragged_sizes(mode, request):
    """Sizes not multiples of the block (edges masked), a GEMM smaller than one block, and
    fewer programs than tiles of the biggest GEMM.  Integer-valued f16 inputs keep every
    product and partial sum an exact integer below 2**11, so the f16 result must be exact."""
    if mode == "device":
        request.getfixturevalue("needs_device")
    rng = np.random.default_rng(80)
    shapes = [(37, 21, 29), (5, 3, 7), (16, 40, 17), (50, 9, 33)]
    group_A, group_B = _operands(shapes, rng, integers=True)
    got = group_gemm_fn(grouped_matmul_kernel_masked, mode, group_A, group_B, num_sm=3, blocks=(16, 16, 16))
    for A, B, C in zip(group_A, group_B, got):
        want = A.numpy().astype(np.float32) @ B.numpy().astype(np.float32)
        np.testing.assert_array_equal(C.astype(np.float32), want)


def test_benchmark_script_runs(needs_device):
    """benchmarks/grouped_gemm.py keeps working (tiny case; it checks its results itself)."""
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "grouped_gemm.py"
    run = subprocess.run([sys.executable, str(script), "--sizes", "32", "--groups", "2", "--programs", "4"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "WRONG" not in run.stdout and run.stdout.strip().splitlines()[-1].split()[0] == "32"
    bad = subprocess.run([sys.executable, str(script), "--sizes", "30"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "--blocks must be powers of two dividing every size" in bad.stderr
