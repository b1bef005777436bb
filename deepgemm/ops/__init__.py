"""Public GEMM ops and device settings."""

from .bf16_gemm import (
    bf16_gemm_nn,
    bf16_gemm_nt,
    bf16_gemm_tn,
    bf16_gemm_tt,
    m_grouped_bf16_gemm_nt_contiguous,
    m_grouped_bf16_gemm_nt_masked,
)
from .fp8_gemm import fp8_gemm_nt
from .front_door import matmul
from .grouped_fp8_gemm import (
    get_m_alignment_for_contiguous_layout,
    m_grouped_fp8_gemm_nt_contiguous,
    m_grouped_fp8_gemm_nt_contiguous_offsets,
    m_grouped_fp8_gemm_nt_masked,
)
from .settings import get_num_sms, set_num_sms

__all__ = [
    "bf16_gemm_nn",
    "bf16_gemm_nt",
    "bf16_gemm_tn",
    "bf16_gemm_tt",
    "fp8_gemm_nt",
    "get_m_alignment_for_contiguous_layout",
    "get_num_sms",
    "m_grouped_bf16_gemm_nt_contiguous",
    "m_grouped_bf16_gemm_nt_masked",
    "m_grouped_fp8_gemm_nt_contiguous",
    "m_grouped_fp8_gemm_nt_contiguous_offsets",
    "m_grouped_fp8_gemm_nt_masked",
    "matmul",
    "set_num_sms",
]
