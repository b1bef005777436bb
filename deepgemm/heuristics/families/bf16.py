"""The 16-bit GEMM (`impls/sm90_bf16_gemm.cuh`): BF16 or FP16 operands in any storage layout, FP32
accumulation in the tensor cores (no promotion step), dense and MoE grouped. Its layout, tiles and rates
are those of `unpromoted.py`, fitted to this kernel."""

from __future__ import annotations

from ..family import BLOCK_K_BYTES
from .unpromoted import unpromoted_family

# K elements per k-block: one 128-byte line of 16-bit elements.
BLOCK_K = BLOCK_K_BYTES // 2

BF16 = unpromoted_family(
    "bf16",
    operand_bytes=2,
    max_stages=20,
    # As FP8's (families/fp8_1d2d.py); its k-blocks carry no promotion.
    split_k_candidates=(2, 3, 4, 6, 7, 8, 14, 16),
    k_block_latency_cycles=250,
    split_k_fixed_cycles=3000,
)
