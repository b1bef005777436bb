"""The weight-only mixed-precision family (W8A16, W4A16): dense and MoE masked ops over weights packed by
``deepgemm.quant.wonly``, and their kernel launch (`kernel`, imported on the first GPU call)."""

from .gemm import (
    m_grouped_w4a16_gemm_nt_masked,
    m_grouped_w8a16_gemm_nt_masked,
    w4a16_gemm_nt,
    w8a16_gemm_nt,
    weight_only_matmul,  # noqa: F401 (`matmul`'s weight-only path, not one of the public ops)
)

__all__ = [
    "m_grouped_w4a16_gemm_nt_masked",
    "m_grouped_w8a16_gemm_nt_masked",
    "w4a16_gemm_nt",
    "w8a16_gemm_nt",
]
