"""Every argument rule of fp8_gemm_nt, and the shared checks on the 3-D operands grouped ops use."""

import pytest
import torch

from deepgemm.ops import fp8_gemm_nt
from deepgemm.ops.common.validation import check_fp8_operand, check_tma_operand

FP8 = torch.float8_e4m3fn
M, N, K = 4, 16, 256


def fp8(*shape: int) -> torch.Tensor:
    return torch.zeros(*shape, dtype=FP8)


def ones(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.ones(*shape, dtype=dtype)


def operands(m: int = M, n: int = N, k: int = K):
    a = (fp8(m, k), ones(m, (k + 127) // 128))
    b = (fp8(n, k), ones((n + 127) // 128, (k + 127) // 128))
    d = torch.full((m, n), 3.0, dtype=torch.bfloat16)
    return a, b, d


def call_with(a=None, b=None, d=None):
    default_a, default_b, default_d = operands()
    fp8_gemm_nt(default_a if a is None else a, default_b if b is None else b, default_d if d is None else d)


def test_valid_call_passes() -> None:
    a, b, d = operands()
    fp8_gemm_nt(a, b, d)
    assert d.eq(0).all()


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"a": fp8(M, K)}, r"a must be a \(A, sfa\) pair"),
        ({"b": [fp8(N, K)]}, r"b must be a \(B, sfb\) pair"),
        ({"a": (torch.zeros(M, K).tolist(), ones(M, 2))}, r"A \(a\[0\]\) must be a torch.Tensor"),
        ({"d": [[0.0]]}, r"d must be a torch.Tensor, got list"),
        ({"a": (ones(M, K, dtype=torch.bfloat16), ones(M, 2))}, r"A \(a\[0\]\).*float8_e4m3fn"),
        ({"a": (fp8(M, K), ones(M, 2, dtype=torch.float64))}, r"sfa \(a\[1\]\).*float32"),
        ({"b": (ones(N, K, dtype=torch.int8), ones(1, 2))}, r"B \(b\[0\]\).*float8_e4m3fn"),
        ({"b": (fp8(N, K), ones(1, 2, dtype=torch.bfloat16))}, r"sfb \(b\[1\]\).*float32"),
        ({"d": torch.zeros(M, N, dtype=torch.float16)}, r"d must have dtype torch.bfloat16 or torch.float32"),
    ],
)
def test_type_errors(kwargs: dict, pattern: str) -> None:
    with pytest.raises(TypeError, match=pattern):
        call_with(**kwargs)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"a": (fp8(1, M, K), ones(M, 2))}, r"A \(a\[0\]\) must be 2-D \[M, K\]"),
        ({"b": (fp8(N * K), ones(1, 2))}, r"B \(b\[0\]\) must be 2-D \[N, K\]"),
        (
            {"a": (fp8(M, K), ones(M, 3))},
            r"sfa \(a\[1\]\) must have shape \[M, ceil\(K/128\)\] = \(4, 2\), found \(4, 3\)",
        ),
        (
            {"b": (fp8(N, K), ones(N, 2))},
            r"sfb \(b\[1\]\) must have shape \[ceil\(N/128\), ceil\(K/128\)\] = \(1, 2\), found \(16, 2\)",
        ),
        (
            {"b": (fp8(N, 128), ones(1, 1))},
            r"B \(b\[0\]\) must have shape \[N, K\] = \(16, 256\), found \(16, 128\)",
        ),
        (
            {"d": ones(M, N + 8, dtype=torch.bfloat16)},
            r"d must have shape \[M, N\] = \(4, 16\), found \(4, 24\)",
        ),
    ],
)
def test_shape_errors(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        call_with(**kwargs)


def test_k_must_be_a_multiple_of_16() -> None:
    a, b, d = operands(k=200)
    with pytest.raises(ValueError, match=r"K must be a multiple of 16 .*got 200"):
        fp8_gemm_nt(a, b, d)


def test_n_alignment_depends_on_output_dtype() -> None:
    a, b, d = operands(n=12)
    with pytest.raises(ValueError, match=r"N must be a multiple of 8 .*bfloat16.*got 12"):
        fp8_gemm_nt(a, b, d)
    fp8_gemm_nt(a, b, torch.empty(M, 12, dtype=torch.float32))  # 48-byte rows: fine for FP32
    a, b, _ = operands(n=6)
    with pytest.raises(ValueError, match=r"N must be a multiple of 4 .*float32.*got 6"):
        fp8_gemm_nt(a, b, torch.empty(M, 6, dtype=torch.float32))


def test_mixed_and_unsupported_devices() -> None:
    a, b, d = operands()
    with pytest.raises(ValueError, match=r"one device, found .*A \(a\[0\]\) on meta.*d on cpu"):
        fp8_gemm_nt((a[0].to("meta"), a[1]), b, d)
    meta = {"device": "meta"}
    with pytest.raises(ValueError, match="CPU or CUDA device, found meta"):
        fp8_gemm_nt(
            (a[0].to(**meta), a[1].to(**meta)), (b[0].to(**meta), b[1].to(**meta)), d.to(**meta)
        )


def test_stride_errors() -> None:
    a, b, d = operands()
    column_major = fp8(K, M).T
    with pytest.raises(ValueError, match=r"A \(a\[0\]\) must have contiguous rows \(stride\(-1\) == 1\)"):
        fp8_gemm_nt((column_major, a[1]), b, d)
    unaligned_rows = fp8(N, K + 8)[:, :K]
    with pytest.raises(ValueError, match=r"B \(b\[0\]\).stride\(0\) must be a multiple of 16 elements"):
        fp8_gemm_nt(a, (unaligned_rows, b[1]), d)
    overlapping = fp8(M * K).as_strided((M, K), (16, 1))
    with pytest.raises(ValueError, match=r"A \(a\[0\]\).stride\(0\) must be >= 256 so that slices do not"):
        fp8_gemm_nt((overlapping, a[1]), b, d)
    mid_row = fp8(M, K + 16)[:, 8 : 8 + K]
    with pytest.raises(ValueError, match=r"A \(a\[0\]\) must start at a 16-byte-aligned address"):
        fp8_gemm_nt((mid_row, a[1]), b, d)
    d_unaligned = torch.zeros(M, N + 4, dtype=torch.bfloat16)[:, :N]
    with pytest.raises(ValueError, match=r"d.stride\(0\) must be a multiple of 8 elements"):
        fp8_gemm_nt(a, b, d_unaligned)
    with pytest.raises(ValueError, match=r"d must have contiguous rows"):
        fp8_gemm_nt(a, b, torch.zeros(N, M, dtype=torch.bfloat16).T)


def test_sfb_must_be_row_major() -> None:
    a, b, d = operands(n=256)
    with pytest.raises(ValueError, match=r"sfb \(b\[1\]\) must be contiguous row-major"):
        fp8_gemm_nt(a, (b[0], b[1].T.contiguous().T), d)


def test_errors_leave_d_untouched() -> None:
    a, b, d = operands(k=200)
    with pytest.raises(ValueError):
        fp8_gemm_nt(a, b, d)
    assert d.eq(3.0).all()


def test_empty_tensors_skip_stride_rules() -> None:
    # torch gives [M, 0] tensors a row stride of 1; nothing is read, so that must not be an error.
    a, b, d = operands(k=0)
    assert a[0].stride() == (1, 1)
    fp8_gemm_nt(a, b, d)
    assert d.eq(0).all()


def test_3d_operands_for_grouped_ops() -> None:
    B, sfb, dims = fp8(3, 200, 256), ones(3, 2, 2), ("G", "N", "K")
    sfb_shape_rule = r"sfb \(b\[1\]\) must have shape \[G, ceil\(N/128\), ceil\(K/128\)\] = \(3, 2, 2\)"
    tensor, scale = check_fp8_operand("b", (B, sfb), ("B", "sfb"), dims, scale_block_rows=128)
    assert tensor is B and scale is sfb
    with pytest.raises(ValueError, match=sfb_shape_rule):
        check_fp8_operand("b", (B, ones(3, 200, 2)), ("B", "sfb"), dims, scale_block_rows=128)
    check_tma_operand("B", fp8(4, 200, 256)[::2])  # batch stride 2 * 200 * 256
    with pytest.raises(ValueError, match=r"B.stride\(0\) must be >= 48 so that slices do not overlap"):
        check_tma_operand("B", fp8(80).as_strided((2, 3, 16), (32, 16, 1)))
    with pytest.raises(ValueError, match=r"B.stride\(0\) must be a multiple of 16 elements"):
        check_tma_operand("B", fp8(200).as_strided((2, 3, 16), (56, 16, 1)))
