"""The cast helpers added for training, on the CPU: the transposed per-token cast, the per-block cast with its
transpose, the MN-major scale option, the scale rule (a true division by 448) and the argument checks."""

import pytest
import torch

import deepgemm
from deepgemm.quant import (
    AMAX_FLOOR,
    per_block_cast_to_fp8,
    per_block_cast_to_fp8_and_transpose,
    per_token_cast_to_fp8,
    per_token_cast_to_fp8_transposed,
    transpose_fp8_block_scaled,
)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.uint8 if t.element_size() == 1 else torch.int32)


def _input(rows: int, cols: int, dtype=torch.bfloat16) -> torch.Tensor:
    gen = torch.Generator().manual_seed(rows + cols)
    return (torch.randn(rows, cols, generator=gen) * torch.logspace(-5, 3, rows)[:, None]).to(dtype)


@pytest.mark.parametrize("rows, cols", [(1, 16), (130, 72), (256, 384), (7, 5)])
@pytest.mark.parametrize("pad", [False, True])
def test_transposed_cast_is_the_per_token_cast_of_the_transpose(rows, cols, pad):
    x = _input(rows, cols)
    q, sf = per_token_cast_to_fp8_transposed(x, pad_tokens=pad)
    q_ref, sf_ref = per_token_cast_to_fp8(x.T)
    out_tokens = -(-rows // 128) * 128 if pad else rows
    assert q.shape == (cols, out_tokens) and q.is_contiguous() and sf.shape == (cols, -(-rows // 128))
    assert torch.equal(_bits(q[:, :rows]), _bits(q_ref)) and not _bits(q[:, rows:]).any()
    assert torch.equal(_bits(sf), _bits(sf_ref))


def test_transposed_cast_of_no_tokens():
    q, sf = per_token_cast_to_fp8_transposed(torch.zeros(0, 256), pad_tokens=True)
    assert q.shape == (256, 0) and sf.shape == (256, 0)


@pytest.mark.parametrize("shape", [(130, 200), (3, 256, 128), (16, 16)])
def test_per_block_cast_and_transpose(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1)).bfloat16()
    (q, sf), (qt, sft) = per_block_cast_to_fp8_and_transpose(x)
    q_ref, sf_ref = per_block_cast_to_fp8(x)
    qt_ref, sft_ref = transpose_fp8_block_scaled(q_ref, sf_ref)
    for got, want in ((q, q_ref), (sf, sf_ref), (qt, qt_ref), (sft, sft_ref)):
        assert got.is_contiguous() and torch.equal(_bits(got), _bits(want))


def test_mn_major_scales_layout():
    x = _input(130, 384)
    q, sf = per_token_cast_to_fp8(x, mn_major_scales=True)
    assert sf.stride() == (1, 132) and torch.equal(sf, per_token_cast_to_fp8(x)[1])
    assert sf is deepgemm.get_mn_major_tma_aligned_tensor(sf)
    qt, sft = per_token_cast_to_fp8_transposed(x, mn_major_scales=True)
    assert sft.stride() == (1, 384) and torch.equal(sft, per_token_cast_to_fp8_transposed(x)[1])


def test_scale_is_a_true_division_by_448():
    # amax values whose true quotient by 448 and whose product with float32(1/448) round differently.
    amax = torch.tensor([0.0001, 1.0, 3.0, 7.0, 100.0, 447.0, 1e30], dtype=torch.float32)
    x = torch.zeros(len(amax), 128)
    x[:, 0] = amax
    _, sf = per_token_cast_to_fp8(x)
    want = torch.from_numpy(amax.clamp(min=AMAX_FLOOR).numpy() / 448.0)
    assert torch.equal(_bits(sf.flatten()), _bits(want))
    assert not torch.equal(sf.flatten(), amax * torch.tensor(1 / 448.0))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: per_token_cast_to_fp8_transposed(torch.zeros(2, 3, 4)), ValueError, r"x must be \[M, K\]"),
        (
            lambda: per_token_cast_to_fp8_transposed(torch.zeros(2, 4), pad_tokens=1),
            TypeError,
            "pad_tokens must be a bool",
        ),
        (
            lambda: per_token_cast_to_fp8_transposed(torch.zeros(2, 4, dtype=torch.int32)),
            TypeError,
            "floating-point",
        ),
        (
            lambda: per_token_cast_to_fp8(torch.zeros(2, 3, 4), mn_major_scales=True),
            ValueError,
            "mn_major_scales=True needs a 2-D x",
        ),
        (
            lambda: per_token_cast_to_fp8(torch.zeros(2, 4), mn_major_scales="yes"),
            TypeError,
            "mn_major_scales must be a bool",
        ),
        (lambda: per_block_cast_to_fp8_and_transpose(torch.zeros(4)), ValueError, r"x must be \[N, K\]"),
        (lambda: per_block_cast_to_fp8_and_transpose([[1.0]]), TypeError, "x must be a torch.Tensor"),
    ],
)
def test_argument_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
