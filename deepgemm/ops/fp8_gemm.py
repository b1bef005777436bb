"""The dense FP8 GEMM with fine-grained (DeepSeek-V3) scaling: validate, then run on the CPU or the GPU."""

import torch

from ..quant.cast import BLOCK_MN
from .cpu_path import fp8_gemm_nt_fp32
from .settings import check_hopper
from .validation import (
    check_dtype,
    check_fp8_operand,
    check_multiple,
    check_row_major,
    check_same_device,
    check_shape,
    check_tensor,
    check_tma_operand,
)

OUT_DTYPES = (torch.bfloat16, torch.float32)

FP8Operand = tuple[torch.Tensor, torch.Tensor]


def fp8_gemm_nt(a: FP8Operand, b: FP8Operand, d: torch.Tensor) -> torch.Tensor:
    """``D = A · Bᵀ`` with 1x128 scales on A and 128x128 scales on B, written into ``d``; returns ``d``.

    ``D[m, n] = Σ_kb sfa[m, kb] · sfb[n // 128, kb] · Σ_{k in block kb} A[m, k] · B[n, k]``, with
    each 128-K block's partial sum scaled and accumulated in FP32, then rounded once to ``d``'s
    dtype. ``d`` is overwritten (no accumulation into it).

    Tensor contract (all on one device, CPU or a Hopper GPU):
        a = (A, sfa):
            A: ``float8_e4m3fn [M, K]``, K-major: ``stride(1) == 1``, ``stride(0)`` a multiple of 16
                elements and ``>= K`` (views of larger buffers work), 16-byte-aligned start.
            sfa: ``float32 [M, ceil(K/128)]``, any strides. The MN-major TMA-aligned layout of
                ``deepgemm.get_mn_major_tma_aligned_tensor`` is used as is; any other layout costs a
                small transposing copy per GPU call.
        b = (B, sfb):
            B: ``float8_e4m3fn [N, K]``, K-major, same stride rules as A.
            sfb: ``float32 [ceil(N/128), ceil(K/128)]``, contiguous row-major (as
                ``per_block_cast_to_fp8`` returns it); a transposed view is refused.
        d: ``bfloat16`` or ``float32 [M, N]``, ``stride(1) == 1``, ``stride(0)`` a multiple of 16
            bytes (8 BF16 / 4 FP32 elements) and ``>= N``, 16-byte-aligned start.
    Sizes: any ``M >= 0``; ``N`` a multiple of 8 for BF16 ``d``, of 4 for FP32; ``K`` a multiple
    of 16 (the tail of the last 128-block is fine). ``M == 0`` or ``N == 0``: nothing to do;
    ``K == 0``: ``d`` is zero-filled (the empty sum).

    Raises (before anything runs): ``TypeError`` for a non-tensor or a wrong dtype; ``ValueError``
    for a wrong rank or shape, a size or stride rule, or tensors on different or unsupported
    devices; ``RuntimeError`` for a CUDA device that is not Hopper (sm_90).
    """
    A, sfa = check_fp8_operand("a", a, ("A", "sfa"), ("M", "K"), scale_block_rows=1)
    B, sfb = check_fp8_operand("b", b, ("B", "sfb"), ("N", "K"), scale_block_rows=BLOCK_MN)
    check_dtype("d", check_tensor("d", d), OUT_DTYPES)
    m, k = A.shape
    n = B.shape[0]
    check_shape("B (b[0])", B, ("N", "K"), (n, k))
    check_shape("d", d, ("M", "N"), (m, n))
    check_multiple("K", k, 16, "TMA needs 16-byte rows of FP8 in A and B")
    check_multiple("N", n, 16 // d.element_size(), f"TMA needs 16-byte rows of {d.dtype} in d")
    device = check_same_device({"A (a[0])": A, "sfa (a[1])": sfa, "B (b[0])": B, "sfb (b[1])": sfb, "d": d})
    check_tma_operand("A (a[0])", A)
    check_tma_operand("B (b[0])", B)
    check_tma_operand("d", d)
    check_row_major("sfb (b[1])", sfb, ("ceil(N/128)", "ceil(K/128)"))
    if device.type == "cuda":
        check_hopper(device)

    if m == 0 or n == 0:
        return d
    if k == 0:
        return d.zero_()
    if device.type == "cpu":
        return d.copy_(fp8_gemm_nt_fp32(A, sfa, B, sfb))
    # Imported here so that CPU use never loads the CUDA driver modules.
    from .fp8_launch import launch_fp8_gemm_nt

    launch_fp8_gemm_nt(A, sfa, B, sfb, d)
    return d
