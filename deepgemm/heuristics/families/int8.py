"""The INT8 W8A8 GEMM (`impls/sm90_int8_gemm.cuh`): s8 x s8 operands (both K-major), exact s32
accumulation in the tensor cores (no promotion step), per-token / per-channel scales, zero-point
correction and bias applied in the epilogue (or the raw s32 sums stored); dense and MoE grouped."""

from __future__ import annotations

from ..family import BLOCK_K_BYTES, KernelFamily, align

# K elements per k-block: one 128-byte line of int8.
BLOCK_K = BLOCK_K_BYTES


def smem_bytes(
    block_m: int,
    block_n: int,
    num_stages: int,
    k: int,
    out_bytes: int,
    grouped: bool = False,
    num_d_chunks: int = 1,
) -> int:
    """Dynamic shared memory of the kernel; mirrors `Int8GemmLayout::kSmemBytes` (K does not enter: the
    epilogue reads its scales from global memory)."""
    smem_d = align(block_m * block_n // num_d_chunks * out_bytes, 1024)
    per_stage = (block_m + block_n) * BLOCK_K_BYTES
    tile_slots = num_stages * 16 if grouped else 0
    return smem_d + num_stages * (per_stage + 2 * 8) + tile_slots


def accumulator_registers(block_m: int, block_n: int) -> int:
    """One s32 WGMMA accumulator per wave, kept by the tensor cores across k-blocks and converted in place."""
    num_waves = 2 if block_m == 256 else 1
    return block_n // 2 * num_waves


INT8 = KernelFamily(
    name="int8",
    operand_bytes=1,
    # The integer WGMMA forms take N of 8, 16, 24 and the multiples of 16; without promotion sums the
    # kernel has the registers for tiles up to 256 wide.
    block_n_candidates=tuple(range(16, 257, 16)),
    block_n_step=16,
    # As the 16-bit kernel, it keeps one k-block of WGMMAs in flight while the next is issued, so it
    # holds two stages at once: with fewer than three the loads stop overlapping the math.
    # The epilogue converts the s32 sums in place and reads the scales, bias and column sums per column:
    # 256-row tiles wider than 128 columns, and grouped tiles wider than 192 (which also keep the tile's
    # group and valid rows), spilled registers.
    max_accumulator_registers=128,
    grouped_max_block_n=192,
    min_stages=3,
    max_stages=16,
    smem_bytes=smem_bytes,
    accumulator_registers=accumulator_registers,
    # A k-block costs the tensor cores what an FP8 one does, with no promotion between k-blocks: the
    # loads press on L2 as in the 16-bit kernel, whose fitted rate this takes until an INT8 sweep.
    l2_bytes_per_cycle_per_sm=40,
    shallow_pipeline_costs={64: 1.05, 128: 1.05, 256: 1.25},
    pipeline_costs_in_estimate=True,
    # No split-K: the INT8 kernel runs each tile's whole K loop, so split_k stays 1.
    split_k_candidates=(),
)
