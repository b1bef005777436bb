"""Public GEMM ops and device settings."""

from .fp8_gemm import fp8_gemm_nt
from .settings import get_num_sms, set_num_sms

__all__ = ["fp8_gemm_nt", "get_num_sms", "set_num_sms"]
