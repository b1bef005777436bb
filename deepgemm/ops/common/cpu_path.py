"""The FP8 kernels' math written with torch ops, in FP32.

This is the CPU path of the public FP8 GEMMs and also the body of the reference GEMMs in
``deepgemm.testing``, which run it on CUDA tensors too: nothing here is CPU-specific. It follows
the kernels' two-level accumulation ("promotion"): for every 128-wide K block the FP8 partial
product is formed on its own, then scaled by ``sfa[m, kb] * sfb[n // 128, kb]`` and added into an
FP32 accumulator. Memory stays ``O(M * N)``: one K block is expanded at a time.

Inputs are assumed validated by the calling op (shapes, dtypes, devices); group indices, which
only exist as tensor values, are checked here because reading them costs nothing on the CPU.
"""

import torch

from ...quant.cast import BLOCK_K, BLOCK_MN


def accumulate_fp8_gemm_nt(
    out: torch.Tensor, A: torch.Tensor, sfa: torch.Tensor, B: torch.Tensor, sfb: torch.Tensor
) -> None:
    """``out += A · Bᵀ`` with per-128-K-block promotion, in place.

    Contract (all on one device):
        out: float32 ``[M, N]``, any strides (views of a larger output work).
        A: float8_e4m3fn ``[M, K]``; sfa: float32 ``[M, ceil(K/128)]``, any strides.
        B: float8_e4m3fn ``[N, K]``; sfb: float32 ``[ceil(N/128), ceil(K/128)]``, any strides.
    """
    n, k = B.shape
    # sfb[n // 128, kb] for every column n: [N, KB], so each block's scale is an outer product.
    sfb_per_column = sfb.repeat_interleave(BLOCK_MN, dim=0)[:n]
    for kb, k0 in enumerate(range(0, k, BLOCK_K)):
        # FP8 values are exact in FP32 (and in TF32/BF16, should torch's matmul precision allow
        # those), so this is the tensor cores' partial sum, with an FP32 accumulator.
        partial = A[:, k0 : k0 + BLOCK_K].float() @ B[:, k0 : k0 + BLOCK_K].float().T
        out.addcmul_(sfa[:, kb, None] * sfb_per_column[None, :, kb], partial)


def fp8_gemm_nt_fp32(A: torch.Tensor, sfa: torch.Tensor, B: torch.Tensor, sfb: torch.Tensor) -> torch.Tensor:
    """``A · Bᵀ`` in FP32, dense. Operands as in ``accumulate_fp8_gemm_nt``; returns float32 ``[M, N]``."""
    out = torch.zeros(A.shape[0], B.shape[0], dtype=torch.float32, device=A.device)
    accumulate_fp8_gemm_nt(out, A, sfa, B, sfb)
    return out


def m_grouped_fp8_gemm_nt_contiguous_fp32(
    A: torch.Tensor, sfa: torch.Tensor, B: torch.Tensor, sfb: torch.Tensor, m_indices: torch.Tensor
) -> torch.Tensor:
    """Contiguous-grouped ``A · B[g]ᵀ`` in FP32: row ``m`` uses group ``m_indices[m]``.

    Contract (all on one device):
        A: float8_e4m3fn ``[M_sum, K]``; sfa: float32 ``[M_sum, ceil(K/128)]``.
        B: float8_e4m3fn ``[G, N, K]``; sfb: float32 ``[G, ceil(N/128), ceil(K/128)]``.
        m_indices: integer ``[M_sum]``, each -1 (padding row) or a group in ``[0, G)``. Rows of one
            group need not be adjacent, but runs of equal indices are computed in one matmul, so
            the usual layout (each group one segment) costs one matmul per group and K block.
        returns: float32 ``[M_sum, N]``; padding rows are 0.
    Raises ``ValueError`` for an index outside ``[-1, G)``.
    """
    num_groups, n, _ = B.shape
    out = torch.zeros(A.shape[0], n, dtype=torch.float32, device=A.device)
    group_ids, run_lengths = torch.unique_consecutive(m_indices, return_counts=True)
    start = 0
    for group, length in zip(group_ids.tolist(), run_lengths.tolist(), strict=True):
        if not -1 <= group < num_groups:
            raise ValueError(f"m_indices values must be -1 (padding) or in [0, {num_groups}), found {group}")
        end = start + length
        if group >= 0:
            accumulate_fp8_gemm_nt(out[start:end], A[start:end], sfa[start:end], B[group], sfb[group])
        start = end
    return out


def m_grouped_fp8_gemm_nt_masked_fp32(
    A: torch.Tensor, sfa: torch.Tensor, B: torch.Tensor, sfb: torch.Tensor, masked_m: torch.Tensor
) -> torch.Tensor:
    """Masked-grouped ``A[g] · B[g]ᵀ`` in FP32 over the first ``masked_m[g]`` rows of each group.

    Contract (all on one device):
        A: float8_e4m3fn ``[G, max_m, K]``; sfa: float32 ``[G, max_m, ceil(K/128)]``.
        B: float8_e4m3fn ``[G, N, K]``; sfb: float32 ``[G, ceil(N/128), ceil(K/128)]``.
        masked_m: integer ``[G]``, each in ``[0, max_m]``.
        returns: float32 ``[G, max_m, N]``; rows ``>= masked_m[g]`` are 0.
    Raises ``ValueError`` for a ``masked_m`` value outside ``[0, max_m]``.
    """
    num_groups, max_m, _ = A.shape
    out = torch.zeros(num_groups, max_m, B.shape[1], dtype=torch.float32, device=A.device)
    for group, m in enumerate(masked_m.tolist()):
        if not 0 <= m <= max_m:
            raise ValueError(f"masked_m[{group}] must be in [0, max_m={max_m}], found {m}")
        accumulate_fp8_gemm_nt(out[group, :m], A[group, :m], sfa[group, :m], B[group], sfb[group])
    return out


def accumulate_fp8_gemm_nt_1d1d(
    out: torch.Tensor, A: torch.Tensor, sa: torch.Tensor, B: torch.Tensor, sb: torch.Tensor
) -> None:
    """``out += A · Bᵀ`` with 1x128 scales on both operands (the weight-gradient recipe), in place.

    ``out[m, n] += Σ_kb sa[m, kb] · sb[n, kb] · Σ_{k in kb} A[m, k] · B[n, k]``, each 128-K block's
    partial product formed on its own and promoted into the FP32 ``out``, as the 1D1D kernel does.

    Contract (all on one device):
        out: float32 ``[M, N]``, any strides.
        A: float8_e4m3fn ``[M, K]``; sa: float32 ``[M, ceil(K/128)]``, any strides.
        B: float8_e4m3fn ``[N, K]``; sb: float32 ``[N, ceil(K/128)]``, any strides.
    """
    k = A.shape[1]
    for kb, k0 in enumerate(range(0, k, BLOCK_K)):
        partial = A[:, k0 : k0 + BLOCK_K].float() @ B[:, k0 : k0 + BLOCK_K].float().T
        out.addcmul_(sa[:, kb, None] * sb[None, :, kb], partial)


def fp8_gemm_nt_1d1d_fp32(
    A: torch.Tensor, sa: torch.Tensor, B: torch.Tensor, sb: torch.Tensor
) -> torch.Tensor:
    """``A · Bᵀ`` in FP32 with 1x128 scales on both operands (see ``accumulate_fp8_gemm_nt_1d1d``);
    returns float32 ``[M, N]``."""
    out = torch.zeros(A.shape[0], B.shape[0], dtype=torch.float32, device=A.device)
    accumulate_fp8_gemm_nt_1d1d(out, A, sa, B, sb)
    return out


def k_grouped_fp8_gemm_nt_1d1d_fp32(
    A: torch.Tensor, sa: torch.Tensor, B: torch.Tensor, sb: torch.Tensor, ks: list[int]
) -> torch.Tensor:
    """k-grouped ``A_g · B_gᵀ`` in FP32: group ``g`` owns the K columns
    ``[Σ_{h<g} ks[h], Σ_{h<=g} ks[h])`` of A and B (and the matching 128-wide scale columns).

    Contract (all on one device):
        A: float8_e4m3fn ``[M, K_sum]``; sa: float32 ``[M, K_sum/128]``.
        B: float8_e4m3fn ``[N, K_sum]``; sb: float32 ``[N, K_sum/128]``.
        ks: the groups' K sizes, each a multiple of 128, summing to at most ``K_sum``.
        returns: float32 ``[G, M, N]``; a group with ``ks[g] == 0`` is 0.
    """
    out = torch.zeros(len(ks), A.shape[0], B.shape[0], dtype=torch.float32, device=A.device)
    start = 0
    for group, k in enumerate(ks):
        end, kb0, kb1 = start + k, start // BLOCK_K, (start + k) // BLOCK_K
        accumulate_fp8_gemm_nt_1d1d(
            out[group], A[:, start:end], sa[:, kb0:kb1], B[:, start:end], sb[:, kb0:kb1]
        )
        start = end
    return out
