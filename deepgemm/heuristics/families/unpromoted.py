"""What the families whose tensor cores keep the sums across k-blocks (no promotion step) share: the
16-bit, INT8 and TF32 kernels have one shared-memory layout and one accumulator rule, and run the 16-bit
kernel's mainloop, so they take its stage limits, tiles and fitted rates until a sweep of their own says
otherwise. Each family's file keeps only what differs (`unpromoted_family`'s keyword arguments)."""

from __future__ import annotations

from ..family import BLOCK_K_BYTES, KernelFamily, align

# Every tile width up to the widest WGMMA: without promotion sums the kernels have the registers for it.
BLOCK_N_CANDIDATES = tuple(range(16, 257, 16))
# The mainloop keeps one k-block of WGMMAs in flight while the next is issued, so the consumers hold two
# stages at once: with fewer than three the loads stop overlapping the math.
MIN_STAGES = 3
# Fitted to an H100 sweep of the 16-bit kernel, where 2-CTA multicast made the M = 4096 tiles faster:
# the tensor cores stay busier than FP8's (no promotion), so the loads press harder on L2. The INT8 and
# TF32 kernels move the same bytes per k-block at the same tensor-core time.
L2_BYTES_PER_CYCLE_PER_SM = 40
# Two waves of WGMMAs per stage (256-row tiles) suffer most from a shallow pipeline.
SHALLOW_PIPELINE_COSTS = {64: 1.05, 128: 1.05, 256: 1.25}


def smem_bytes(block_m: int, block_n: int, num_stages: int, k: int, out_bytes: int, grouped: bool = False,
               num_d_chunks: int = 1) -> int:
    """Dynamic shared memory of the kernel; mirrors `kSmemBytes` of `Bf16GemmLayout`, `Int8GemmLayout` and
    `Tf32GemmLayout` (the TF32 kernel runs the dense kind only, which keeps no tile slots). K does not
    enter: no scales are staged."""
    smem_d = align(block_m * block_n // num_d_chunks * out_bytes, 1024)
    per_stage = (block_m + block_n) * BLOCK_K_BYTES
    # The grouped kinds' producer passes each tile (4 x uint32) to the consumers in a per-stage slot.
    tile_slots = num_stages * 16 if grouped else 0
    return smem_d + num_stages * (per_stage + 2 * 8) + tile_slots


def accumulator_registers(block_m: int, block_n: int) -> int:
    """One WGMMA accumulator per wave, kept by the tensor cores across k-blocks."""
    num_waves = 2 if block_m == 256 else 1
    return block_n // 2 * num_waves


def unpromoted_family(name: str, operand_bytes: int, max_stages: int, **fields) -> KernelFamily:
    """The record of a family of this kind: the shared layout, rule, tiles and rates above, with `fields`
    (any other `KernelFamily` field) for what the family does differently."""
    shared = {
        "block_n_candidates": BLOCK_N_CANDIDATES,
        "min_stages": MIN_STAGES,
        "smem_bytes": smem_bytes,
        "accumulator_registers": accumulator_registers,
        "l2_bytes_per_cycle_per_sm": L2_BYTES_PER_CYCLE_PER_SM,
        "shallow_pipeline_costs": SHALLOW_PIPELINE_COSTS,
        "pipeline_costs_in_estimate": True,
    }
    return KernelFamily(name=name, operand_bytes=operand_bytes, max_stages=max_stages, **(shared | fields))
