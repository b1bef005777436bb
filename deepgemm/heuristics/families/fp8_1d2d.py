"""The FP8 GEMM with 1x128 A scales and 128x128 B scales (`impls/sm90_fp8_gemm_1d2d.cuh`): its dense
and MoE grouped ops run one kernel that promotes every 128-K partial sum into FP32 registers."""

from __future__ import annotations

from ..family import KernelFamily, align, ceil_div

# K elements per k-block and per scale; columns per B scale block.
BLOCK_K = 128
SCALE_BLOCK = 128


# The masked kind's producer bulk-copies a tile's rows of B scales, which must then start 16-byte aligned:
# its kernel reads B scales whose rows are padded to a multiple of this many floats
# (`TileScalesB::kRowFloats`; ops/fp8/kernel.py hands it such a copy where the rows are shorter).
MASKED_SFB_ROW_ALIGN = 4


def masked_sfb_row_floats(num_k_blocks: int) -> int:
    """Floats per row of the B scales the masked kernel reads: ``ceil(K/128)`` padded to 16 bytes."""
    return align(num_k_blocks, MASKED_SFB_ROW_ALIGN)


def uniform_scale_b(block_n: int) -> bool:
    """True when no tile can straddle a 128-column block of B scales."""
    return SCALE_BLOCK % block_n == 0


def smem_bytes(block_m: int, block_n: int, num_stages: int, k: int, out_bytes: int, grouped: bool = False,
               num_d_chunks: int = 1) -> int:
    """Dynamic shared memory of the kernel; mirrors `Fp8GemmLayout::kSmemBytes`."""
    smem_d = align(block_m * block_n // num_d_chunks * out_bytes, 1024)
    per_stage = block_m * BLOCK_K + block_n * BLOCK_K + align(block_m * 4, 128)
    # The tiles' B scales: one copy per consumer warpgroup, or (masked kind) buffers taken in turn
    # per tile, enough for a producer num_stages k-blocks ahead; sized for either, with the masked
    # kind's padded rows in every grouped kind (`Fp8GemmLayout::kSFBBufferFloats`).
    num_k_blocks = ceil_div(k, BLOCK_K)
    row_floats = masked_sfb_row_floats(num_k_blocks) if grouped else num_k_blocks
    num_scales_b = row_floats * (1 if uniform_scale_b(block_n) else 2)
    num_warpgroups = 1 if block_m == 64 else 2
    num_sfb_buffers = max(num_warpgroups, 1 + ceil_div(num_stages, num_k_blocks))
    smem_sfb = align(num_sfb_buffers * num_scales_b * 4, 8)
    barriers = num_stages * 2 * 8
    # The grouped kinds' producer passes each tile (4 x uint32) to the consumers in a per-stage slot.
    tile_slots = num_stages * 16 if grouped else 0
    return smem_d + num_stages * per_stage + smem_sfb + barriers + tile_slots


def accumulator_registers(block_m: int, block_n: int) -> int:
    """The WGMMA accumulator, reused by every wave, plus the promoted sums of each wave."""
    num_waves = 2 if block_m == 256 else 1
    return block_n // 2 * (1 + num_waves)


FP8_1D2D = KernelFamily(
    name="fp8_1d2d",
    operand_bytes=1,
    block_n_candidates=tuple(range(16, 129, 16)) + (144, 160, 192),
    min_stages=2,
    # Small tiles (M <= 128) are bound by the bytes in flight per SM, not by any unit's rate: more
    # stages help up to this many, and more than that lost (see docs/heuristic-constants.md).
    max_stages=16,
    smem_bytes=smem_bytes,
    accumulator_registers=accumulator_registers,
    # Fitted to a sweep of every valid config over the DeepSeek-V3 shapes on an H100 SXM.
    l2_bytes_per_cycle_per_sm=64,
    scale_block_n=SCALE_BLOCK,
    # Switching B scales inside a tile is extra promotion work; keeping the two CTAs of a cluster in
    # lock step was measured never to beat the same tile without multicast on the H100.
    straddling_scale_cost=1.08,
    multicast_lockstep_cost=1.03,
    # 128x192 tiles over short K pay no straddling cost, and in several waves no lock step (measured
    # faster than the 256x128 tiles the model picked without the exception).
    wide_short_k_tile=(128, 192),
    # A cluster pair shares its m-block: multicasting A on 256-row tiles paid at long K.
    contiguous_multicast_block_m=256,
    shallow_pipeline_costs={64: 1.04, 128: 1.04, 256: 1.04},
    pipeline_costs_in_estimate=False,
    # Not yet fitted on a GPU: chosen so that the decode shapes measured at 40-47% of HBM (issue 27)
    # run about as long in the model as they did, see docs/split-k.md.
    split_k_candidates=(2, 3, 4, 6, 7, 8, 14, 16),
    k_block_latency_cycles=320,
    split_k_fixed_cycles=3000,
)
