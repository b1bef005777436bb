"""Operands of 2^31 or more elements (M * K >= 2^31) on a Hopper GPU: the kernels address them through
TMA coordinates below 2^31 and 64-bit offsets, so they must compute them right. Each case needs 2 to
4 GiB per operand (about 12 GiB in all): an H100 or H200 holds them."""

import pytest
import torch

import deepgemm
from deepgemm.testing import calc_diff, ref_fp8_gemm_nt, ref_m_grouped_fp8_gemm_nt_masked

pytestmark = pytest.mark.gpu


def _fp8(rows: int, k: int, per_block: bool = False):
    torch.manual_seed(rows + k)
    x = torch.randn(rows, k, device="cuda", dtype=torch.bfloat16)
    return deepgemm.per_block_cast_to_fp8(x) if per_block else deepgemm.per_token_cast_to_fp8(x)


def test_fp8_dense_a_of_2_pow_31_elements() -> None:
    m, n, k = 2**18, 256, 2**13  # A: 2^31 FP8 elements
    a, b = _fp8(m, k), _fp8(n, k, per_block=True)
    d = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
    deepgemm.fp8_gemm_nt(a, b, d)
    ref = ref_fp8_gemm_nt(a, b)
    assert calc_diff(d, ref) < 1e-5
    # The last rows are where a 32-bit offset would have wrapped.
    assert calc_diff(d[-128:], ref[-128:]) < 1e-5


def test_bf16_nt_a_of_2_pow_31_elements() -> None:
    m, n, k = 2**17 + 64, 128, 2**14  # A: just over 2^31 BF16 elements
    torch.manual_seed(0)
    a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    d = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
    deepgemm.bf16_gemm_nt(a, b, d)
    ref = a[-256:].float() @ b.float().T
    assert calc_diff(d[-256:], ref) < 1e-5
    ref = a[:256].float() @ b.float().T
    assert calc_diff(d[:256], ref) < 1e-5


def test_fp8_masked_groups_past_2_pow_31_elements() -> None:
    groups, max_m, n, k = 4, 2**16, 256, 2**13  # A: [4, 2^16, 2^13], 2^31 elements
    a2, sfa2 = _fp8(groups * max_m, k)
    a = (a2.view(groups, max_m, k), sfa2.view(groups, max_m, -1))
    b = [_fp8(n, k, per_block=True) for _ in range(groups)]
    b = (torch.stack([x[0] for x in b]), torch.stack([x[1] for x in b]))
    masked_m = torch.tensor([max_m, 1000, max_m - 3, 0], device="cuda", dtype=torch.int32)
    d = torch.zeros(groups, max_m, n, device="cuda", dtype=torch.bfloat16)
    deepgemm.m_grouped_fp8_gemm_nt_masked(a, b, d, masked_m, max_m)
    ref = ref_m_grouped_fp8_gemm_nt_masked(a, b, masked_m)
    for g, rows in enumerate(masked_m.tolist()):
        if rows:
            assert calc_diff(d[g, :rows], ref[g, :rows]) < 1e-5, g
        assert bool((d[g, rows:] == 0).all()), g
