"""Bad arguments to the public quantisation and layout helpers raise TypeError / ValueError naming the
argument and the rule; NumPy integers and arrays passed through torch.from_numpy keep working."""

import numpy as np
import pytest
import torch

from deepgemm.quant import (
    align,
    ceil_div,
    get_col_major_tma_aligned_tensor,
    get_mn_major_tma_aligned_tensor,
    get_tma_aligned_size,
    per_block_cast_to_fp8,
    per_token_cast_to_fp8,
)

INTEGER_HELPERS = [ceil_div, align]


@pytest.mark.parametrize("helper", INTEGER_HELPERS)
@pytest.mark.parametrize("x, y, name", [(1.5, 1, "x"), (1, 2.0, "y"), (True, 4, "x"), (4, False, "y"),
                                        ("8", 4, "x"), (None, 4, "x"), (8, [4], "y")])
def test_integer_helpers_reject_non_integers(helper, x, y, name) -> None:
    with pytest.raises(TypeError, match=rf"{helper.__name__}: {name} must be an int"):
        helper(x, y)


@pytest.mark.parametrize("helper", INTEGER_HELPERS)
@pytest.mark.parametrize("x, y, match", [(1, 0, "y must be a positive int, got 0"),
                                         (5, -4, "y must be a positive int, got -4"),
                                         (-1, 4, "x must be a non-negative int, got -1")])
def test_integer_helpers_reject_bad_values(helper, x, y, match) -> None:
    with pytest.raises(ValueError, match=rf"{helper.__name__}: {match}"):
        helper(x, y)


def test_integer_helpers_take_numpy_integers_and_return_int() -> None:
    assert ceil_div(np.int64(129), np.int32(128)) == 2 and type(ceil_div(np.int64(129), 128)) is int
    assert align(np.int64(17), 16) == 32 and type(align(np.uint8(17), 16)) is int
    assert get_tma_aligned_size(np.int64(5), np.int64(4)) == 8
    with pytest.raises(ValueError, match="ceil_div: y must be a positive int"):
        ceil_div(4, np.int64(0))


def test_tma_aligned_size_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="get_tma_aligned_size: x must be a non-negative int, got -1"):
        get_tma_aligned_size(-1, 4)
    with pytest.raises(TypeError, match="get_tma_aligned_size: x must be an int"):
        get_tma_aligned_size(4.0, 4)
    with pytest.raises(TypeError, match="get_tma_aligned_size: element_size must be an int"):
        get_tma_aligned_size(4, 4.0)
    with pytest.raises(TypeError, match="get_tma_aligned_size: element_size must be an int"):
        get_tma_aligned_size(4, True)
    with pytest.raises(ValueError, match="get_tma_aligned_size: element_size must divide 16 bytes, got -4"):
        get_tma_aligned_size(4, -4)


@pytest.mark.parametrize("layout", [get_mn_major_tma_aligned_tensor, get_col_major_tma_aligned_tensor])
def test_layout_rejects_non_tensors(layout) -> None:
    with pytest.raises(TypeError, match="sf must be a torch.Tensor, got list"):
        layout([[1.0]])
    hint = r"sf must be a torch.Tensor \(wrap a NumPy array with torch.from_numpy\), got ndarray"
    with pytest.raises(TypeError, match=hint):
        layout(np.ones((4, 2), dtype=np.float32))


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.bool, torch.complex64])
def test_layout_rejects_non_float_scales(dtype: torch.dtype) -> None:
    sf = torch.zeros(4, 2, dtype=dtype).T.contiguous().T  # already the layout: must not pass through
    with pytest.raises(TypeError, match=f"sf must be a floating-point tensor.*got {dtype}"):
        get_mn_major_tma_aligned_tensor(sf)


def test_layout_rank_error_names_function_and_argument() -> None:
    with pytest.raises(ValueError, match=r"get_mn_major_tma_aligned_tensor: sf must be 2-D \[MN, KB\]"):
        get_mn_major_tma_aligned_tensor(torch.zeros(3))


@pytest.mark.parametrize("dtype, aligned_mn", [(torch.float32, 8), (torch.bfloat16, 8), (torch.float64, 6)])
def test_layout_keeps_other_float_dtypes(dtype: torch.dtype, aligned_mn: int) -> None:
    sf = torch.randn(5, 3).to(dtype)
    out = get_mn_major_tma_aligned_tensor(sf)
    assert out.dtype == dtype and out.stride() == (1, aligned_mn) and torch.equal(out, sf)


@pytest.mark.parametrize("cast", [per_token_cast_to_fp8, per_block_cast_to_fp8])
def test_casts_reject_numpy_with_a_hint(cast) -> None:
    with pytest.raises(TypeError, match=rf"{cast.__name__}: x must be a torch.Tensor \(wrap a NumPy array "
                                        r"with torch.from_numpy\), got ndarray"):
        cast(np.ones((4, 128), dtype=np.float32))


@pytest.mark.parametrize("cast", [per_token_cast_to_fp8, per_block_cast_to_fp8])
@pytest.mark.parametrize("bad", [[[1.0, 2.0]], 3.0, None])
def test_casts_reject_other_non_tensors(cast, bad) -> None:
    with pytest.raises(TypeError, match=rf"{cast.__name__}: x must be a torch.Tensor, got"):
        cast(bad)


@pytest.mark.parametrize("cast", [per_token_cast_to_fp8, per_block_cast_to_fp8])
@pytest.mark.parametrize("dtype", [torch.int32, torch.bool, torch.complex64])
def test_casts_reject_non_float_dtypes(cast, dtype: torch.dtype) -> None:
    with pytest.raises(TypeError, match=rf"{cast.__name__}: x must be a floating-point tensor, got {dtype}"):
        cast(torch.zeros(2, 128, dtype=dtype))


@pytest.mark.parametrize("cast", [per_token_cast_to_fp8, per_block_cast_to_fp8])
def test_casts_rank_error_names_function(cast) -> None:
    with pytest.raises(ValueError, match=rf"{cast.__name__}: x must be .* found shape \(128,\)"):
        cast(torch.zeros(128))


def test_casts_accept_numpy_through_from_numpy() -> None:
    x = torch.from_numpy(np.linspace(-3, 3, 2 * 130, dtype=np.float32).reshape(2, 130))
    q, sf = per_token_cast_to_fp8(x)
    assert q.shape == (2, 130) and sf.shape == (2, 2)
    assert torch.allclose(q.float()[:, :128] * sf[:, :1], x[:, :128], rtol=0.07, atol=0)


def test_integer_helpers_stay_symbolic_under_tracing() -> None:
    # torch.compile's dynamic shapes reach the helpers as torch.SymInt: accepted, not specialised.
    from torch.fx.experimental.proxy_tensor import make_fx

    def scales_for(x: torch.Tensor) -> torch.Tensor:
        assert isinstance(x.shape[0], torch.SymInt)
        return x.new_zeros(ceil_div(x.shape[0], 128), align(x.shape[1], 16))

    traced = make_fx(scales_for, tracing_mode="symbolic")(torch.ones(300, 5))
    assert traced(torch.ones(1000, 17)).shape == (8, 32)
