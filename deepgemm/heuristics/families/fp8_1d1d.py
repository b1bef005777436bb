"""The FP8 GEMM with 1x128 scales on both operands (`impls/sm90_fp8_gemm_1d1d.cuh`), the weight-gradient
recipe: its dense and k-grouped ops run one kernel whose promotion scales every accumulator element by
its row's A scale times its column's B scale, both read from the stage (B scales are per column, so no
tile straddles a scale block)."""

from __future__ import annotations

from ..family import KernelFamily, align

# K elements per k-block and per scale.
BLOCK_K = 128
# Bytes of each stage's tile slot (`WgradTile`, four uint32): the producer hands every tile to the
# consumers through the slot of its first stage.
TILE_SLOT_BYTES = 16


def smem_bytes(block_m: int, block_n: int, num_stages: int, k: int, out_bytes: int, grouped: bool = False,
               num_d_chunks: int = 1) -> int:
    """Dynamic shared memory of the kernel; mirrors `Fp8WgradLayout::kSmemBytes`. Independent of K and of
    the kind: each stage carries its own k-block of both operands' scales, and every kind hands off
    tiles through the stage slots."""
    smem_d = align(block_m * block_n // num_d_chunks * out_bytes, 1024)
    per_stage = block_m * BLOCK_K + block_n * BLOCK_K + align(block_m * 4, 128) + align(block_n * 4, 128)
    return smem_d + num_stages * (per_stage + 2 * 8 + TILE_SLOT_BYTES)


def accumulator_registers(block_m: int, block_n: int) -> int:
    """The WGMMA accumulator, reused by every wave, the promoted sums of each wave, and the B scales of
    the thread's columns for the k-block in flight (two per 8 columns)."""
    num_waves = 2 if block_m == 256 else 1
    return block_n // 2 * (1 + num_waves) + block_n // 4


FP8_1D1D = KernelFamily(
    name="fp8_1d1d",
    operand_bytes=1,
    # Up to 152 columns: the B scales' registers (accumulator_registers) leave no room for wider tiles
    # of 128 rows; 256-row tiles stop at 104.
    block_n_candidates=tuple(range(16, 129, 16)) + (144, 152),
    min_stages=3,
    max_stages=16,
    smem_bytes=smem_bytes,
    accumulator_registers=accumulator_registers,
    # The 1D2D family's rates: the same operand traffic per k-block (the scale boxes add under 3%).
    l2_bytes_per_cycle_per_sm=64,
    multicast_lockstep_cost=1.03,
    shallow_pipeline_costs={64: 1.04, 128: 1.04, 256: 1.04},
    pipeline_costs_in_estimate=False,
    # No split-K: the 1D1D kernel runs each tile's whole K loop, so split_k stays 1.
    split_k_candidates=(),
)
