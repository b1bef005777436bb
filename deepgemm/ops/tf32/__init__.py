"""The TF32 GEMM family: FP32 operands on the TF32 tensor cores in the four storage layouts, and the
3xTF32 GEMM of about FP32 accuracy; their kernel launch (`kernel`, imported on the first GPU call)."""

from .gemm import tf32_gemm_nn, tf32_gemm_nt, tf32_gemm_tn, tf32_gemm_tt, tf32x3_gemm_nt

__all__ = ["tf32_gemm_nn", "tf32_gemm_nt", "tf32_gemm_tn", "tf32_gemm_tt", "tf32x3_gemm_nt"]
