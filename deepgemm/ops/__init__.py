"""Public GEMM ops and device settings."""

from .fp8_gemm import fp8_gemm_nt
from .grouped_fp8_gemm import (
    get_m_alignment_for_contiguous_layout,
    m_grouped_fp8_gemm_nt_contiguous,
    m_grouped_fp8_gemm_nt_contiguous_offsets,
    m_grouped_fp8_gemm_nt_masked,
)
from .settings import get_num_sms, set_num_sms

__all__ = [
    "fp8_gemm_nt",
    "get_m_alignment_for_contiguous_layout",
    "get_num_sms",
    "m_grouped_fp8_gemm_nt_contiguous",
    "m_grouped_fp8_gemm_nt_contiguous_offsets",
    "m_grouped_fp8_gemm_nt_masked",
    "set_num_sms",
]
