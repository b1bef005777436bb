"""fp8_gemm_nt on CPU tensors: accuracy, strided views, output dtypes and degenerate sizes."""

import pytest
import torch

from deepgemm.ops import fp8_gemm_nt
from deepgemm.quant import get_mn_major_tma_aligned_tensor, per_block_cast_to_fp8, per_token_cast_to_fp8
from deepgemm.testing import calc_diff, ref_fp8_gemm_nt

FP8 = torch.float8_e4m3fn


def make_problem(m: int, n: int, k: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=gen, dtype=torch.bfloat16)
    w = torch.randn(n, k, generator=gen, dtype=torch.bfloat16)
    return x, w, per_token_cast_to_fp8(x), per_block_cast_to_fp8(w)


@pytest.mark.parametrize("m, n, k", [(1, 8, 16), (7, 136, 208), (65, 256, 512)])
def test_bf16_output_matches_reference(m: int, n: int, k: int) -> None:
    _, _, a, b = make_problem(m, n, k)
    d = torch.empty(m, n, dtype=torch.bfloat16)
    assert fp8_gemm_nt(a, b, d) is d
    assert calc_diff(d, ref_fp8_gemm_nt(a, b)) < 1e-5


# FP8 quantisation alone costs ~7e-4 on random normal inputs; enough outputs keep the spread small.
@pytest.mark.parametrize("m, n, k", [(65, 256, 512), (128, 2112, 256), (4, 4096, 1536)])
def test_bf16_output_close_to_unquantized_product(m: int, n: int, k: int) -> None:
    x, w, a, b = make_problem(m, n, k)
    d = torch.empty(m, n, dtype=torch.bfloat16)
    fp8_gemm_nt(a, b, d)
    assert calc_diff(d, x.double() @ w.double().T) < 1e-3


def test_fp32_output_is_the_reference() -> None:
    _, _, a, b = make_problem(9, 20, 272)  # N % 4 == 0 suffices for FP32 output
    d = torch.empty(9, 20, dtype=torch.float32)
    fp8_gemm_nt(a, b, d)
    assert torch.equal(d, ref_fp8_gemm_nt(a, b))


def test_strided_views_of_larger_buffers() -> None:
    m, n, k = 33, 64, 256
    _, _, a, b = make_problem(m, n, k, seed=1)
    expected = torch.empty(m, n, dtype=torch.bfloat16)
    fp8_gemm_nt(a, b, expected)

    A_buffer = torch.zeros(m, k + 48, dtype=FP8)  # row stride 304: a multiple of 16
    A_buffer[:, 16 : 16 + k] = a[0]
    B_buffer = torch.zeros(2 * n, k, dtype=FP8)
    B_buffer[::2] = b[0]  # every other row: row stride 2K
    d_buffer = torch.full((m, n + 8), 7.0, dtype=torch.bfloat16)
    A_view, B_view, d_view = A_buffer[:, 16 : 16 + k], B_buffer[::2], d_buffer[:, :n]
    assert A_view.stride() == (k + 48, 1) and B_view.stride() == (2 * k, 1)

    fp8_gemm_nt((A_view, get_mn_major_tma_aligned_tensor(a[1])), (B_view, b[1]), d_view)
    assert torch.equal(d_view, expected)
    assert d_buffer[:, n:].eq(7.0).all()  # outside the view: untouched


def test_zero_m_and_zero_n_return_at_once() -> None:
    _, _, a, b = make_problem(0, 16, 128)
    d = torch.empty(0, 16, dtype=torch.bfloat16)
    assert fp8_gemm_nt(a, b, d) is d
    _, _, a, b = make_problem(4, 0, 128)
    d = torch.empty(4, 0, dtype=torch.bfloat16)
    assert fp8_gemm_nt(a, b, d) is d


def test_zero_k_zero_fills_d() -> None:
    _, _, a, b = make_problem(3, 8, 0)
    d = torch.full((3, 8), 5.0, dtype=torch.bfloat16)
    assert fp8_gemm_nt(a, b, d) is d
    assert d.eq(0).all()


def test_d_is_overwritten_not_accumulated() -> None:
    _, _, a, b = make_problem(5, 16, 128, seed=2)
    d = torch.full((5, 16), 1e4, dtype=torch.float32)
    fp8_gemm_nt(a, b, d)
    assert torch.equal(d, ref_fp8_gemm_nt(a, b))
