"""The FP8 GEMM family with 1x128 scales on both operands (the weight-gradient recipe): the dense op, the
k-grouped op for MoE experts, and their kernel launch (`kernel`, imported on the first GPU call)."""

from .gemm import fp8_gemm_nt_1d1d, k_grouped_fp8_gemm_nt_1d1d

__all__ = ["fp8_gemm_nt_1d1d", "k_grouped_fp8_gemm_nt_1d1d"]
