"""The INT8 W8A8 GEMM family: s8 x s8 -> s32 on the tensor cores, per-token / per-channel scales,
zero-point correction and bias in the epilogue (or the raw int32 sums); the dense op, the MoE grouped
ops, the quantise-then-GEMM helper for ``matmul``, and their kernel launch (`kernel`, imported on the
first GPU call)."""

from .gemm import (
    int8_gemm_nt,
    int8_matmul_quantized,
    m_grouped_int8_gemm_nt_contiguous,
    m_grouped_int8_gemm_nt_contiguous_offsets,
    m_grouped_int8_gemm_nt_masked,
)

__all__ = [
    "int8_gemm_nt",
    "int8_matmul_quantized",
    "m_grouped_int8_gemm_nt_contiguous",
    "m_grouped_int8_gemm_nt_contiguous_offsets",
    "m_grouped_int8_gemm_nt_masked",
]
