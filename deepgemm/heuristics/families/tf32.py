"""The TF32 GEMM (`impls/sm90_tf32_gemm.cuh`): FP32 operands on the TF32 tensor cores, K-major only,
FP32 accumulation and output, dense; with `num_terms=3` the same kernel runs a 3xTF32 product.

A k-block is one 128-byte line of K per row (32 FP32 elements) as in every family, and TF32 runs half
the 16-bit FLOPs per cycle over half the elements per line, so a k-block costs what a 16-bit one does:
the cost model needs no change beyond the record. The ops select a 3xTF32 problem's config as a GEMM
of 3 K, the k-blocks it runs, from `TF32X3`: the same kernel, whose 3xTF32 mainloop keeps a second
FP32 accumulator (the promoted sum), so a tile holds twice the accumulator registers.
"""

from __future__ import annotations

import dataclasses

from ..family import BLOCK_K_BYTES, KernelFamily, align

# K elements per k-block: one 128-byte line of FP32 elements.
BLOCK_K = BLOCK_K_BYTES // 4


def smem_bytes(block_m: int, block_n: int, num_stages: int, k: int, out_bytes: int, grouped: bool = False,
               num_d_chunks: int = 1) -> int:
    """Dynamic shared memory of the kernel; mirrors `Tf32GemmLayout::kSmemBytes` (K does not enter)."""
    smem_d = align(block_m * block_n // num_d_chunks * out_bytes, 1024)
    per_stage = (block_m + block_n) * BLOCK_K_BYTES
    return smem_d + num_stages * (per_stage + 2 * 8)


def accumulator_registers(block_m: int, block_n: int) -> int:
    """One WGMMA accumulator per wave, kept by the tensor cores across k-blocks."""
    num_waves = 2 if block_m == 256 else 1
    return block_n // 2 * num_waves


TF32 = KernelFamily(
    name="tf32",
    operand_bytes=4,
    block_n_candidates=tuple(range(16, 257, 16)),
    # The mainloop is the 16-bit kernel's (two stages held by the consumers at once), hence its limits.
    min_stages=3,
    max_stages=20,
    smem_bytes=smem_bytes,
    accumulator_registers=accumulator_registers,
    # The same bytes per k-block as the 16-bit kernel at the same tensor-core time: its L2 rate and
    # pipeline costs until a TF32 sweep fits them.
    l2_bytes_per_cycle_per_sm=40,
    shallow_pipeline_costs={64: 1.05, 128: 1.05, 256: 1.25},
    pipeline_costs_in_estimate=True,
    # No split-K: the TF32 kernel runs each tile's whole K loop, so split_k stays 1.
    split_k_candidates=(),
)


def promoted_accumulator_registers(block_m: int, block_n: int) -> int:
    """The WGMMA accumulator and the FP32 sum it is promoted into, per wave."""
    return 2 * accumulator_registers(block_m, block_n)


# 3xTF32 promotion schedules (`GemmConfig.promote_every`, `promote_sets`): the tensor cores' sum every 1, 2
# or 4 k-blocks, from one accumulator set (the promotion waits for the WGMMAs) or two (it overlaps the next
# ones; a third set of registers, hence narrower tiles). The heuristic weighs (1, 1) only until a sweep
# (`tools/sweep.py --family tf32x3`) measured the others and their costs join `promotion_costs`.
PROMOTE_EVERY = (1, 2, 4)
PROMOTE_SETS = (1, 2)

TF32X3 = dataclasses.replace(
    TF32, name="tf32x3", accumulator_registers=promoted_accumulator_registers,
    promotions=tuple((every, sets) for sets in PROMOTE_SETS for every in PROMOTE_EVERY),
    set_registers=accumulator_registers)
