"""per_token_cast_to_fp8 / per_block_cast_to_fp8: shapes, scales, round-trip bounds, edge blocks."""

import pytest
import torch

from deepgemm.quant import AMAX_FLOOR, FP8_MAX, per_block_cast_to_fp8, per_token_cast_to_fp8

FP8 = torch.float8_e4m3fn
# e4m3 keeps 3 mantissa bits: round-to-nearest is within 2^-4 relative for normals; below 2^-6
# (the smallest normal) the spacing is 2^-9, so the absolute error is at most 2^-10 (of scale units).
REL_BOUND = 2.0**-4
SUBNORMAL_ABS_BOUND = 2.0**-10


def dequant_per_token(q: torch.Tensor, sf: torch.Tensor) -> torch.Tensor:
    return q.float() * sf.repeat_interleave(128, dim=-1)[..., : q.shape[-1]]


def dequant_per_block(q: torch.Tensor, sf: torch.Tensor) -> torch.Tensor:
    rows, cols = q.shape[-2:]
    expanded = sf.repeat_interleave(128, dim=-2)[..., :rows, :].repeat_interleave(128, dim=-1)[..., :cols]
    return q.float() * expanded


def assert_round_trip(x: torch.Tensor, x_hat: torch.Tensor, scale_per_elem: torch.Tensor) -> None:
    err = (x_hat - x.float()).abs()
    bound = x.float().abs() * REL_BOUND * (1 + 1e-5) + scale_per_elem * SUBNORMAL_ABS_BOUND * (1 + 1e-5)
    assert bool((err <= bound).all()), f"max excess {(err - bound).max().item()}"


def test_per_token_hand_values() -> None:
    x = torch.zeros(2, 256)
    x[0, 3] = -8.0
    x[0, 130] = 2.0
    x[1, 0] = 1.0
    q, sf = per_token_cast_to_fp8(x)
    assert q.dtype == FP8 and sf.dtype == torch.float32
    expected_sf = torch.tensor([[8.0, 2.0], [1.0, AMAX_FLOOR]]) / 448
    torch.testing.assert_close(sf, expected_sf, rtol=0, atol=0)
    # The block maximum maps to exactly +-448.
    assert q[0, 3].float().item() == -448.0
    assert q[0, 130].float().item() == 448.0
    assert q[1, 0].float().item() == 448.0
    assert q[1, 128:].float().abs().sum().item() == 0.0


def test_per_token_odd_k_pads_last_group() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 200)
    x[1, 150] = 100.0  # lies in the 72-wide last group
    q, sf = per_token_cast_to_fp8(x)
    assert q.shape == (3, 200) and sf.shape == (3, 2)
    assert sf[1, 1].item() == pytest.approx(100.0 / 448, rel=1e-7)
    torch.testing.assert_close(sf[:, 0], x[:, :128].abs().amax(dim=1) / 448, rtol=1e-7, atol=0)
    torch.testing.assert_close(sf[:, 1], x[:, 128:].abs().amax(dim=1) / 448, rtol=1e-7, atol=0)
    assert_round_trip(x, dequant_per_token(q, sf), sf.repeat_interleave(128, dim=-1)[:, :200])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_per_token_round_trip_and_no_overflow(dtype: torch.dtype) -> None:
    torch.manual_seed(1)
    x = (torch.randn(17, 384) * torch.logspace(-3, 3, 17)[:, None]).to(dtype)
    q, sf = per_token_cast_to_fp8(x)
    values = q.float()
    assert not bool(values.isnan().any())
    assert values.abs().max().item() <= FP8_MAX
    # Every block's largest element reaches the top of the FP8 range.
    assert bool((values.unflatten(1, (3, 128)).abs().amax(dim=-1) == FP8_MAX).all())
    assert_round_trip(x, dequant_per_token(q, sf), sf.repeat_interleave(128, dim=-1))


def test_per_token_zero_and_tiny_blocks_use_floor() -> None:
    x = torch.zeros(2, 128)
    x[1, 5] = 1e-6  # below the floor: quantised with the floor scale
    q, sf = per_token_cast_to_fp8(x)
    assert sf.flatten().tolist() == pytest.approx([AMAX_FLOOR / 448] * 2, rel=1e-7)
    assert q[0].float().abs().sum().item() == 0.0
    assert q[1, 5].float().item() * sf[1, 0].item() == pytest.approx(1e-6, rel=REL_BOUND)


def test_per_token_batched_matches_per_slice() -> None:
    torch.manual_seed(2)
    x = torch.randn(3, 5, 272)
    q, sf = per_token_cast_to_fp8(x)
    assert q.shape == (3, 5, 272) and sf.shape == (3, 5, 3)
    for g in range(3):
        q_g, sf_g = per_token_cast_to_fp8(x[g])
        assert torch.equal(q[g].view(torch.uint8), q_g.view(torch.uint8))
        assert torch.equal(sf[g], sf_g)


def test_per_token_empty_and_single_row() -> None:
    q, sf = per_token_cast_to_fp8(torch.empty(0, 256))
    assert q.shape == (0, 256) and sf.shape == (0, 2)
    q, sf = per_token_cast_to_fp8(torch.full((1, 1), -3.0))
    assert sf.item() == pytest.approx(3.0 / 448, rel=1e-7) and q.float().item() == -448.0


def test_per_token_strided_input() -> None:
    torch.manual_seed(3)
    base = torch.randn(256, 8)
    q, sf = per_token_cast_to_fp8(base.T)  # [8, 256] with strides (1, 8)
    q_ref, sf_ref = per_token_cast_to_fp8(base.T.contiguous())
    assert q.is_contiguous() and sf.is_contiguous()
    assert torch.equal(q.view(torch.uint8), q_ref.view(torch.uint8)) and torch.equal(sf, sf_ref)


def test_per_block_hand_values() -> None:
    x = torch.zeros(130, 260)
    x[0, 0] = 4.0
    x[127, 127] = -7.0  # same block as [0, 0]
    x[129, 3] = 1.5  # second block row, 2-row edge block
    x[10, 259] = 0.25  # third block column, 4-column edge block
    q, sf = per_block_cast_to_fp8(x)
    assert q.shape == (130, 260) and sf.shape == (2, 3)
    expected = torch.tensor([[7.0, AMAX_FLOOR, 0.25], [1.5, AMAX_FLOOR, AMAX_FLOOR]]) / 448
    torch.testing.assert_close(sf, expected, rtol=0, atol=0)
    assert q[127, 127].float().item() == -448.0
    assert q[129, 3].float().item() == 448.0
    assert q[10, 259].float().item() == 448.0
    assert q[0, 0].float().item() == pytest.approx(4.0 * 448 / 7.0, rel=REL_BOUND)


def test_per_block_round_trip_odd_sizes_and_batch() -> None:
    torch.manual_seed(4)
    x = torch.randn(2, 200, 300, dtype=torch.bfloat16) * 10
    q, sf = per_block_cast_to_fp8(x)
    assert q.shape == (2, 200, 300) and sf.shape == (2, 2, 3)
    assert q.float().abs().max().item() <= FP8_MAX
    scale_per_elem = dequant_per_block(torch.ones(2, 200, 300, dtype=FP8), sf)
    assert_round_trip(x, dequant_per_block(q, sf), scale_per_elem)
    q_1, sf_1 = per_block_cast_to_fp8(x[1])
    assert torch.equal(q[1].view(torch.uint8), q_1.view(torch.uint8)) and torch.equal(sf[1], sf_1)


def test_per_block_amax_is_over_the_whole_block() -> None:
    torch.manual_seed(5)
    x = torch.randn(256, 128)
    _, sf = per_block_cast_to_fp8(x)
    expected = x.unflatten(0, (2, 128)).abs().amax(dim=(1, 2)) / 448
    torch.testing.assert_close(sf[:, 0], expected, rtol=1e-7, atol=0)


@pytest.mark.parametrize("cast", [per_token_cast_to_fp8, per_block_cast_to_fp8])
def test_cast_rejects_bad_inputs(cast) -> None:
    with pytest.raises(TypeError, match="floating-point"):
        cast(torch.ones(4, 128, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"found shape \(128,\)"):
        cast(torch.ones(128))
    with pytest.raises(ValueError, match=r"found shape \(1, 2, 3, 128\)"):
        cast(torch.ones(1, 2, 3, 128))
