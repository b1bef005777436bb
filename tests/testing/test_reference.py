"""Reference FP8 GEMMs: hand values, a float64 brute force, and grouped vs per-group dense."""

import pytest
import torch

from deepgemm.quant import ceil_div, per_block_cast_to_fp8, per_token_cast_to_fp8
from deepgemm.testing import (
    calc_diff,
    ref_fp8_gemm_nt,
    ref_m_grouped_fp8_gemm_nt_contiguous,
    ref_m_grouped_fp8_gemm_nt_masked,
)

FP8 = torch.float8_e4m3fn


def dequant_float64(x: torch.Tensor, sf: torch.Tensor, block_rows: int) -> torch.Tensor:
    rows, cols = x.shape
    expanded = sf.double().repeat_interleave(block_rows, dim=0)[:rows].repeat_interleave(128, dim=1)[:, :cols]
    return x.double() * expanded


def brute_force(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Dequantise both operands in float64 and multiply: independent of the promotion code."""
    return dequant_float64(*a, block_rows=1) @ dequant_float64(*b, block_rows=128).T


def activations(*shape: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return per_token_cast_to_fp8(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)))


def weights(*shape: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    return per_block_cast_to_fp8(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)))


def test_hand_computed_promotion() -> None:
    # K = 144: a full 128 block and a 16-wide tail; N = 136: two rows of B scales.
    A = torch.ones(1, 144)
    A[0, 128:] = 2.0
    a = (A.to(FP8), torch.tensor([[2.0, 3.0]]))
    b = (torch.ones(136, 144).to(FP8), torch.tensor([[5.0, 7.0], [11.0, 13.0]]))
    d = ref_fp8_gemm_nt(a, b)
    assert d.dtype == torch.float32 and d.shape == (1, 136)
    # Column n < 128: 2*5*(128*1) + 3*7*(16*2); column n >= 128: 2*11*128 + 3*13*32.
    assert d[0, :128].eq(1952.0).all()
    assert d[0, 128:].eq(4064.0).all()


@pytest.mark.parametrize("m, n, k", [(1, 8, 16), (7, 136, 200), (65, 256, 384), (33, 200, 1024)])
def test_dense_matches_float64_brute_force(m: int, n: int, k: int) -> None:
    a, b = activations(m, k), weights(n, k)
    d = ref_fp8_gemm_nt(a, b)
    expected = brute_force(a, b)
    assert calc_diff(d, expected) < 1e-12
    assert (d.double() - expected).abs().max().item() <= 1e-6 * expected.abs().max().item()


def test_dense_accepts_mn_major_sfa_and_empty_k() -> None:
    a, b = activations(9, 256), weights(16, 256)
    mn_major_sfa = a[1].T.contiguous().T
    assert torch.equal(ref_fp8_gemm_nt((a[0], mn_major_sfa), b), ref_fp8_gemm_nt(a, b))
    empty_k = ref_fp8_gemm_nt(activations(3, 0), weights(8, 0))
    assert empty_k.shape == (3, 8) and empty_k.eq(0).all()


def test_contiguous_grouped_matches_per_group_dense() -> None:
    group_rows = [128, 0, 256, 128]  # an empty group too
    num_groups, n, k = len(group_rows), 144, 272
    m_indices = torch.cat(
        [torch.full((rows,), g, dtype=torch.int32) for g, rows in enumerate(group_rows)]
        + [torch.full((128,), -1, dtype=torch.int32)]  # trailing padding block
    )
    m_indices[100:128] = -1  # group 0 has 100 rows, padded to 128
    a, b = activations(len(m_indices), k), weights(num_groups, n, k)
    d = ref_m_grouped_fp8_gemm_nt_contiguous(a, b, m_indices)
    assert d.shape == (len(m_indices), n)
    for g in range(num_groups):
        rows = m_indices == g
        expected = ref_fp8_gemm_nt((a[0][rows], a[1][rows]), (b[0][g], b[1][g]))
        assert torch.equal(d[rows], expected)
    assert d[m_indices == -1].eq(0).all()
    assert calc_diff(d[:100], brute_force((a[0][:100], a[1][:100]), (b[0][0], b[1][0]))) < 1e-12


@pytest.mark.parametrize("bad_index", [-2, 4])
def test_contiguous_grouped_rejects_bad_indices(bad_index: int) -> None:
    a, b = activations(4, 128), weights(4, 16, 128)
    m_indices = torch.tensor([0, 1, bad_index, 3], dtype=torch.int32)
    with pytest.raises(ValueError, match=f"m_indices.*found {bad_index}"):
        ref_m_grouped_fp8_gemm_nt_contiguous(a, b, m_indices)


def test_masked_grouped_matches_per_group_dense() -> None:
    num_groups, max_m, n, k = 3, 64, 24, 400
    a, b = activations(num_groups, max_m, k), weights(num_groups, n, k)
    assert a[1].shape == (num_groups, max_m, ceil_div(k, 128))
    masked_m = torch.tensor([0, 64, 17], dtype=torch.int32)
    d = ref_m_grouped_fp8_gemm_nt_masked(a, b, masked_m)
    assert d.shape == (num_groups, max_m, n)
    for g, m in enumerate(masked_m.tolist()):
        expected = ref_fp8_gemm_nt((a[0][g, :m], a[1][g, :m]), (b[0][g], b[1][g]))
        assert torch.equal(d[g, :m], expected)
        assert d[g, m:].eq(0).all()


@pytest.mark.parametrize("bad_m", [-1, 65])
def test_masked_grouped_rejects_out_of_range_masked_m(bad_m: int) -> None:
    a, b = activations(2, 64, 128), weights(2, 16, 128)
    with pytest.raises(ValueError, match=rf"masked_m\[1\] must be in \[0, max_m=64\], found {bad_m}"):
        ref_m_grouped_fp8_gemm_nt_masked(a, b, torch.tensor([3, bad_m]))
