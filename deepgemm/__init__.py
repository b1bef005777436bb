"""deepgemm: fine-grained-scaled FP8 GEMM kernels for NVIDIA Hopper, JIT-compiled at run time."""

from ._version import __version__
from .ops import (
    bf16_gemm_nn,
    bf16_gemm_nt,
    bf16_gemm_tn,
    bf16_gemm_tt,
    fp8_gemm_nt,
    fp8_gemm_nt_1d1d,
    get_m_alignment_for_contiguous_layout,
    get_num_sms,
    k_grouped_fp8_gemm_nt_1d1d,
    m_grouped_bf16_gemm_nt_contiguous,
    m_grouped_bf16_gemm_nt_masked,
    m_grouped_fp8_gemm_nt_contiguous,
    m_grouped_fp8_gemm_nt_contiguous_offsets,
    m_grouped_fp8_gemm_nt_masked,
    matmul,
    set_num_sms,
    tf32_gemm_nn,
    tf32_gemm_nt,
    tf32_gemm_tn,
    tf32_gemm_tt,
    tf32x3_gemm_nt,
)
from .quant import (
    align,
    ceil_div,
    get_col_major_tma_aligned_tensor,
    get_mn_major_tma_aligned_tensor,
    get_tma_aligned_size,
    per_block_cast_to_fp8,
    per_token_cast_to_fp8,
    transpose_fp8_block_scaled,
)

__all__ = [
    "__version__",
    "align",
    "bf16_gemm_nn",
    "bf16_gemm_nt",
    "bf16_gemm_tn",
    "bf16_gemm_tt",
    "ceil_div",
    "fp8_gemm_nt",
    "fp8_gemm_nt_1d1d",
    "get_col_major_tma_aligned_tensor",
    "get_m_alignment_for_contiguous_layout",
    "get_mn_major_tma_aligned_tensor",
    "get_num_sms",
    "get_tma_aligned_size",
    "k_grouped_fp8_gemm_nt_1d1d",
    "m_grouped_bf16_gemm_nt_contiguous",
    "m_grouped_bf16_gemm_nt_masked",
    "m_grouped_fp8_gemm_nt_contiguous",
    "m_grouped_fp8_gemm_nt_contiguous_offsets",
    "m_grouped_fp8_gemm_nt_masked",
    "matmul",
    "per_block_cast_to_fp8",
    "per_token_cast_to_fp8",
    "set_num_sms",
    "transpose_fp8_block_scaled",
    "tf32_gemm_nn",
    "tf32_gemm_nt",
    "tf32_gemm_tn",
    "tf32_gemm_tt",
    "tf32x3_gemm_nt",
]


def __getattr__(name: str):
    # `deepgemm.testing` (calc_diff, references, input generators, timers) stays reachable as an
    # attribute without `import deepgemm` paying for it.
    if name == "testing":
        import importlib

        return importlib.import_module(".testing", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
