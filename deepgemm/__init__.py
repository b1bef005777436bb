"""deepgemm: fine-grained-scaled FP8 GEMM kernels for NVIDIA Hopper, JIT-compiled at run time."""

from . import nn, ops
from ._version import __version__
from .nn import Fp8GroupedLinear, Fp8Linear, fp8_grouped_linear, fp8_linear
from .ops import *  # noqa: F403 (the GEMM ops and settings, listed once: in `ops.__all__`)
from .quant import (
    align,
    ceil_div,
    get_col_major_tma_aligned_tensor,
    get_mn_major_tma_aligned_tensor,
    get_tma_aligned_size,
    per_block_cast_to_fp8,
    per_block_cast_to_fp8_and_transpose,
    per_channel_cast_to_int8,
    per_token_cast_to_fp8,
    per_token_cast_to_fp8_transposed,
    per_token_cast_to_int8,
    quantize_w4a16,
    quantize_w8a16,
    transpose_fp8_block_scaled,
)

__all__ = [
    "__version__",
    "align",
    "ceil_div",
    "get_col_major_tma_aligned_tensor",
    "get_mn_major_tma_aligned_tensor",
    "get_tma_aligned_size",
    "per_block_cast_to_fp8",
    "per_channel_cast_to_int8",
    "per_token_cast_to_fp8",
    "per_token_cast_to_int8",
    "per_block_cast_to_fp8_and_transpose",
    "per_token_cast_to_fp8_transposed",
    "Fp8GroupedLinear",
    "Fp8Linear",
    "fp8_grouped_linear",
    "fp8_linear",
    "nn",
    "transpose_fp8_block_scaled",
    "quantize_w4a16",
    "quantize_w8a16",
]
__all__ += ops.__all__


def __getattr__(name: str):
    # `deepgemm.testing` (calc_diff, references, input generators, timers) stays reachable as an
    # attribute without `import deepgemm` paying for it.
    if name == "testing":
        import importlib

        return importlib.import_module(".testing", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
