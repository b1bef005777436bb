"""Reference FP8 GEMMs: FP32 emulations of the kernels' math, to check the kernels against.

They share one implementation with the CPU path of the public ops (``deepgemm.ops.common.cpu_path``),
which is itself checked against a float64 dequantise-then-multiply product in the test suite.
Operands are ``(tensor, scale)`` pairs as the public ops take them; every function works on CPU
and CUDA tensors and expands one 128-wide K block at a time, so memory stays ``O(M · N)``.
"""

import torch

from ..ops.common.cpu_path import (
    fp8_gemm_nt_1d1d_fp32,
    fp8_gemm_nt_fp32,
    k_grouped_fp8_gemm_nt_1d1d_fp32,
    m_grouped_fp8_gemm_nt_contiguous_fp32,
    m_grouped_fp8_gemm_nt_masked_fp32,
)

Operand = tuple[torch.Tensor, torch.Tensor]


def ref_fp8_gemm_nt(a: Operand, b: Operand) -> torch.Tensor:
    """``D = A · Bᵀ`` in FP32 with per-128-K-block promotion.

    Contract:
        a: ``(A float8_e4m3fn [M, K], sfa float32 [M, ceil(K/128)])``, any strides.
        b: ``(B float8_e4m3fn [N, K], sfb float32 [ceil(N/128), ceil(K/128)])``, any strides.
        returns: float32 ``[M, N]`` with
            ``D[m, n] = Σ_kb sfa[m, kb] · sfb[n // 128, kb] · Σ_{k in kb} A[m, k] · B[n, k]``.
    """
    return fp8_gemm_nt_fp32(*a, *b)


def ref_m_grouped_fp8_gemm_nt_contiguous(a: Operand, b: Operand, m_indices: torch.Tensor) -> torch.Tensor:
    """Contiguous-grouped reference: row ``m`` of A is multiplied by ``B[m_indices[m]]``.

    Contract:
        a: ``(A float8_e4m3fn [M_sum, K], sfa float32 [M_sum, ceil(K/128)])``.
        b: ``(B float8_e4m3fn [G, N, K], sfb float32 [G, ceil(N/128), ceil(K/128)])``.
        m_indices: integer ``[M_sum]``, -1 for padding rows, else a group in ``[0, G)``.
        returns: float32 ``[M_sum, N]``; padding rows are 0 (compare only valid rows: the kernels
            leave them unwritten).
    """
    return m_grouped_fp8_gemm_nt_contiguous_fp32(*a, *b, m_indices)


def ref_m_grouped_fp8_gemm_nt_masked(a: Operand, b: Operand, masked_m: torch.Tensor) -> torch.Tensor:
    """Masked-grouped reference: group ``g`` computes its first ``masked_m[g]`` rows.

    Contract:
        a: ``(A float8_e4m3fn [G, max_m, K], sfa float32 [G, max_m, ceil(K/128)])``.
        b: ``(B float8_e4m3fn [G, N, K], sfb float32 [G, ceil(N/128), ceil(K/128)])``.
        masked_m: integer ``[G]``, each in ``[0, max_m]``.
        returns: float32 ``[G, max_m, N]``; rows ``>= masked_m[g]`` are 0.
    """
    return m_grouped_fp8_gemm_nt_masked_fp32(*a, *b, masked_m)


def ref_fp8_gemm_nt_1d1d(a: Operand, b: Operand) -> torch.Tensor:
    """``D = A · Bᵀ`` in FP32 with 1x128 scales on both operands and per-128-K-block promotion.

    Contract:
        a: ``(A float8_e4m3fn [M, K], sa float32 [M, ceil(K/128)])``, any strides.
        b: ``(B float8_e4m3fn [N, K], sb float32 [N, ceil(K/128)])``, any strides.
        returns: float32 ``[M, N]`` with
            ``D[m, n] = Σ_kb sa[m, kb] · sb[n, kb] · Σ_{k in kb} A[m, k] · B[n, k]``.
    """
    return fp8_gemm_nt_1d1d_fp32(*a, *b)


def ref_k_grouped_fp8_gemm_nt_1d1d(a: Operand, b: Operand, ks: list[int]) -> torch.Tensor:
    """k-grouped reference: group ``g`` multiplies the K columns ``[Σ_{h<g} ks[h], Σ_{h<=g} ks[h])``.

    Contract:
        a: ``(A float8_e4m3fn [M, K_sum], sa float32 [M, K_sum/128])``.
        b: ``(B float8_e4m3fn [N, K_sum], sb float32 [N, K_sum/128])``.
        ks: host ints, each a multiple of 128, summing to at most ``K_sum``.
        returns: float32 ``[G, M, N]``.
    """
    return k_grouped_fp8_gemm_nt_1d1d_fp32(*a, *b, list(ks))
def _per_row(values: torch.Tensor | None, rows: int) -> torch.Tensor | float:
    """A per-row (``rows`` values) or per-tensor (one value) vector as a float64 column, or 1 for ``None``."""
    if values is None:
        return 1.0
    flat = values.double().reshape(-1)
    return flat[:, None] if flat.numel() == rows and rows != 1 else flat.reshape(1, 1)


def ref_int8_sums(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """The exact integer sums ``A · Bᵀ`` of int8 ``A [M, K]`` and ``B [N, K]`` as int64 ``[M, N]``: a float64
    product (every int8 product sum below 2^53 is exact in float64), on the inputs' device."""
    return (A.double() @ B.double().T).long()


def ref_int8_gemm_nt(a: torch.Tensor | Operand, b: torch.Tensor | Operand, bias: torch.Tensor | None = None,
                     azp: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """The W8A8 GEMM in float64 from the dequantised operands: ``(sa · (A − zp)) · (sb · B)ᵀ + bias``.

    Contract: ``a`` is int8 ``A [M, K]`` or ``(A, sa)``, ``sa`` per row (``M`` values) or per tensor (one
    value); ``b`` is int8 ``B [N, K]`` or ``(B, sb)`` likewise per row of B; ``bias`` ``[N]`` or ``None``;
    ``azp`` ``(zp, b_sums)`` with ``zp`` per row of A or per tensor (``b_sums`` is not used: the zero point
    is subtracted from A itself, which is what the kernels' ``b_sums`` form must equal). Returns float64
    ``[M, N]`` on the inputs' device. Missing scales are 1.
    """
    A, sa = a if isinstance(a, tuple | list) else (a, None)
    B, sb = b if isinstance(b, tuple | list) else (b, None)
    a_real = A.double()
    if azp is not None:
        a_real = a_real - _per_row(azp[0], A.shape[0])
    a_real = a_real * _per_row(sa, A.shape[0])
    b_real = B.double() * _per_row(sb, B.shape[0])
    out = a_real @ b_real.T
    return out if bias is None else out + bias.double()
