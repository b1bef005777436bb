"""Quantisation (per-token / per-block FP8 casts) and scale-layout helpers; CPU and CUDA tensors."""

from .cast import AMAX_FLOOR, FP8_MAX, per_block_cast_to_fp8, per_token_cast_to_fp8
from .layout import (
    align,
    ceil_div,
    get_col_major_tma_aligned_tensor,
    get_mn_major_tma_aligned_tensor,
    get_tma_aligned_size,
)
from .transpose import transpose_fp8_block_scaled

__all__ = [
    "AMAX_FLOOR",
    "FP8_MAX",
    "align",
    "ceil_div",
    "get_col_major_tma_aligned_tensor",
    "get_mn_major_tma_aligned_tensor",
    "get_tma_aligned_size",
    "per_block_cast_to_fp8",
    "per_token_cast_to_fp8",
    "transpose_fp8_block_scaled",
]
