"""The 16-bit GEMM (`impls/sm90_bf16_gemm.cuh`): BF16 or FP16 operands in any storage layout, FP32
accumulation in the tensor cores (no promotion step), dense and MoE grouped."""

from __future__ import annotations

from ..family import BLOCK_K_BYTES, KernelFamily, align

# K elements per k-block: one 128-byte line of 16-bit elements.
BLOCK_K = BLOCK_K_BYTES // 2


def smem_bytes(block_m: int, block_n: int, num_stages: int, k: int, out_bytes: int, grouped: bool = False,
               num_d_chunks: int = 1) -> int:
    """Dynamic shared memory of the kernel; mirrors `Bf16GemmLayout::kSmemBytes` (K does not enter)."""
    smem_d = align(block_m * block_n // num_d_chunks * out_bytes, 1024)
    per_stage = (block_m + block_n) * BLOCK_K_BYTES
    tile_slots = num_stages * 16 if grouped else 0
    return smem_d + num_stages * (per_stage + 2 * 8) + tile_slots


def accumulator_registers(block_m: int, block_n: int) -> int:
    """One WGMMA accumulator per wave, kept by the tensor cores across k-blocks."""
    num_waves = 2 if block_m == 256 else 1
    return block_n // 2 * num_waves


BF16 = KernelFamily(
    name="bf16",
    operand_bytes=2,
    # Without promotion sums the kernel has the registers for wider tiles.
    block_n_candidates=tuple(range(16, 257, 16)),
    # It keeps one k-block of WGMMAs in flight while the next is issued, so it holds two stages at
    # once: with fewer than three the loads stop overlapping the math.
    min_stages=3,
    max_stages=20,
    smem_bytes=smem_bytes,
    accumulator_registers=accumulator_registers,
    # The tensor cores stay busier than FP8's (no promotion), so operand loads press harder on L2:
    # fitted to an H100 sweep where 2-CTA multicast made the M = 4096 tiles faster.
    l2_bytes_per_cycle_per_sm=40,
    # Two waves of WGMMAs per stage (256-row tiles) suffer most from a shallow pipeline.
    shallow_pipeline_costs={64: 1.05, 128: 1.05, 256: 1.25},
    pipeline_costs_in_estimate=True,
    # As FP8's (families/fp8_1d2d.py); its k-blocks carry no promotion.
    split_k_candidates=(2, 3, 4, 6, 7, 8, 14, 16),
    k_block_latency_cycles=250,
    split_k_fixed_cycles=3000,
)
