"""The fused GPU FP8 casts equal the torch implementation bit for bit (on the GPU and on the CPU), for
every input dtype, aligned and unaligned shapes and strides, 3-D inputs, both scale layouts, tiny, zero and
huge blocks, and non-finite inputs (NaN stays NaN); under torch.compile they are one custom op each."""

from __future__ import annotations

import pytest
import torch

from deepgemm.quant import cast as cast_module
from deepgemm.quant import (
    per_block_cast_to_fp8,
    per_block_cast_to_fp8_and_transpose,
    per_token_cast_to_fp8,
    per_token_cast_to_fp8_transposed,
)

pytestmark = pytest.mark.gpu

DTYPES = (torch.bfloat16, torch.float16, torch.float32)
SHAPES = ((1, 16), (7, 128), (65, 200), (129, 7168), (1000, 1000), (4096, 7168), (300, 8), (3, 5), (128, 4))


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.uint8 if t.element_size() == 1 else torch.int32)


def _assert_same(got: tuple[torch.Tensor, torch.Tensor], want: tuple[torch.Tensor, torch.Tensor]) -> None:
    (q, sf), (q_ref, sf_ref) = got, want
    assert q.shape == q_ref.shape and q.dtype == q_ref.dtype and sf.shape == sf_ref.shape
    assert torch.equal(_bits(q), _bits(q_ref.to(q.device)))
    assert torch.equal(_bits(sf), _bits(sf_ref.to(sf.device)))


def _input(shape, dtype, seed, scale=1.0) -> torch.Tensor:
    gen = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(shape, generator=gen, device="cuda") * scale
    # Spread the blocks' magnitudes over many binades, with some blocks all zero or under the floor.
    rows = x.shape[-2] if x.dim() > 1 else 1
    x = x * torch.logspace(-9, 3, rows, device="cuda").view(*([rows, 1] if x.dim() > 1 else [1]))
    if rows > 2:
        x[..., 1, :] = 0
    return x.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_per_token_matches_torch_bitwise(dtype, shape):
    x = _input(shape, dtype, seed=sum(shape))
    got = per_token_cast_to_fp8(x)
    _assert_same(got, cast_module._per_token_torch(x))
    _assert_same(got, cast_module._per_token_torch(x.cpu()))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES + ((7168, 18432),))
def test_per_block_matches_torch_bitwise(dtype, shape):
    x = _input(shape, dtype, seed=sum(shape) + 1)
    got = per_block_cast_to_fp8(x)
    _assert_same(got, cast_module._per_block_torch(x))
    if x.numel() < 10_000_000:
        _assert_same(got, cast_module._per_block_torch(x.cpu()))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("pad_tokens", [False, True])
def test_transposed_matches_the_per_token_cast_of_the_transpose(dtype, shape, pad_tokens):
    x = _input(shape, dtype, seed=sum(shape) + 2)
    q, sf = per_token_cast_to_fp8_transposed(x, pad_tokens=pad_tokens)
    q_ref, sf_ref = cast_module._per_token_torch(x.T)
    tokens = shape[0]
    assert q.shape == (shape[1], -(-tokens // 128) * 128 if pad_tokens else tokens)
    _assert_same((q[:, :tokens], sf), (q_ref, sf_ref))
    assert not _bits(q[:, tokens:]).any()


def test_strided_3d_and_mn_major_inputs():
    base = _input((6, 300, 512), torch.bfloat16, seed=3)
    for x in (base[:, :, :384], base[1], base[:, 7:200, 128:], base.transpose(1, 2)[0], base[::2]):
        want = cast_module._per_token_torch(x)
        _assert_same(per_token_cast_to_fp8(x), want)
        if x.dim() == 2:
            q, sf = per_token_cast_to_fp8(x, mn_major_scales=True)
            assert sf.stride() == (1, -(-x.shape[0] // 4) * 4)
            _assert_same((q, sf), want)
            qt, sft = per_token_cast_to_fp8_transposed(x, mn_major_scales=True)
            assert sft.stride()[0] == 1
            _assert_same((qt, sft), cast_module._per_token_torch(x.T))
        _assert_same(per_block_cast_to_fp8(x), cast_module._per_block_torch(x))


def test_values_at_the_edges_of_the_format():
    # Blocks whose amax sits at the floor, below it, at FP8's max, far above it; subnormal FP8 results;
    # values that round to the clamp at 448; negative zeros.
    x = torch.zeros(8, 256, device="cuda")
    x[0, :128] = torch.linspace(-1e-4, 1e-4, 128)
    x[1, :128] = 3e-9
    x[2, :] = torch.linspace(-448, 448, 256)
    x[3, :] = torch.linspace(-1, 1, 256)  # times the dtype's largest finite value below
    x[4, :] = torch.logspace(-12, 2, 256)
    x[5, :] = -0.0
    x[6, :] = 447.99997
    x[7, ::2] = 1.0
    x[7, 1::2] = 1.0 / 896 * torch.arange(128, device="cuda")
    for dtype in DTYPES:
        xd = x.clone()
        xd[3] *= torch.finfo(dtype).max
        xd = xd.to(dtype)
        _assert_same(per_token_cast_to_fp8(xd), cast_module._per_token_torch(xd))
        _assert_same(per_token_cast_to_fp8(xd), cast_module._per_token_torch(xd.cpu()))
        _assert_same(per_block_cast_to_fp8(xd), cast_module._per_block_torch(xd))
        _assert_same(per_token_cast_to_fp8_transposed(xd.T.contiguous()), cast_module._per_token_torch(xd))


def test_non_finite_inputs_give_nan_where_torch_does():
    x = torch.randn(4, 384, device="cuda")
    x[0, 5] = float("nan")
    x[1, 200] = float("inf")
    x[2, 300] = -float("inf")
    for q, sf in (per_token_cast_to_fp8(x), per_block_cast_to_fp8(x)):
        q_ref, sf_ref = (
            cast_module._per_token_torch(x) if sf.shape == (4, 3) else cast_module._per_block_torch(x)
        )
        assert torch.equal(sf.isnan(), sf_ref.isnan()) and torch.equal(sf.isinf(), sf_ref.isinf())
        assert torch.equal(q.float().isnan(), q_ref.float().isnan())
        finite = ~q_ref.float().isnan()
        assert torch.equal(_bits(q)[finite], _bits(q_ref)[finite])


def test_float64_and_empty_inputs_run_the_torch_implementation():
    x = torch.randn(64, 256, device="cuda", dtype=torch.float64)
    _assert_same(per_token_cast_to_fp8(x), cast_module._per_token_torch(x))
    q, sf = per_token_cast_to_fp8(torch.empty(0, 256, device="cuda"))
    assert q.shape == (0, 256) and sf.shape == (0, 2)


def test_casts_under_torch_compile_are_custom_ops():
    x = _input((256, 384), torch.bfloat16, seed=5)

    def casts(x):
        return (
            per_token_cast_to_fp8(x),
            per_block_cast_to_fp8(x),
            per_token_cast_to_fp8_transposed(x, pad_tokens=True, mn_major_scales=True),
        )

    compiled = torch.compile(casts, fullgraph=True)
    for got, want in zip(compiled(x), casts(x), strict=True):
        _assert_same(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape", [(7168, 18432), (2112, 7168), (130, 200), (7, 5), (1000, 1000), (4, 256, 384)]
)
def test_per_block_and_transpose_matches_torch_bitwise(dtype, shape):
    x = _input(shape, dtype, seed=sum(shape) + 7)
    (q, sf), (qt, sft) = per_block_cast_to_fp8_and_transpose(x)
    q_ref, sf_ref = cast_module._per_block_torch(x)
    _assert_same((q, sf), (q_ref, sf_ref))
    _assert_same((qt, sft), (q_ref.transpose(-1, -2).contiguous(), sf_ref.transpose(-1, -2).contiguous()))
