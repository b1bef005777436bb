"""ceil_div / align / get_tma_aligned_size and the MN-major TMA-aligned scale layout."""

import pytest
import torch

from deepgemm.quant import (
    align,
    ceil_div,
    get_col_major_tma_aligned_tensor,
    get_mn_major_tma_aligned_tensor,
    get_tma_aligned_size,
)


def test_integer_helpers() -> None:
    assert [ceil_div(x, 128) for x in (0, 1, 128, 129, 200)] == [0, 1, 1, 2, 2]
    assert [align(x, 16) for x in (0, 1, 16, 17)] == [0, 16, 16, 32]
    assert get_tma_aligned_size(5, 4) == 8
    assert get_tma_aligned_size(8, 4) == 8
    assert get_tma_aligned_size(0, 4) == 0
    assert get_tma_aligned_size(3, 2) == 8
    assert get_tma_aligned_size(17, 1) == 32
    assert get_tma_aligned_size(1, 8) == 2


@pytest.mark.parametrize("element_size", [0, 3, 32])
def test_tma_aligned_size_rejects_element_sizes_not_dividing_16(element_size: int) -> None:
    with pytest.raises(ValueError, match="must divide 16"):
        get_tma_aligned_size(4, element_size)


@pytest.mark.parametrize("mn, kb, aligned_mn", [(5, 3, 8), (1, 1, 4), (8, 3, 8), (130, 7, 132)])
def test_mn_major_2d(mn: int, kb: int, aligned_mn: int) -> None:
    sf = torch.randn(mn, kb)
    out = get_mn_major_tma_aligned_tensor(sf)
    assert out.shape == (mn, kb)
    assert out.stride() == (1, aligned_mn)
    assert out.data_ptr() % 16 == 0
    assert torch.equal(out, sf)


def test_mn_major_3d() -> None:
    sf = torch.randn(3, 5, 2)
    out = get_mn_major_tma_aligned_tensor(sf)
    assert out.shape == (3, 5, 2)
    assert out.stride() == (16, 1, 8)
    assert torch.equal(out, sf)


def test_mn_major_from_any_strides() -> None:
    sf = torch.randn(7, 9)[:, ::2]  # [7, 5] with strides (9, 2)
    out = get_mn_major_tma_aligned_tensor(sf)
    assert out.stride() == (1, 8) and torch.equal(out, sf)


def test_already_aligned_input_is_returned_as_is() -> None:
    sf = get_mn_major_tma_aligned_tensor(torch.randn(4, 6, 3))
    assert get_mn_major_tma_aligned_tensor(sf) is sf
    sf_2d = torch.randn(3, 8).T  # [8, 3], strides (1, 8): already the layout
    assert get_mn_major_tma_aligned_tensor(sf_2d) is sf_2d


def test_misaligned_start_is_copied() -> None:
    # Right strides, but the data starts 4 bytes past a 16-byte boundary: TMA would refuse it.
    sf = torch.randn(13).as_strided((4, 3), (1, 4), storage_offset=1)
    out = get_mn_major_tma_aligned_tensor(sf)
    assert out is not sf
    assert out.stride() == (1, 4) and out.data_ptr() % 16 == 0 and torch.equal(out, sf)


def test_empty_and_alias() -> None:
    out = get_mn_major_tma_aligned_tensor(torch.empty(0, 3))
    assert out.shape == (0, 3)
    assert get_col_major_tma_aligned_tensor is get_mn_major_tma_aligned_tensor


@pytest.mark.parametrize("shape", [(5,), (1, 2, 3, 4)])
def test_mn_major_rejects_other_ranks(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="2-D"):
        get_mn_major_tma_aligned_tensor(torch.zeros(shape))
