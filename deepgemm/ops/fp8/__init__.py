"""The FP8 GEMM family with 1x128 A scales and 128x128 B scales (DeepSeek-V3 recipe): the dense op, the
MoE grouped ops, and their kernel launch (`kernel`, imported on the first GPU call)."""

from .dense import fp8_gemm_nt
from .grouped import (
    m_grouped_fp8_gemm_nt_contiguous,
    m_grouped_fp8_gemm_nt_contiguous_offsets,
    m_grouped_fp8_gemm_nt_masked,
)

__all__ = [
    "fp8_gemm_nt",
    "m_grouped_fp8_gemm_nt_contiguous",
    "m_grouped_fp8_gemm_nt_contiguous_offsets",
    "m_grouped_fp8_gemm_nt_masked",
]
