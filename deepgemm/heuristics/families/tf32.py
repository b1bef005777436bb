"""The TF32 GEMM (`impls/sm90_tf32_gemm.cuh`): FP32 operands on the TF32 tensor cores, K-major only,
FP32 accumulation and output, dense; with `num_terms=3` the same kernel runs a 3xTF32 product.

A k-block is one 128-byte line of K per row (32 FP32 elements) as in every family, and TF32 runs half
the 16-bit FLOPs per cycle over half the elements per line, so a k-block costs what a 16-bit one does:
the cost model needs no change beyond the record, whose layout, tiles, rates and pipeline costs are the
16-bit kernel's (`unpromoted.py`; its mainloop is that kernel's) until a TF32 sweep fits them. A 3xTF32
problem's config is chosen from `TF32X3`: the same kernel runs the k-blocks of three TF32 products
(`KernelFamily.k_terms`), and its 3xTF32 mainloop keeps a second FP32 accumulator (the promoted sum), so
a tile holds twice the accumulator registers; its promotion schedules (how often that sum is taken, from
one WGMMA accumulator set or two) are the record's `promotions`, a second set's registers `set_registers`.
"""

from __future__ import annotations

import dataclasses

from ..family import BLOCK_K_BYTES
from .unpromoted import accumulator_registers, unpromoted_family

# K elements per k-block: one 128-byte line of FP32 elements.
BLOCK_K = BLOCK_K_BYTES // 4

TF32 = unpromoted_family(
    "tf32",
    operand_bytes=4,
    max_stages=20,
    # No split-K: the TF32 kernel runs each tile's whole K loop, so split_k stays 1.
    split_k_candidates=(),
)


def promoted_accumulator_registers(block_m: int, block_n: int) -> int:
    """The WGMMA accumulator and the FP32 sum it is promoted into, per wave."""
    return 2 * accumulator_registers(block_m, block_n)


# 3xTF32 promotion schedules (`GemmConfig.promote_every`, `promote_sets`): the tensor cores' sum every 1, 2
# or 4 k-blocks, from one accumulator set (the promotion waits for the WGMMAs) or two (it overlaps the next
# ones; a third set of registers, hence narrower tiles). The heuristic weighs the schedules a sweep
# (`tools/sweep.py --family tf32x3 --promotions all`) measured against (1, 1) on the same tile, as the
# factor on a k-block's cost (docs/heuristic-constants.md); two sets are not weighed: their tiles were
# never the fastest.
PROMOTE_EVERY = (1, 2, 4)
PROMOTE_SETS = (1, 2)
PROMOTION_COSTS = ((1, 1, 1.0), (2, 1, 0.89), (4, 1, 0.865))

TF32X3 = dataclasses.replace(
    TF32, name="tf32x3", accumulator_registers=promoted_accumulator_registers, k_terms=3,
    promotions=tuple((every, sets) for sets in PROMOTE_SETS for every in PROMOTE_EVERY),
    set_registers=accumulator_registers, promotion_costs=PROMOTION_COSTS)
