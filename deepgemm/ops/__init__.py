"""Public GEMM ops and device settings: one folder per kernel family (`fp8/`, `bf16/`, `fp8_1d1d/`), what
they share in `common/`, and `matmul` over all of them."""

from . import cast  # noqa: F401 (registers the fused FP8 casts with deepgemm.quant)
from .bf16 import (
    bf16_gemm_nn,
    bf16_gemm_nt,
    bf16_gemm_tn,
    bf16_gemm_tt,
    m_grouped_bf16_gemm_nt_contiguous,
    m_grouped_bf16_gemm_nt_masked,
)
from .common.group_indices import get_m_alignment_for_contiguous_layout
from .common.settings import get_num_sms, set_num_sms
from .fp8 import (
    fp8_gemm_nt,
    m_grouped_fp8_gemm_nt_contiguous,
    m_grouped_fp8_gemm_nt_contiguous_offsets,
    m_grouped_fp8_gemm_nt_masked,
)
from .fp8_1d1d import fp8_gemm_nt_1d1d, k_grouped_fp8_gemm_nt_1d1d
from .int8 import (
    int8_gemm_nt,
    int8_matmul_quantized,
    m_grouped_int8_gemm_nt_contiguous,
    m_grouped_int8_gemm_nt_contiguous_offsets,
    m_grouped_int8_gemm_nt_masked,
)
from .matmul import matmul
from .tf32 import tf32_gemm_nn, tf32_gemm_nt, tf32_gemm_tn, tf32_gemm_tt, tf32x3_gemm_nt
from .wonly import (
    m_grouped_w4a16_gemm_nt_masked,
    m_grouped_w8a16_gemm_nt_masked,
    w4a16_gemm_nt,
    w8a16_gemm_nt,
)

__all__ = [
    "bf16_gemm_nn",
    "bf16_gemm_nt",
    "bf16_gemm_tn",
    "bf16_gemm_tt",
    "fp8_gemm_nt",
    "fp8_gemm_nt_1d1d",
    "get_m_alignment_for_contiguous_layout",
    "get_num_sms",
    "k_grouped_fp8_gemm_nt_1d1d",
    "int8_gemm_nt",
    "int8_matmul_quantized",
    "m_grouped_bf16_gemm_nt_contiguous",
    "m_grouped_bf16_gemm_nt_masked",
    "m_grouped_fp8_gemm_nt_contiguous",
    "m_grouped_fp8_gemm_nt_contiguous_offsets",
    "m_grouped_fp8_gemm_nt_masked",
    "m_grouped_int8_gemm_nt_contiguous",
    "m_grouped_int8_gemm_nt_contiguous_offsets",
    "m_grouped_int8_gemm_nt_masked",
    "matmul",
    "set_num_sms",
    "m_grouped_w4a16_gemm_nt_masked",
    "m_grouped_w8a16_gemm_nt_masked",
    "w4a16_gemm_nt",
    "w8a16_gemm_nt",
    "tf32_gemm_nn",
    "tf32_gemm_nt",
    "tf32_gemm_tn",
    "tf32_gemm_tt",
    "tf32x3_gemm_nt",
]
