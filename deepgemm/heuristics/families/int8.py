"""The INT8 W8A8 GEMM (`impls/sm90_int8_gemm.cuh`): s8 x s8 operands (both K-major), exact s32
accumulation in the tensor cores (no promotion step), per-token / per-channel scales, zero-point
correction and bias applied in the epilogue (or the raw s32 sums stored); dense and MoE grouped.

A k-block costs the tensor cores what an FP8 one does, with no promotion between k-blocks: the loads
press on L2 as in the 16-bit kernel, whose layout, fitted rate and pipeline costs (`unpromoted.py`)
this takes until an INT8 sweep."""

from __future__ import annotations

from ..family import BLOCK_K_BYTES
from .unpromoted import unpromoted_family

# K elements per k-block: one 128-byte line of int8 (the epilogue reads its scales from global memory).
BLOCK_K = BLOCK_K_BYTES

INT8 = unpromoted_family(
    "int8",
    operand_bytes=1,
    max_stages=16,
    # The integer WGMMA forms take N of 8, 16, 24 and the multiples of 16.
    block_n_step=16,
    # The epilogue converts the s32 sums in place and reads the scales, bias and column sums per column:
    # 256-row tiles wider than 128 columns, and grouped tiles wider than 192 (which also keep the tile's
    # group and valid rows), spilled registers.
    max_accumulator_registers=128,
    grouped_max_block_n=192,
    # No split-K: the INT8 kernel runs each tile's whole K loop, so split_k stays 1.
    split_k_candidates=(),
)
