"""Quantisation (per-token / per-block FP8 casts, per-token / per-channel INT8 casts, weight-only INT8 /
INT4 packing) and scale-layout helpers; CPU and CUDA tensors."""

from .cast import (
    AMAX_FLOOR,
    FP8_MAX,
    per_block_cast_to_fp8,
    per_block_cast_to_fp8_and_transpose,
    per_token_cast_to_fp8,
    per_token_cast_to_fp8_transposed,
)
from .int8 import INT8_MAX, per_channel_cast_to_int8, per_token_cast_to_int8
from .layout import (
    align,
    ceil_div,
    get_col_major_tma_aligned_tensor,
    get_mn_major_tma_aligned_tensor,
    get_tma_aligned_size,
)
from .transpose import transpose_fp8_block_scaled
from .wonly import quantize_w4a16, quantize_w8a16

__all__ = [
    "AMAX_FLOOR",
    "FP8_MAX",
    "INT8_MAX",
    "align",
    "ceil_div",
    "get_col_major_tma_aligned_tensor",
    "get_mn_major_tma_aligned_tensor",
    "get_tma_aligned_size",
    "per_block_cast_to_fp8",
    "per_channel_cast_to_int8",
    "per_block_cast_to_fp8_and_transpose",
    "per_token_cast_to_fp8",
    "per_token_cast_to_fp8_transposed",
    "transpose_fp8_block_scaled",
    "quantize_w4a16",
    "quantize_w8a16",
    "per_token_cast_to_int8",
]
